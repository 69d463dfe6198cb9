package heartbeat

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
)

// PairSource says what pair.yaml holds now (docs/design.md §2: roles come from Git).
type PairSource interface {
	Pair(ctx context.Context) (*gitops.Pair, error)
}

// Defaults of GitPairOptions.
const (
	DefaultRefresh     = 30 * time.Second
	DefaultReadTimeout = 5 * time.Second
)

// reader is what GitPair needs of a gitrepo.Repository.
type reader interface {
	Read(ctx context.Context, paths ...string) (gitrepo.Snapshot, error)
}

// GitPairOptions configure a GitPair.
type GitPairOptions struct {
	// Layout places pair.yaml (the zero value: under gitops.DefaultRoot).
	Layout gitops.Layout
	// Refresh is the least time between two reads of the repository (default DefaultRefresh):
	// a heartbeat every 10 s must not clone every 10 s. A failover's role change shows in the
	// heartbeats at most Refresh after it merges.
	Refresh time.Duration
	// ReadTimeout bounds one read, retries included (default DefaultReadTimeout), so that a slow
	// Git server delays a heartbeat by that much at most; keep it under the heartbeat interval,
	// which bounds the whole heartbeat.
	ReadTimeout time.Duration
	// Now defaults to time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// GitPair is a PairSource over the repository: it reads pair.yaml at most once per Refresh and
// serves the last copy in between. When a read fails it keeps serving the last good copy (logged;
// the next read is again one Refresh later), so an unreachable Git server does not silence the
// heartbeats: they go on reporting the role and epoch last read. Only before the first good read
// does Pair fail. Safe for concurrent use; callers must not modify the Pair returned.
type GitPair struct {
	repo reader
	opts GitPairOptions
	log  *slog.Logger

	mu      sync.Mutex
	pair    *gitops.Pair
	commit  string
	read    time.Time // of the cached copy
	checked time.Time // last attempt, good or not
}

var _ PairSource = (*GitPair)(nil)

// NewGitPair returns a GitPair reading repo (a *gitrepo.Writer).
func NewGitPair(repo reader, opts GitPairOptions) *GitPair {
	if opts.Layout.Root() == "" {
		opts.Layout, _ = gitops.NewLayout(gitops.DefaultRoot) // valid
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.ReadTimeout <= 0 {
		opts.ReadTimeout = DefaultReadTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &GitPair{repo: repo, opts: opts, log: log}
}

// Pair returns pair.yaml as last read, reading it again when the copy is older than Refresh.
func (g *GitPair) Pair(ctx context.Context) (*gitops.Pair, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.opts.Now()
	if g.pair != nil && now.Sub(g.checked) < g.opts.Refresh {
		return g.pair, nil
	}
	g.checked = now
	p, commit, err := g.fetch(ctx)
	if err != nil {
		if g.pair == nil {
			return nil, err
		}
		g.log.Warn("pair.yaml not read; using the last copy", "commit", g.commit,
			"age", now.Sub(g.read).Round(time.Second), "error", err)
		return g.pair, nil
	}
	if g.pair == nil || g.pair.Active != p.Active || g.pair.Epoch != p.Epoch {
		g.log.Info("pair.yaml read", "pair", p.Name, "active", p.Active, "epoch", p.Epoch, "commit", commit)
	}
	g.pair, g.commit, g.read = p, commit, now
	return p, nil
}

// Fresh reads pair.yaml now, whatever the copy's age, and keeps what it read: for a decision a
// role the merge just changed would make wrong (replacing a database). Unlike Pair, a failed
// read is an error.
func (g *GitPair) Fresh(ctx context.Context) (*gitops.Pair, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p, commit, err := g.fetch(ctx)
	if err != nil {
		return nil, err
	}
	now := g.opts.Now()
	g.pair, g.commit, g.read, g.checked = p, commit, now, now
	return p, nil
}

func (g *GitPair) fetch(ctx context.Context) (*gitops.Pair, string, error) {
	ctx, cancel := context.WithTimeout(ctx, g.opts.ReadTimeout)
	defer cancel()
	path := g.opts.Layout.Pair()
	snap, err := g.repo.Read(ctx, path)
	if err != nil {
		return nil, "", fmt.Errorf("reading %s: %w", path, err)
	}
	b, ok := snap.Files[path]
	if !ok {
		return nil, "", fmt.Errorf("%s is not in Git (commit %s)", path, snap.Commit)
	}
	p, err := gitops.ParsePair(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s at %s: %w", path, snap.Commit, err)
	}
	return p, snap.Commit, nil
}
