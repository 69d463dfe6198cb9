// Package gitrepo writes mpha's changes to a Git repository: it commits files with a configured
// author, a message and Mpha-* trailers, optionally signed, and pushes. A Writer keeps a shallow
// copy of the repository between calls and brings it up to date with a depth-1 fetch, so that a
// write costs what it changes, not what the repository holds (see store). A push that loses a
// race with another writer (or meets an unreachable server) is re-applied on the new head and
// retried with backoff. It uses fluxcd/pkg/git and go-git; it never parses YAML (callers decide
// with a per-file Check whether a file may be written).
package gitrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/fluxcd/pkg/git"
	"github.com/fluxcd/pkg/git/signature"
	extgogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/redact"
)

// DefaultBackoff makes 7 attempts over about 30 s (waits of 0.5, 1, 2, 4, 8 and 16 s, jittered).
// No Cap: wait.Backoff ends the steps once the cap is reached.
var DefaultBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 7}

// Options configure a Writer.
type Options struct {
	// URL is the repository's clone URL (https://, http:// or ssh://), without credentials.
	URL string
	// Auth carries the credentials (see NewAuth); nil means anonymous.
	Auth *git.AuthOptions
	// Branch is the branch Flux reads; changes go there unless they name another. Default main.
	Branch string
	// Author signs the commits as author and committer.
	Author git.Signature
	// Signer, if set, signs every commit (signature.NewSSHSigner or NewOpenPGPSigner).
	Signer signature.Signer
	// AllowHTTPCredentials permits credentials over plain http:// (an in-cluster forge, tests);
	// without it New refuses them with ErrCredentialsOverHTTP.
	AllowHTTPCredentials bool
	// Backoff bounds the attempts of one Apply (Steps of them); the zero value means DefaultBackoff.
	// A Cap ends the attempts early: wait.Backoff stops stepping once the cap is reached.
	Backoff wait.Backoff
	// OnRetry, if set, is called after each attempt of an Apply that failed for a reason another
	// attempt may fix (a push that raced another, Git unreachable): the agent counts them
	// (mpha_git_push_retries_total).
	OnRetry func(branch string)
	// CacheDir, if set, is where the writer keeps its copy of the repository between calls (the
	// pod's emptyDir); empty keeps it in memory.
	CacheDir string
	Logger   *slog.Logger
}

// Writer applies Changes to the repository. It is safe for concurrent use: its calls take turns
// on its copy of the repository (the network waits of a retry are not taken in turn).
type Writer struct {
	opts Options
	auth transport.AuthMethod
	log  *slog.Logger

	mu    sync.Mutex
	store *store // nil until the first call, and after a failure
}

// Repository is what the agent's loops need of a Writer (an interface, so tests can wrap it).
type Repository interface {
	Read(ctx context.Context, paths ...string) (Snapshot, error)
	Apply(ctx context.Context, ch gitops.Change) (Result, error)
}

// Result says what Apply did.
type Result struct {
	// Commit is the pushed commit, or the branch head when nothing changed.
	Commit string
	// NoChange is true when the branch already held the change: nothing was committed.
	NoChange bool
	// Attempts counts the attempts made (1 when the first push went through).
	Attempts int
}

// ConflictError reports a file the change may not write on the current head.
type ConflictError struct {
	Path string
	Err  error
}

func (e *ConflictError) Error() string { return fmt.Sprintf("conflict on %s: %v", e.Path, e.Err) }
func (e *ConflictError) Unwrap() error { return e.Err }

// permanentError marks a failure that another attempt would repeat.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// ErrInvalidPath reports a path outside the repository or not in clean form.
var ErrInvalidPath = errors.New("invalid repository path")

// New validates opts and returns a Writer. Credentials (a user name, password or token, in Auth
// or in the URL) over plain http:// are refused unless opts.AllowHTTPCredentials.
func New(opts Options) (*Writer, error) {
	if opts.URL == "" {
		return nil, errors.New("git writer: a repository URL is required")
	}
	if opts.Branch == "" {
		opts.Branch = "main"
	}
	if opts.Author.Name == "" || opts.Author.Email == "" {
		return nil, errors.New("git writer: the author needs a name and an email")
	}
	if opts.Backoff.Steps == 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.Auth == nil {
		a, err := NewAuth(opts.URL, nil)
		if err != nil {
			return nil, err
		}
		opts.Auth = a
	}
	if credentialsOverHTTP(opts) && !opts.AllowHTTPCredentials {
		return nil, fmt.Errorf("git writer: %w", ErrCredentialsOverHTTP)
	}
	auth, err := transportAuth(opts.Auth)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Writer{opts: opts, auth: auth, log: log.With("repo", redact.String(opts.URL))}, nil
}

