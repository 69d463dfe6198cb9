package runloop_test

import (
	"context"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/internal/notify"
	"github.com/mpha-dev/mpha/internal/runloop"
)

// A notification of what the loop subscribed to runs it again before any resync.
func TestSignalOnRunsTheLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var b notify.Broadcast
	l := runloop.New(runloop.Options{Debounce: time.Millisecond, Resync: time.Hour})
	runs := make(chan struct{}, 10)
	go func() { _ = l.Run(ctx, func(context.Context) error { runs <- struct{}{}; return nil }) }()
	go l.SignalOn(ctx, b.Subscribe)
	wait := func(what string) {
		t.Helper()
		select {
		case <-runs:
		case <-time.After(30 * time.Second):
			t.Fatalf("no run %s", what)
		}
	}
	wait("at the start")
	// Notify until the subscription is in place and a run follows.
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond):
				b.Notify()
			}
		}
	}()
	wait("after a notification")
	close(done)
}
