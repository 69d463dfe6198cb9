package forge_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/mpha-dev/mpha/gitops/forge"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

func TestRepositoryFromURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, url, want string
	}{
		{"https with .git", "https://github.com/mpha-dev/fleet.git", "mpha-dev/fleet"},
		{"https without .git", "https://github.com/mpha-dev/fleet", "mpha-dev/fleet"},
		{"trailing slash", "https://github.com/mpha-dev/fleet/", "mpha-dev/fleet"},
		{"http with port", "http://127.0.0.1:3000/forgeadmin/fleet.git", "forgeadmin/fleet"},
		{"credentials are dropped", "https://bot:s3cret@git.example.com/ops/fleet.git", "ops/fleet"},
		{"ssh", "ssh://git@github.com/mpha-dev/fleet.git", "mpha-dev/fleet"},
		{"ssh with port", "ssh://git@gitlab.example.com:2222/ops/fleet.git", "ops/fleet"},
		{"scp-like", "git@github.com:mpha-dev/fleet.git", "mpha-dev/fleet"},
		{"gitlab subgroups", "https://gitlab.com/platform/failover/fleet.git", "platform/failover/fleet"},
		{"gitlab subgroups over scp-like ssh", "git@gitlab.com:platform/failover/fleet.git", "platform/failover/fleet"},
		{"no owner", "https://github.com/fleet.git", ""},
		{"no path", "https://github.com/", ""},
		{"no host", "https:///owner/fleet.git", ""},
		{"empty segment", "https://github.com/owner//fleet.git", ""},
		{"only .git", "https://github.com/owner/.git", ""},
		{"dot-dot", "https://github.com/owner/../fleet.git", ""},
		{"local path", "/srv/git/owner/fleet.git", ""},
		{"file URL", "file:///srv/git/owner/fleet.git", ""},
		{"query", "https://github.com/owner/fleet.git?ref=main", ""},
		{"scp-like without owner", "git@github.com:fleet.git", ""},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := forge.RepositoryFromURL(tc.url)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("RepositoryFromURL(%q) = %q, want an error", tc.url, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("RepositoryFromURL(%q) = %q, %v; want %q", tc.url, got, err, tc.want)
			}
		})
	}
}

func TestRepositoryFromURLHidesCredentials(t *testing.T) {
	t.Parallel()
	_, err := forge.RepositoryFromURL("https://bot:hunter2-s3cret@git.example.com/fleet.git")
	if err == nil || strings.Contains(err.Error(), "hunter2-s3cret") {
		t.Fatalf("error = %v, want one without the password", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	t.Parallel()
	valid := forge.Options{Kind: forge.KindGitHub, Token: "tok", Repository: "mpha-dev/fleet"}
	tests := []struct {
		name string
		edit func(*forge.Options)
		// want are the substrings the error must hold; none means valid.
		want []string
	}{
		{"github.com by default", func(*forge.Options) {}, nil},
		{"github enterprise", func(o *forge.Options) { o.URL = "https://ghe.example.com/" }, nil},
		{"gitlab subgroups", func(o *forge.Options) {
			o.Kind, o.Repository = forge.KindGitLab, "platform/failover/fleet"
		}, nil},
		{"gitlab over http under a path", func(o *forge.Options) {
			o.Kind, o.URL = forge.KindGitLab, "http://gitlab.internal:8080/gitlab/"
		}, nil},
		{"gitea", func(o *forge.Options) { o.Kind, o.URL = forge.KindGitea, "http://127.0.0.1:3000/" }, nil},
		{"everything missing", func(o *forge.Options) { *o = forge.Options{} },
			[]string{"kind: required", "token: required", "repository: required"}},
		{"unknown kind", func(o *forge.Options) { o.Kind = "bitbucket" }, []string{`kind: "bitbucket"`}},
		{"gitea needs a URL", func(o *forge.Options) { o.Kind = forge.KindGitea }, []string{"url: required for gitea"}},
		{"no owner", func(o *forge.Options) { o.Repository = "fleet" }, []string{"not owner/name"}},
		{"subgroups only on gitlab", func(o *forge.Options) { o.Repository = "a/b/fleet" }, []string{"only GitLab has subgroups"}},
		{"empty segment", func(o *forge.Options) { o.Repository = "owner/" }, []string{"bad path segment"}},
		{"scheme", func(o *forge.Options) { o.URL = "ftp://ghe.example.com" }, []string{"want an http or https URL"}},
		{"no scheme", func(o *forge.Options) { o.URL = "ghe.example.com" }, []string{"want an http or https URL"}},
		{"github over http", func(o *forge.Options) { o.URL = "http://ghe.example.com" }, []string{"only over https"}},
		{"github with a path", func(o *forge.Options) { o.URL = "https://ghe.example.com/api/v3" }, []string{"without a path"}},
		{"query", func(o *forge.Options) {
			o.Kind, o.URL = forge.KindGitea, "http://127.0.0.1:3000/?token=abc"
		}, []string{"no query"}},
		{"credentials in the URL", func(o *forge.Options) {
			o.Kind, o.URL = forge.KindGitea, "http://admin:hunter2-s3cret@127.0.0.1:3000/"
		}, []string{"put credentials in token"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := valid
			tc.edit(&o)
			err := o.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to say %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2-s3cret") {
				t.Errorf("Validate() = %q shows the password", err)
			}
			// New refuses the same options before touching the network.
			if _, err := forge.New(context.Background(), o); err == nil {
				t.Error("New accepted options that Validate refused")
			}
		})
	}
}

// offline is an http.RoundTripper that records the requests it is given and fails them, so
// New can be tested for GitHub and GitLab without a network (and without imitating their APIs).
// Its error quotes the token, as a careless server might, so tests see that it is scrubbed.
type offline struct {
	token string
	mu    sync.Mutex
	reqs  []*http.Request
}

func (o *offline) RoundTrip(req *http.Request) (*http.Response, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reqs = append(o.reqs, req)
	return nil, fmt.Errorf("offline: refused a request carrying %s", o.token)
}

func (o *offline) first(t *testing.T) *http.Request {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.reqs) == 0 {
		t.Fatal("New sent no request")
	}
	return o.reqs[0]
}

