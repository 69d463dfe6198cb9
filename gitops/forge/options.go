package forge

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/mpha-dev/mpha/internal/redact"
)

// DefaultTimeout bounds each HTTP request when Options.HTTPClient sets no Timeout. Some calls of
// go-git-providers ignore the context (all of Gitea's, GitLab's create and get), so this is
// what stops them on a forge that hangs.
const DefaultTimeout = 30 * time.Second

// Options says which forge and repository to work on.
type Options struct {
	// Kind is KindGitHub, KindGitLab or KindGitea.
	Kind string
	// URL is the forge's base URL (https://github.com, https://gitlab.example.com,
	// http://127.0.0.1:3000/). Empty means the public github.com or gitlab.com for those kinds;
	// required for Gitea. GitHub Enterprise is https://HOST (the API is at /api/v3) and only
	// over https; GitLab and Gitea may sit under a path.
	URL string
	// Token is a personal or bot access token that may open and merge pull requests.
	Token string
	// Repository is "owner/name" (GitLab: "group/subgroup/name"). RepositoryFromURL derives
	// it from a clone URL.
	Repository string
	// HTTPClient is optional. Only its Transport (the last hop, after authentication) and its
	// Timeout (per request, DefaultTimeout if zero) are used.
	HTTPClient *http.Client
}

// Validate returns every problem with o, or nil.
func (o Options) Validate() error {
	var errs []error
	switch o.Kind {
	case KindGitHub, KindGitLab, KindGitea:
	case "":
		errs = append(errs, errors.New("kind: required (github, gitlab or gitea)"))
	default:
		errs = append(errs, fmt.Errorf("kind: %q is not github, gitlab or gitea", o.Kind))
	}
	if o.Token == "" {
		errs = append(errs, errors.New("token: required"))
	}
	if err := o.validateURL(); err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	}
	if err := validateRepository(o.Kind, o.Repository); err != nil {
		errs = append(errs, fmt.Errorf("repository: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("forge options: %w", err)
	}
	return nil
}

func (o Options) validateURL() error {
	if o.URL == "" {
		if o.Kind == KindGitea {
			return errors.New("required for gitea")
		}
		return nil
	}
	u, err := url.Parse(o.URL)
	if err != nil {
		// url.Error quotes the URL, which may hold credentials.
		return fmt.Errorf("%q does not parse", redact.String(o.URL))
	}
	shown := redact.String(o.URL)
	switch {
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%q: want an http or https URL", shown)
	case u.Host == "":
		return fmt.Errorf("%q: no host", shown)
	case u.User != nil:
		return fmt.Errorf("%q: put credentials in token, not in the URL", shown)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q: no query or fragment allowed", shown)
	case o.Kind == KindGitHub && u.Scheme != "https":
		return fmt.Errorf("%q: go-git-providers reaches GitHub only over https", shown)
	case o.Kind == KindGitHub && strings.Trim(u.Path, "/") != "":
		return fmt.Errorf("%q: give GitHub Enterprise as https://HOST, without a path", shown)
	}
	return nil
}

// validateRepository checks the owner/name form: GitHub and Gitea have exactly one owner,
// GitLab a group path of any depth.
func validateRepository(kind, repo string) error {
	if repo == "" {
		return errors.New("required (owner/name)")
	}
	parts := strings.Split(repo, "/")
	if len(parts) < 2 {
		return fmt.Errorf("%q is not owner/name", repo)
	}
	if len(parts) > 2 && kind != KindGitLab {
		return fmt.Errorf("%q: only GitLab has subgroups, want owner/name", repo)
	}
	for _, p := range parts {
		if p == "" || p == "." || p == ".." || strings.ContainsAny(p, " \t\r\n?#%\\:@") {
			return fmt.Errorf("%q: bad path segment %q", repo, p)
		}
	}
	return nil
}

// split returns the owner (GitLab: the group path) and the repository name.
func (o Options) split() (owner, name string) {
	i := strings.LastIndex(o.Repository, "/")
	return o.Repository[:i], o.Repository[i+1:]
}

// endpoint is the forge's URL for messages.
func (o Options) endpoint() string {
	if o.URL != "" {
		return redact.String(o.URL)
	}
	if o.Kind == KindGitLab {
		return "https://gitlab.com"
	}
	return "https://github.com"
}

// domain is go-git-providers' WithDomain value. GitHub wants HOST[:PORT] and always uses https;
// GitLab and Gitea take the base URL with its scheme (without one they assume https).
func (o Options) domain(def string) string {
	if o.URL == "" {
		return def
	}
	u, _ := url.Parse(o.URL) // checked by Validate
	if o.Kind == KindGitHub {
		return u.Host
	}
	if u.Scheme == "https" && u.Host == def && strings.Trim(u.Path, "/") == "" {
		return def
	}
	return strings.TrimSuffix(o.URL, "/")
}

// RepositoryFromURL returns the repository path of a clone URL: https://host/owner/name(.git),
// ssh://git@host[:port]/owner/name.git and git@host:owner/name.git give "owner/name", and a
// GitLab subgroup URL gives "group/subgroup/name". A forge served under a path prefix
// (http://host/gitea/owner/name) keeps the prefix, so give such a Repository explicitly.
func RepositoryFromURL(cloneURL string) (string, error) {
	path, err := clonePath(cloneURL)
	if err != nil {
		return "", fmt.Errorf("repository from clone URL %q: %w", redact.String(cloneURL), err)
	}
	path = strings.TrimSuffix(strings.Trim(path, "/"), ".git")
	if err := validateRepository(KindGitLab, path); err != nil {
		return "", fmt.Errorf("repository from clone URL %q: %w", redact.String(cloneURL), err)
	}
	return path, nil
}

// clonePath returns the path part of a URL or of scp-like syntax (user@host:path).
func clonePath(s string) (string, error) {
	if !strings.Contains(s, "://") {
		at, colon := strings.Index(s, "@"), strings.Index(s, ":")
		if colon < 0 || at > colon || strings.Contains(s[:colon], "/") {
			return "", errors.New("want a URL (https://, http://, ssh://) or user@host:owner/name")
		}
		return s[colon+1:], nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", errors.New("does not parse")
	}
	switch u.Scheme {
	case "https", "http", "ssh", "git":
	default:
		return "", fmt.Errorf("unsupported scheme %q", u.Scheme)
	}
	if u.Host == "" {
		return "", errors.New("no host")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("no query or fragment allowed")
	}
	return u.Path, nil
}
