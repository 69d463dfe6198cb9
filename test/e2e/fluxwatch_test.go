//go:build e2e

package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/agent/flux"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// fluxApplies records when each site's Kustomization mpha first reported each applied revision:
// Flux's own moment, which the follow-through's applied phase is held to.
type fluxApplies struct {
	mu sync.Mutex
	at map[string]map[string]time.Time // site → commit → first seen
}

func watchFluxApplies(ctx context.Context, t *testing.T, sites []*site) *fluxApplies {
	t.Helper()
	fa := &fluxApplies{at: map[string]map[string]time.Time{}}
	for _, s := range sites {
		w, err := flux.New(s.dynamic, testrig.FluxNamespace, "mpha", nil)
		if err != nil {
			t.Fatal(err)
		}
		fa.at[s.name] = map[string]time.Time{}
		ch, stop := w.Changed().Subscribe()
		go func() { _ = w.Run(ctx) }()
		go func() {
			defer stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-ch:
				}
				if rev, err := w.Revision(ctx); err == nil {
					now := time.Now()
					commit := rev[strings.LastIndex(rev, ":")+1:]
					fa.mu.Lock()
					if _, ok := fa.at[s.name][commit]; !ok {
						fa.at[s.name][commit] = now
					}
					fa.mu.Unlock()
				}
			}
		}()
	}
	return fa
}

// both is when the later of the sites applied commit; false while one has not.
func (fa *fluxApplies) both(commit string) (time.Time, bool) {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	var last time.Time
	for _, revs := range fa.at {
		at, ok := revs[commit]
		if !ok {
			return time.Time{}, false
		}
		if at.After(last) {
			last = at
		}
	}
	return last, true
}