// New builds each kind of client and asks the right endpoint for the repository, with the token.
func TestNewOffline(t *testing.T) {
	t.Parallel()
	const token = "tok-0123456789abcdef"
	tests := []struct {
		name       string
		o          forge.Options
		wantURL    string
		authHeader string
		authValue  string
	}{
		{"github.com", forge.Options{Kind: forge.KindGitHub, Repository: "mpha-dev/fleet"},
			"https://api.github.com/repos/mpha-dev/fleet", "Authorization", "Bearer " + token},
		{"github.com given", forge.Options{Kind: forge.KindGitHub, URL: "https://github.com/", Repository: "mpha-dev/fleet"},
			"https://api.github.com/repos/mpha-dev/fleet", "Authorization", "Bearer " + token},
		{"github enterprise", forge.Options{Kind: forge.KindGitHub, URL: "https://ghe.example.com:8443", Repository: "ops/fleet"},
			"https://ghe.example.com:8443/api/v3/repos/ops/fleet", "Authorization", "Bearer " + token},
		{"gitlab.com subgroups", forge.Options{Kind: forge.KindGitLab, Repository: "platform/failover/fleet"},
			"https://gitlab.com/api/v4/projects/platform%2Ffailover%2Ffleet", "Private-Token", token},
		{"gitlab over http", forge.Options{Kind: forge.KindGitLab, URL: "http://gitlab.internal:8080/", Repository: "ops/fleet"},
			"http://gitlab.internal:8080/api/v4/projects/ops%2Ffleet", "Private-Token", token},
		{"gitlab under a path", forge.Options{Kind: forge.KindGitLab, URL: "https://example.com/gitlab", Repository: "ops/fleet"},
			"https://example.com/gitlab/api/v4/projects/ops%2Ffleet", "Private-Token", token},
		// Gitea's SDK asks for the server's version first.
		{"gitea", forge.Options{Kind: forge.KindGitea, URL: "http://gitea.internal:3000/", Repository: "ops/fleet"},
			"http://gitea.internal:3000/api/v1/version", "Authorization", "token " + token},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rt := &offline{token: token}
			o := tc.o
			o.Token, o.HTTPClient = token, &http.Client{Transport: rt}
			f, err := forge.New(context.Background(), o)
			if err == nil {
				t.Fatalf("New = %v, nil; want the offline error", f)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error shows the token: %v", err)
			}
			if !strings.Contains(err.Error(), "offline") {
				t.Errorf("error = %v, want the transport's", err)
			}
			req := rt.first(t)
			if got := req.URL.String(); got != tc.wantURL {
				t.Errorf("request to %s, want %s", got, tc.wantURL)
			}
			if got := req.Header.Get(tc.authHeader); got != tc.authValue {
				t.Errorf("%s header = %q, want %q", tc.authHeader, got, tc.authValue)
			}
		})
	}
}

// A cancelled context stops New for the kinds whose SDK takes one.
func TestNewCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, kind := range []string{forge.KindGitHub, forge.KindGitLab} {
		rt := &offline{token: "tok-0123456789abcdef"}
		_, err := forge.New(ctx, forge.Options{Kind: kind, Token: rt.token, Repository: "o/r", HTTPClient: &http.Client{Transport: rt}})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: New = %v, want context.Canceled", kind, err)
		}
	}
}