// Apply commits ch and pushes it, re-applying it on the new head when the push loses a race or
// the server is unreachable, until it lands or the backoff is spent.
func (w *Writer) Apply(ctx context.Context, ch gitops.Change) (Result, error) {
	if err := validatePaths(ch); err != nil {
		return Result{}, err
	}
	msg, err := trailer.Format(ch.Message, ch.Trailers)
	if err != nil {
		return Result{}, fmt.Errorf("commit message: %w", err)
	}
	branch := ch.Branch
	if branch == "" {
		branch = w.opts.Branch
	}
	var res Result
	var last error
	err = wait.ExponentialBackoffWithContext(ctx, w.opts.Backoff, func(ctx context.Context) (bool, error) {
		res.Attempts++
		r, err := w.attempt(ctx, branch, ch, msg)
		if err == nil {
			res.Commit, res.NoChange = r.Commit, r.NoChange
			return true, nil
		}
		if terminal(ctx, err) {
			return false, err
		}
		last = err
		if w.opts.OnRetry != nil {
			w.opts.OnRetry(branch)
		}
		w.log.Warn("git write did not land; retrying on the new head", "branch", branch, "attempt", res.Attempts, "error", redact.String(err.Error()))
		return false, nil
	})
	switch {
	case err == nil:
		if res.NoChange {
			w.log.Debug("git write: nothing to change", "branch", branch)
		} else {
			w.log.Info("git write pushed", "branch", branch, "commit", res.Commit, "attempts", res.Attempts)
		}
		return res, nil
	case wait.Interrupted(err) && last != nil && ctx.Err() == nil:
		return res, redact.Error(fmt.Errorf("writing to %s: gave up after %d attempts: %w", branch, res.Attempts, last))
	default:
		return res, redact.Error(fmt.Errorf("writing to %s: %w", branch, err))
	}
}

// terminal errors are not retried: the caller's Check refused, the configuration or credentials
// are wrong, or the context ended.
func terminal(ctx context.Context, err error) bool {
	var ce *ConflictError
	var pe *permanentError
	return errors.As(err, &ce) || errors.As(err, &pe) || ctx.Err() != nil ||
		errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed)
}

// attempt brings the store up to date with branch (or, for a branch that does not exist yet, the
// base branch), runs the change's checks on that head, builds the commit from the changed paths
// and pushes it.
func (w *Writer) attempt(ctx context.Context, branch string, ch gitops.Change, msg string) (Result, error) {
	var res Result
	err := w.withStore(func(s *store) error {
		base := branch
		err := w.fetch(ctx, s, branch)
		if branchMissing(err) && branch != w.opts.Branch {
			base = w.opts.Branch
			err = w.fetch(ctx, s, base)
		}
		if err != nil {
			return fmt.Errorf("fetching %s: %w", base, err)
		}
		head, err := s.head(base)
		if err != nil {
			return err
		}
		tree, err := head.Tree()
		if err != nil {
			return fmt.Errorf("reading the tree of %s: %w", head.Hash, err)
		}
		if err := check(commitTree{tree}, ch); err != nil {
			return err
		}
		var added []plumbing.Hash
		root, err := writeTree(s.st, tree, editsOf(ch.Files, ch.Delete), &added)
		if err != nil {
			return &permanentError{fmt.Errorf("writing the change: %w", err)}
		}
		if root == tree.Hash {
			res = Result{Commit: head.Hash.String(), NoChange: true}
			return nil
		}
		if root.IsZero() {
			return &permanentError{errors.New("writing the change: it would leave the repository empty")}
		}
		c, err := w.commit(s.st, root, head.Hash, msg)
		if err != nil {
			return fmt.Errorf("committing: %w", err)
		}
		old := head.Hash
		if base != branch {
			old = plumbing.ZeroHash
		}
		if err := w.push(ctx, s, branch, old, c, append(added, c)); err != nil {
			return fmt.Errorf("pushing %s: %w", branch, err)
		}
		res = Result{Commit: c.String()}
		return nil
	})
	return res, err
}

