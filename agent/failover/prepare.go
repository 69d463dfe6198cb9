package failover

import (
	"context"
	"fmt"

	"github.com/mpha-dev/mpha/agent/event"
)

// PrepareFunc is a step the target's agent takes before the checks of a failover from the
// cluster from: the database sync of independent databases (database.BeforeFailover). It returns
// the step's outcome; an error means the failover must not go on, and its step says why.
type PrepareFunc func(ctx context.Context, req event.FailoverRequest, from string) (event.Step, error)

// prepare runs Options.Prepare for an accepted request and publishes its step in a preflight
// status of its own. Dry runs and drills change nothing, so they skip it (the checks then judge
// the data as it is). A failed step is a refusal (reason step-failed, a *event.RejectError): a
// sync is long and its causes (a busy or unreachable server, a mismatch) need a person, so it is
// not retried by redelivery; asking again runs it again. Any other error is a retry.
func (h *Handler) prepare(ctx context.Context, st *state, req event.Request) error {
	d := req.Data
	if h.opts.Prepare == nil || d.DryRun || d.Mode == event.ModeDrill {
		return nil
	}
	id := req.Event.ID()
	step, err := h.opts.Prepare(ctx, d, st.pair.Active)
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // stopping mid-way: the redelivery prepares again
	}
	if step.Name == "" {
		step.Name = "prepare"
	}
	if err != nil && step.Result == "" {
		step.Result, step.Detail = event.StepFailed, err.Error()
	}
	h.log.Info("failover step", "event", id, "step", step.Name, "result", step.Result, "detail", step.Detail)
	msg := step.Name + " " + step.Result
	if step.Detail != "" {
		msg += ": " + step.Detail
	}
	if perr := h.publishStatus(ctx, event.FailoverStatus{Event: id, Phase: event.PhasePreflight, Epoch: st.pair.Epoch,
		Message: msg, Steps: []event.Step{step}}); perr != nil {
		return perr
	}
	if err != nil {
		return &event.RejectError{Reason: event.ReasonStepFailed, Detail: fmt.Sprintf("%s failed before the failover commit: %s", step.Name, step.Detail)}
	}
	return nil
}
