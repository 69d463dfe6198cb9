// Package failovertest reads the failover statuses a pair's agents publish on its JetStream
// stream, for the tests that drive failovers (agent/failover's rig, the e2e drill). Test-only:
// never import it from the binary.
package failovertest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// Stream is a pair's event stream.
type Stream struct {
	JS       jetstream.JetStream
	Subjects event.Subjects
}

// Statuses returns the failover.status data published for request id, in order.
func (s Stream) Statuses(t testing.TB, ctx context.Context, id string) []event.FailoverStatus {
	t.Helper()
	tl := s.Timeline(t, ctx, id)
	out := make([]event.FailoverStatus, 0, len(tl))
	for _, st := range tl {
		out = append(out, st.FailoverStatus)
	}
	return out
}

// Timed is a status with the time JetStream stored it (the server's clock, one for all agents).
type Timed struct {
	event.FailoverStatus
	At time.Time
}

// Timeline returns the statuses published for request id with their times, in order.
func (s Stream) Timeline(t testing.TB, ctx context.Context, id string) []Timed {
	t.Helper()
	var out []Timed
	for _, m := range testrig.StreamMessages(t, ctx, s.JS, s.Subjects.Stream(), s.Subjects.Status()) {
		e, err := event.Decode(m.Data, event.TypeFailoverStatus)
		if err != nil {
			t.Fatal(err)
		}
		var st event.FailoverStatus
		if err := e.DataAs(&st); err != nil {
			t.Fatal(err)
		}
		if st.Event == id {
			out = append(out, Timed{st, m.Time})
		}
	}
	return out
}

// WaitPhase waits until request id reached phase and returns its statuses. A request that ends
// rejected or failed first fails t at once, with its reason.
func (s Stream) WaitPhase(t testing.TB, ctx context.Context, id string, phase event.Phase, timeout time.Duration) []event.FailoverStatus {
	t.Helper()
	var got []event.FailoverStatus
	testrig.Eventually(t, "request "+id+" to reach "+string(phase), timeout, func(context.Context) error {
		got = s.Statuses(t, ctx, id)
		for _, st := range got {
			if st.Phase == phase {
				return nil
			}
			if st.Phase == event.PhaseRejected || st.Phase == event.PhaseFailed {
				t.Fatalf("request %s ended %s (%s): %s", id, st.Phase, st.Reason, st.Message)
			}
		}
		return errors.New("phases so far: " + Phases(got))
	})
	return got
}

// Phases lists the statuses' phases in order: "accepted,preflight,proposed".
func Phases(sts []event.FailoverStatus) string {
	s := make([]string, 0, len(sts))
	for _, st := range sts {
		s = append(s, string(st.Phase))
	}
	return strings.Join(s, ",")
}

// Distinct keeps the first status of each phase: what a request delivered more than once (copies,
// a redelivery after a crash) reported, without the repeats.
func Distinct(sts []event.FailoverStatus) []event.FailoverStatus {
	seen := map[event.Phase]bool{}
	var out []event.FailoverStatus
	for _, st := range sts {
		if !seen[st.Phase] {
			seen[st.Phase] = true
			out = append(out, st)
		}
	}
	return out
}