// branchMissing reports a fetch that failed because the branch does not exist.
func branchMissing(err error) bool {
	var noRef extgogit.NoMatchingRefSpecError
	return errors.As(err, &noRef)
}

// check runs the change's Check on every path it touches and its Pinned comparisons, on the head
// it is about to commit onto.
func check(t fileTree, ch gitops.Change) error {
	read := func(p string) ([]byte, error) {
		cur, err := t.readFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
		return cur, nil
	}
	paths := make([]string, 0, len(ch.Files)+len(ch.Delete))
	for p := range ch.Files {
		paths = append(paths, p)
	}
	paths = append(paths, ch.Delete...)
	slices.Sort(paths)
	for _, p := range paths {
		cur, err := read(p)
		if err != nil {
			return err
		}
		if ch.Check != nil {
			if err := ch.Check(p, cur); err != nil {
				return &ConflictError{Path: p, Err: err}
			}
		}
	}
	for _, p := range slices.Sorted(maps.Keys(ch.Pinned)) {
		cur, err := read(p)
		if err != nil {
			return err
		}
		if want := ch.Pinned[p]; !bytes.Equal(cur, want) || (cur == nil) != (want == nil) {
			return &ConflictError{Path: p, Err: fmt.Errorf("%w: the change was planned on another version of it", gitops.ErrChanged)}
		}
	}
	return nil
}

// validatePaths refuses paths that are absolute, unclean, or reach outside the repository or into .git.
func validatePaths(ch gitops.Change) error {
	check := func(p string) error {
		if p == "" || path.IsAbs(p) || path.Clean(p) != p || p == ".." || len(p) > 2 && p[:3] == "../" ||
			p == ".git" || len(p) > 4 && p[:5] == ".git/" {
			return fmt.Errorf("%w: %q", ErrInvalidPath, p)
		}
		return nil
	}
	for p := range ch.Files {
		if err := check(p); err != nil {
			return err
		}
	}
	for _, p := range ch.Delete {
		if err := check(p); err != nil {
			return err
		}
		if _, both := ch.Files[p]; both {
			return fmt.Errorf("%w: %q is both written and deleted", ErrInvalidPath, p)
		}
	}
	return nil
}

// Snapshot is what some paths of a branch held at one commit.
type Snapshot struct {
	// Commit is the branch head that was read.
	Commit string
	// Files maps each requested path that exists to its content.
	Files map[string][]byte
}

// Read returns the current content of paths on the base branch (absent paths are left out).
// Directories are listed: a path ending in "/" reads every file directly inside it, one ending
// in "/**" every file below it.
func (w *Writer) Read(ctx context.Context, paths ...string) (Snapshot, error) {
	var snap Snapshot
	err := w.retried(ctx, "read", func(ctx context.Context, s *store) error {
		if err := w.fetch(ctx, s, w.opts.Branch); err != nil {
			return fmt.Errorf("fetching: %w", err)
		}
		head, err := s.head(w.opts.Branch)
		if err != nil {
			return err
		}
		tree, err := head.Tree()
		if err != nil {
			return fmt.Errorf("reading the tree of %s: %w", head.Hash, err)
		}
		snap = Snapshot{Commit: head.Hash.String(), Files: map[string][]byte{}}
		for _, p := range paths {
			if err := readInto(commitTree{tree}, p, snap.Files); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Snapshot{}, redact.Error(fmt.Errorf("reading %s: %w", w.opts.Branch, err))
	}
	return snap, nil
}

// retried runs fn on the store under the writer's backoff, again after a failure another attempt
// may fix (Git unreachable, a store rebuilt), never after a terminal one.
func (w *Writer) retried(ctx context.Context, what string, fn func(ctx context.Context, s *store) error) error {
	return wait.ExponentialBackoffWithContext(ctx, w.opts.Backoff, func(ctx context.Context) (bool, error) {
		err := w.withStore(func(s *store) error { return fn(ctx, s) })
		if err == nil {
			return true, nil
		}
		if terminal(ctx, err) {
			return false, err
		}
		w.log.Warn("git "+what+" failed; retrying", "error", redact.String(err.Error()))
		return false, nil
	})
}
