package forge

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/fluxcd/go-git-providers/gitprovider"
	"github.com/google/go-github/v82/github"
	gitlab "gitlab.com/gitlab-org/api/client-go"

	"github.com/mpha-dev/mpha/internal/redact"
)

// minTokenLen is the shortest token removed from error text literally; shorter ones would
// mangle ordinary words (and are not real tokens).
const minTokenLen = 6

// scrubber removes the token from errors. The SDKs send it in headers, not URLs, but a server
// may echo a request (Gitea's "unknown API error" quotes the body) and a URL may carry
// credentials, so every error leaving the package goes through wrap.
type scrubber struct{ token string }

// wrap returns err with context, redacted; errors.Is and errors.As still see the original.
func (s scrubber) wrap(err error, format string, a ...any) error {
	err = redact.Error(fmt.Errorf(format+": %w", append(a, err)...))
	if len(s.token) < minTokenLen || !strings.Contains(err.Error(), s.token) {
		return err
	}
	return &scrubbed{msg: strings.ReplaceAll(err.Error(), s.token, "redacted"), err: err}
}

type scrubbed struct {
	msg string
	err error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.err }

// classify adds ErrNotFound or ErrUnauthorized to err when the forge said so.
func classify(err error) error {
	var cred *gitprovider.InvalidCredentialsError
	switch code := statusOf(err); {
	case errors.Is(err, gitprovider.ErrNotFound) || code == http.StatusNotFound:
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	case errors.As(err, &cred) || code == http.StatusUnauthorized:
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	}
	return err
}

// statusOf returns the HTTP status behind err, or 0 when the SDK did not keep it (the Gitea
// SDK returns plain errors unless go-git-providers wrapped them with the response).
func statusOf(err error) int {
	var (
		gp *gitprovider.HTTPError
		gh *github.ErrorResponse
		gl *gitlab.ErrorResponse
		st *statusError
	)
	var resp *http.Response
	switch {
	case errors.As(err, &st):
		return st.code
	case errors.As(err, &gp):
		resp = gp.Response
	case errors.As(err, &gh):
		resp = gh.Response
	case errors.As(err, &gl):
		resp = gl.Response
	}
	if resp == nil {
		return 0
	}
	return resp.StatusCode
}

// statusError keeps the status of a Gitea SDK call made here, whose error text lacks it.
type statusError struct {
	code int
	err  error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// withStatus attaches the response's status to a Gitea SDK error.
func withStatus(resp *http.Response, err error) error {
	if err == nil || resp == nil {
		return err
	}
	return &statusError{code: resp.StatusCode, err: err}
}
