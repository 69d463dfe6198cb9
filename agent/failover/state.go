package failover

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/forge"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/plan"
	"github.com/mpha-dev/mpha/gitops/trailer"
)

// state is the pair as the base branch holds it when a request is handled.
type state struct {
	commit string
	pair   *gitops.Pair
	// files are what plan.Build reads (plan.Inputs), or pair.yaml alone (readPair).
	files map[string][]byte
}

func (s *state) clusters() []string {
	names := make([]string, 0, len(s.pair.Clusters))
	for _, c := range s.pair.Clusters {
		names = append(names, c.Name)
	}
	return names
}

// readPair reads pair.yaml alone (its state has no other files).
func (h *Handler) readPair(ctx context.Context) (*state, error) {
	return h.read(ctx, h.opts.Layout.Pair())
}

// readState reads what a failover plan reads (plan.Inputs) in one clone. A missing or broken
// pair.yaml is an error to retry: the repository is wrong, not the request, and someone will fix it.
func (h *Handler) readState(ctx context.Context) (*state, error) {
	return h.read(ctx, plan.Inputs(h.opts.Layout)...)
}

func (h *Handler) read(ctx context.Context, paths ...string) (*state, error) {
	l := h.opts.Layout
	snap, err := h.repo.Read(ctx, paths...)
	if err != nil {
		return nil, err
	}
	raw, ok := snap.Files[l.Pair()]
	if !ok {
		return nil, fmt.Errorf("%s is not in the repository at %s", l.Pair(), snap.Commit)
	}
	p, err := gitops.ParsePair(raw)
	if err != nil {
		return nil, fmt.Errorf("%s at %s: %w", l.Pair(), snap.Commit, err)
	}
	return &state{commit: snap.Commit, pair: p, files: snap.Files}, nil
}

// openFailover returns the answer for a request that arrives while another failover of the pair
// is open: the open one's pull request (pr mode) or branch. A failover branch is open while its
// pair.yaml proposes the next epoch and, with a forge, its pull request is open.
func (h *Handler) openFailover(ctx context.Context, st *state, branches []gitrepo.Branch) (*event.FailoverStatus, error) {
	next := st.pair.Epoch + 1
	var candidates []gitrepo.Branch
	for _, b := range branches {
		if epochOf(b.Files[h.opts.Layout.Pair()]) == next {
			candidates = append(candidates, b)
		}
	}
	if len(candidates) == 0 || h.opts.Mode == ModeDirect {
		return nil, nil
	}
	if h.opts.Mode == ModeBranch {
		b := candidates[0]
		return &event.FailoverStatus{Phase: event.PhaseProposed, Epoch: next, Branch: b.Name, Commit: b.Commit,
			Message: "a failover is already open on " + b.Name + ": merge or delete it first"}, nil
	}
	open, err := h.opts.Forge.Open(ctx, h.opts.Base, plan.Branch(plan.ModePlanned, ""))
	if err != nil {
		return nil, fmt.Errorf("listing open pull requests: %w", err)
	}
	for _, b := range candidates {
		for _, pr := range open {
			if pr.Branch == b.Name {
				return &event.FailoverStatus{Phase: event.PhaseProposed, Epoch: next, Branch: b.Name, Commit: b.Commit, PR: pr.URL,
					Message: fmt.Sprintf("a failover is already open as pull request #%d: merge or close it first", pr.Number)}, nil
			}
		}
	}
	return nil, nil
}

var _ PullRequests = forge.Forge(nil)

// epochOf is the epoch a pair.yaml holds, or -1.
func epochOf(raw []byte) int64 {
	if raw == nil {
		return -1
	}
	p, err := gitops.ParsePair(raw)
	if err != nil {
		return -1
	}
	return p.Epoch
}

// CommitMessage is the commit message Apply writes for ch: its message and trailers.
func CommitMessage(ch gitops.Change) (string, error) {
	return trailer.Format(ch.Message, ch.Trailers)
}

// maxDiff caps the diff a dry run publishes: the four files are small, a status event is not
// the place for more.
const maxDiff = 32 << 10

// Diff is the diff of ch against the files it was planned from (gitrepo.Diff), cut to fit in a
// status event.
func Diff(base map[string][]byte, ch gitops.Change) (string, error) {
	s, err := gitrepo.Diff(base, ch)
	if err != nil {
		return "", err
	}
	if len(s) > maxDiff {
		cut := strings.LastIndexByte(s[:maxDiff], '\n') + 1
		s = s[:cut] + "… (cut)\n"
	}
	return s, nil
}

// answers remembers the last answer to recent requests, so copies of a request are answered
// without a Git round trip. It forgets the oldest beyond its size: a forgotten request that comes
// back is handled from Git, which gives the same answer.
type answers struct {
	mu    sync.Mutex
	size  int
	order []string
	by    map[string]event.FailoverStatus
}

func newAnswers(size int) *answers {
	return &answers{size: size, by: map[string]event.FailoverStatus{}}
}

func (a *answers) get(id string) (event.FailoverStatus, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st, ok := a.by[id]
	return st, ok
}

func (a *answers) put(id string, st event.FailoverStatus) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.by[id]; !ok {
		a.order = append(a.order, id)
	}
	a.by[id] = st
	for len(a.order) > a.size {
		delete(a.by, a.order[0])
		a.order = a.order[1:]
	}
}
