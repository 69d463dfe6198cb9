package forge_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/gitops/forge"
)

// contract replays a forge's public API as its documentation records it (testdata/contracts):
// each request must be the next one recorded (method, escaped path, headers, JSON body), and
// gets the recorded answer. Only Gitea runs for real here; GitHub and GitLab are held to this.
type contract struct {
	t            *testing.T
	mu           sync.Mutex
	interactions []interaction
	next         int
}

type interaction struct {
	Request struct {
		Method, Path string
		Header       map[string]string
		Body         json.RawMessage
	}
	Response struct {
		Status int
		Body   json.RawMessage
	}
}

func loadContract(t *testing.T, name string) *contract {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "contracts", name))
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Interactions []interaction }
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &contract{t: t, interactions: c.Interactions}
}

func (c *contract) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next >= len(c.interactions) {
		return nil, fmt.Errorf("contract: unexpected request %s %s", req.Method, req.URL.EscapedPath())
	}
	want := c.interactions[c.next]
	c.next++
	var problems []string
	if req.Method != want.Request.Method || req.URL.EscapedPath() != want.Request.Path {
		problems = append(problems, fmt.Sprintf("request %s %s, want %s %s", req.Method, req.URL.EscapedPath(), want.Request.Method, want.Request.Path))
	}
	for k, v := range want.Request.Header {
		if got := req.Header.Get(k); got != v {
			problems = append(problems, fmt.Sprintf("header %s = %q, want %q", k, got, v))
		}
	}
	if len(want.Request.Body) > 0 {
		var got, exp any
		body, _ := io.ReadAll(req.Body)
		if err := json.Unmarshal(body, &got); err != nil {
			problems = append(problems, fmt.Sprintf("body %q is not JSON", body))
		}
		_ = json.Unmarshal(want.Request.Body, &exp)
		if !reflect.DeepEqual(got, exp) {
			problems = append(problems, fmt.Sprintf("body %s, want %s", body, want.Request.Body))
		}
	}
	if len(problems) > 0 {
		c.t.Errorf("interaction %d: %s", c.next, strings.Join(problems, "; "))
	}
	return &http.Response{StatusCode: want.Response.Status, Status: http.StatusText(want.Response.Status), Request: req,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: io.NopCloser(bytes.NewReader(want.Response.Body))}, nil
}

func (c *contract) done(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next != len(c.interactions) {
		t.Errorf("%d of %d recorded interactions used", c.next, len(c.interactions))
	}
}

// The mpha/preflight status and the approval on GitHub and GitLab go through their SDKs as the
// forges' public APIs document them: a failure with its evidence and the pull request's page,
// then a success; a commit the forge does not know is an error that names the status and not
// the token; an approval at the head commit.
func TestStatusesFollowTheContract(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind, file, repo, token, sha, url string
		number                            int
	}{
		{forge.KindGitHub, "github.json", "ops/fleet", "ghp-contract-token", "6dcb09b5b57875f334f61aebed695e2e4193db5e", "https://github.com/ops/fleet/pull/42", 42},
		{forge.KindGitLab, "gitlab.json", "platform/failover/fleet", "glpat-contract-token", "18f3e63d05582537db6d183d9d557be09e1f90c8",
			"https://gitlab.com/platform/failover/fleet/-/merge_requests/7", 7},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			c := loadContract(t, tc.file)
			f, err := forge.New(ctx, forge.Options{Kind: tc.kind, Token: tc.token, Repository: tc.repo, HTTPClient: &http.Client{Transport: c}})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.SetStatus(ctx, tc.sha, forge.CommitStatus{Context: "mpha/preflight", State: forge.StatusFailure,
				Description: "preflight failed: database (lag over the RPO)", TargetURL: tc.url}); err != nil {
				t.Fatal(err)
			}
			if err := f.SetStatus(ctx, tc.sha, forge.CommitStatus{Context: "mpha/preflight", State: forge.StatusSuccess, Description: "preflight holds"}); err != nil {
				t.Fatal(err)
			}
			err = f.SetStatus(ctx, strings.Repeat("0", 40), forge.CommitStatus{Context: "mpha/preflight", State: forge.StatusSuccess, Description: "preflight holds"})
			if err == nil || !strings.Contains(err.Error(), "setting status mpha/preflight of 0000") || strings.Contains(err.Error(), tc.token) {
				t.Errorf("a status on an unknown commit: %v", err)
			}
			if err := f.Approve(ctx, tc.number, tc.sha, "Game day: the drill approves its own failover"); err != nil {
				t.Fatal(err)
			}
			c.done(t)
		})
	}
}
