package failover

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/readiness"
	"github.com/mpha-dev/mpha/gitops/plan"
)

// Check results beyond readiness' pass, warn and fail.
const resultForced = plan.PreflightForced

// Preflight runs the readiness checks of docs/design.md §7 for a failover from one cluster to
// another, as the target's agent sees them now.
type Preflight interface {
	Run(ctx context.Context, from, to string) ([]event.Check, error)
}

// PreflightFunc adapts a function to Preflight.
type PreflightFunc func(ctx context.Context, from, to string) ([]event.Check, error)

// Run calls f.
func (f PreflightFunc) Run(ctx context.Context, from, to string) ([]event.Check, error) {
	return f(ctx, from, to)
}

// Monitor runs the readiness monitor's checks (one fresh round, which also refreshes its
// ConfigMap and metrics) as the preflight.
func Monitor(m *readiness.Monitor) Preflight {
	return PreflightFunc(func(ctx context.Context, _, _ string) ([]event.Check, error) {
		results, err := m.RunOnce(ctx)
		if err != nil {
			return nil, fmt.Errorf("readiness checks: %w", err)
		}
		checks := make([]event.Check, 0, len(results))
		for _, r := range results {
			checks = append(checks, event.Check{Name: r.Check, Result: string(r.Status), Evidence: r.Evidence})
		}
		return checks, nil
	})
}

// preflight runs the checks and judges them for the request's mode: a failing check refuses a
// planned failover or a drill; an emergency goes on past the failing checks its force names, and
// is refused for the others. It returns the verdicts (forced ones marked), the Mpha-Preflight
// summary, and the refusal if any; an error means the checks could not run (retry).
func (h *Handler) preflight(ctx context.Context, st *state, req event.Request) ([]event.Check, string, *event.RejectError, error) {
	d := req.Data
	checks := []event.Check{epochCheck(st, d)}
	if h.opts.Preflight != nil {
		more, err := h.opts.Preflight.Run(ctx, st.pair.Active, d.Target)
		if err != nil {
			return nil, "", nil, err
		}
		checks = append(checks, more...)
	}
	summary := plan.PreflightPass
	var refused []string
	for i, c := range checks {
		switch c.Result {
		case string(readiness.Fail):
			if d.Mode == event.ModeEmergency && slices.Contains(d.Force, c.Name) {
				checks[i].Result, summary = resultForced, plan.PreflightForced
				continue
			}
			refused = append(refused, c.Name+" ("+c.Evidence+")")
		case string(readiness.Warn):
			if summary == plan.PreflightPass {
				summary = plan.PreflightWarn
			}
		}
	}
	if len(refused) == 0 {
		return checks, summary, nil, nil
	}
	detail := "failing checks: " + strings.Join(refused, "; ")
	if d.Mode == event.ModeEmergency {
		detail += "; an emergency may force them by name"
	} else {
		detail += "; a planned failover needs every check to pass or warn (an emergency may force named checks)"
	}
	return checks, summary, &event.RejectError{Reason: event.ReasonPreflightFailed, Detail: detail}, nil
}

// epochCheck reports §7's epoch check, which plan.Admit made before the request was accepted:
// a request it refused never reaches the preflight.
func epochCheck(st *state, d event.FailoverRequest) event.Check {
	c := event.Check{Name: "epoch", Result: string(readiness.Pass)}
	if d.ExpectedEpoch == nil {
		c.Evidence = fmt.Sprintf("pair.yaml at epoch %d; the request names no expectedEpoch", st.pair.Epoch)
	} else {
		c.Evidence = fmt.Sprintf("pair.yaml at epoch %d, as the request expects", st.pair.Epoch)
	}
	return c
}

func planChecks(checks []event.Check) []plan.Check {
	out := make([]plan.Check, 0, len(checks))
	for _, c := range checks {
		out = append(out, plan.Check{Name: c.Name, Result: c.Result, Evidence: c.Evidence})
	}
	return out
}

var helmReleases = schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}

// StandbyReady is §7's standby-ready check as far as Flux tells it: the target's HelmRelease of
// the MP is Ready at its current generation. A missing HelmRelease only warns (the MP may be
// installed another way); one Flux could not reconcile fails.
func StandbyReady(dyn dynamic.Interface, namespace, name string) Preflight {
	return PreflightFunc(func(ctx context.Context, _, _ string) ([]event.Check, error) {
		c := event.Check{Name: "standby-ready"}
		hr, err := dyn.Resource(helmReleases).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
			c.Result, c.Evidence = string(readiness.Warn), fmt.Sprintf("no HelmRelease %s/%s: the standby MP is not installed by Flux", namespace, name)
			return []event.Check{c}, nil
		case err != nil:
			return nil, fmt.Errorf("reading HelmRelease %s/%s: %w", namespace, name, err)
		}
		status, reason, message := "", "", ""
		conds, _, _ := unstructured.NestedSlice(hr.Object, "status", "conditions")
		for _, raw := range conds {
			if m, ok := raw.(map[string]any); ok && m["type"] == "Ready" {
				status, _ = m["status"].(string)
				reason, _ = m["reason"].(string)
				message, _ = m["message"].(string)
			}
		}
		observed, _, _ := unstructured.NestedInt64(hr.Object, "status", "observedGeneration")
		switch {
		case status == "True" && observed == hr.GetGeneration():
			c.Result, c.Evidence = string(readiness.Pass), fmt.Sprintf("HelmRelease %s/%s Ready at generation %d", namespace, name, observed)
		case status == "False":
			c.Result, c.Evidence = string(readiness.Fail), fmt.Sprintf("HelmRelease %s/%s not Ready (%s): %s", namespace, name, reason, message)
		default:
			c.Result, c.Evidence = string(readiness.Warn), fmt.Sprintf("HelmRelease %s/%s not reconciled at generation %d yet (Ready %q, observed %d)",
				namespace, name, hr.GetGeneration(), status, observed)
		}
		return []event.Check{c}, nil
	})
}

// Preflights runs several preflights in order and joins their checks.
func Preflights(ps ...Preflight) Preflight {
	return PreflightFunc(func(ctx context.Context, from, to string) ([]event.Check, error) {
		var all []event.Check
		for _, p := range ps {
			checks, err := p.Run(ctx, from, to)
			if err != nil {
				return nil, err
			}
			all = append(all, checks...)
		}
		return all, nil
	})
}
