package runtime

import (
	"context"
	"errors"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mpha-dev/mpha/internal/redact"
)

// loop is one of the agent's loops: it runs until ctx ends, or fails and is restarted.
type loop struct {
	name string
	run  func(ctx context.Context) error
}

// restartDelay is the pause before a failed loop runs again.
const restartDelay = 5 * time.Second

// retryForever calls try until it succeeds (true) or ctx ends (false), waiting b.Step() between
// attempts. Unlike wait.ExponentialBackoff it never gives up: Backoff.Step zeroes Steps once the
// cap is reached, which ends that loop after about a minute of a start-up outage, and a leader
// would then hold its Lease with no loop running.
func retryForever(ctx context.Context, b wait.Backoff, try func(context.Context) error, failed func(error, time.Duration)) bool {
	for {
		err := try(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		delay := b.Step() // past the cap and the steps, Step keeps returning the cap
		failed(err, delay)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
	}
}

// supervise runs l until ctx ends, restarting it after a failure.
func supervise(ctx context.Context, o Options, m *metrics, l loop) {
	log := o.Logger.With("loop", l.name)
	wait.JitterUntilWithContext(ctx, func(ctx context.Context) {
		err := l.run(ctx)
		if ctx.Err() != nil {
			return
		}
		m.restarts.WithLabelValues(l.name).Inc()
		if err == nil {
			err = errors.New("ended without an error")
		}
		log.Error("loop stopped; restarting", "in", restartDelay, "error", redact.String(err.Error()))
	}, restartDelay, 0.2, true)
}
