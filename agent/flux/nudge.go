package flux

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/mpha-dev/mpha/agent/event"
)

// NudgeOnMerge nudges this cluster's Flux each time a failover status on subject, published by
// another cluster's agent (not self's), says a change was merged, until ctx ends: the merge
// moves this cluster's folder too (the old active's MP scaled down). The cluster a failover goes
// to nudges its own Flux from its follow-through, after the merge's own steps (the database's
// promotion) and not before. A status is only a hint to reconcile now (a forged one costs one
// reconcile); what Flux applies comes from Git. A nudge that RBAC forbids is reported once, then
// only the interval of Flux remains.
func (w *Watch) NudgeOnMerge(ctx context.Context, nc *nats.Conn, subject, self string) error {
	merged := make(chan struct{}, 1)
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		e, err := event.Decode(m.Data, event.TypeFailoverStatus)
		if err != nil || e.Source() == "mpha://agent/"+self {
			return
		}
		var st event.FailoverStatus
		if e.DataAs(&st) != nil || st.Phase != event.PhaseMerged || len(st.Steps) > 0 {
			return
		}
		select {
		case merged <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-merged:
		}
		w.NudgeNow(ctx, "a failover was merged", &warned)
	}
}

// NudgeNow nudges Flux and logs the outcome; a nudge RBAC forbids is warned about once per
// *warned (nil: every time). It never fails its caller: Flux's own interval remains.
func (w *Watch) NudgeNow(ctx context.Context, why string, warned *bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := w.Nudge(ctx, time.Now())
	var status apierrors.APIStatus
	switch {
	case err == nil:
		w.log.Info(why+": Flux asked to reconcile now", "kustomization", w.namespace+"/"+w.name)
	case errors.As(err, &status) && apierrors.IsForbidden(err):
		if warned == nil || !*warned {
			w.log.Warn("cannot nudge Flux (RBAC); it applies at its own interval",
				"hint", "allow patch on the Kustomization flux.kustomization and the GitRepository flux.gitRepository (the chart's Role does)", "error", err)
		}
		if warned != nil {
			*warned = true
		}
	default:
		w.log.Warn("nudging Flux failed; it applies at its own interval", "error", err)
	}
}
