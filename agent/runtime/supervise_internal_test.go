package runtime

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Set-up retries outlast the backoff's cap and steps: 50 failures, then success. (The
// wait.ExponentialBackoff this replaced gave up once the cap was reached, leaving a leader with
// no loops after a minute-long outage at start-up.)
func TestRetryForeverOutlastsTheCap(t *testing.T) {
	t.Parallel()
	calls := 0
	var delays []time.Duration
	ok := retryForever(context.Background(), wait.Backoff{Duration: time.Microsecond, Factor: 2, Steps: 3, Cap: 4 * time.Microsecond},
		func(context.Context) error {
			if calls++; calls <= 50 {
				return errors.New("git is down")
			}
			return nil
		},
		func(_ error, d time.Duration) { delays = append(delays, d) })
	if !ok || calls != 51 || len(delays) != 50 {
		t.Fatalf("ok %v after %d calls, %d waits", ok, calls, len(delays))
	}
	if delays[0] != time.Microsecond || delays[49] != 4*time.Microsecond {
		t.Errorf("waits %v … %v, want 1µs growing to the 4µs cap", delays[0], delays[49])
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if retryForever(ctx, wait.Backoff{Duration: time.Hour}, func(context.Context) error { return errors.New("down") }, func(error, time.Duration) {}) {
		t.Error("succeeded with its context ended")
	}
}
