package testrig

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// Attempts is a client's record, oldest first. Its times are the attempts' starts, so what it
// measures is exact to within the client's Interval.
type Attempts []Attempt

// sameAs: two attempts in one run of a change log: same outcome, from the same MP at the same
// address (a refused connection at a new address is the name moving while no MP serves).
func (a Attempt) sameAs(b Attempt) bool {
	return a.Outcome == b.Outcome && a.Cluster == b.Cluster && a.IP == b.IP
}

// Change is a run of consecutive attempts with the same outcome from the same MP.
type Change struct {
	// At is the run's first attempt; Err that attempt's error.
	At      time.Time
	Outcome Outcome
	Cluster string
	IP      string
	Err     string
	// Count is how many attempts the run holds.
	Count int
}

// String is the change's log line: "12:00:01.200 east 200 (×25)", "12:00:05.000 error: connect
// refused: dial tcp 127.0.10.1:443: … (×20)".
func (c Change) String() string {
	var b strings.Builder
	b.WriteString(c.At.Format("15:04:05.000"))
	if c.Cluster != "" {
		b.WriteString(" " + c.Cluster)
	}
	b.WriteString(" " + string(c.Outcome))
	if c.Err != "" && c.Outcome != OutcomeOK {
		b.WriteString(": " + strings.TrimPrefix(c.Err, "401 Unauthorized: "))
	}
	if c.Count > 1 {
		fmt.Fprintf(&b, " (×%d)", c.Count)
	}
	return b.String()
}

// Changes folds the attempts into runs.
func (as Attempts) Changes() []Change {
	var out []Change
	for i, a := range as {
		if i > 0 && as[i-1].sameAs(a) {
			out[len(out)-1].Count++
			continue
		}
		out = append(out, Change{At: a.At, Outcome: a.Outcome, Cluster: a.Cluster, IP: a.IP, Err: a.Err, Count: 1})
	}
	return out
}

// Log is the change log, a line per change.
func (as Attempts) Log() string {
	var b strings.Builder
	for _, c := range as.Changes() {
		b.WriteString(c.String() + "\n")
	}
	return b.String()
}

// Last is the latest attempt.
func (as Attempts) Last() (Attempt, bool) {
	if len(as) == 0 {
		return Attempt{}, false
	}
	return as[len(as)-1], true
}

// LastAnswered is the MP of the latest 200 ("" when none).
func (as Attempts) LastAnswered() string {
	for i := len(as) - 1; i >= 0; i-- {
		if as[i].Outcome == OutcomeOK {
			return as[i].Cluster
		}
	}
	return ""
}

// FirstAnswered is the first 200 from cluster that started at or after after.
func (as Attempts) FirstAnswered(cluster string, after time.Time) (Attempt, bool) {
	for _, a := range as {
		if a.Outcome == OutcomeOK && a.Cluster == cluster && !a.At.Before(after) {
			return a, true
		}
	}
	return Attempt{}, false
}

// Outage is the longest interval in [from, to] without a 200: between two answered attempts, or
// between a bound of the window and the answered attempt nearest it.
func (as Attempts) Outage(from, to time.Time) time.Duration {
	var longest time.Duration
	last := from
	for _, a := range as {
		if a.Outcome != OutcomeOK || a.At.Before(from) || a.At.After(to) {
			continue
		}
		longest = max(longest, a.At.Sub(last))
		last = a.At
	}
	return max(longest, to.Sub(last))
}

// Failed counts the attempts in [from, to] that did not answer 200.
func (as Attempts) Failed(from, to time.Time) int {
	n := 0
	for _, a := range as {
		if a.Outcome != OutcomeOK && !a.At.Before(from) && !a.At.After(to) {
			n++
		}
	}
	return n
}

// Attempts is a copy of the client's record so far.
func (c *Client) Attempts() Attempts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append(Attempts(nil), c.attempts...)
}

// Name is the client's label.
func (c *Client) Name() string { return c.opts.Name }

// WaitFor waits until an attempt started at or after after matches, and returns the first such;
// it fails t with the client's change log after timeout.
func (c *Client) WaitFor(t testing.TB, what string, after time.Time, timeout time.Duration, match func(Attempt) bool) Attempt {
	t.Helper()
	var found Attempt
	waitFor(t, c.opts.Name+": "+what, timeout, nil, func(context.Context) error {
		for _, a := range c.Attempts() {
			if !a.At.Before(after) && match(a) {
				found = a
				return nil
			}
		}
		return fmt.Errorf("not yet; changes so far:\n%s", c.Attempts().Log())
	})
	return found
}

// WaitAnswered waits for a 200 from cluster started at or after after.
func (c *Client) WaitAnswered(t testing.TB, cluster string, after time.Time, timeout time.Duration) Attempt {
	t.Helper()
	return c.WaitFor(t, "a 200 from "+cluster, after, timeout, func(a Attempt) bool {
		return a.Outcome == OutcomeOK && a.Cluster == cluster
	})
}

// WaitOutcome waits for an attempt with outcome o started at or after after.
func (c *Client) WaitOutcome(t testing.TB, o Outcome, after time.Time, timeout time.Duration) Attempt {
	t.Helper()
	return c.WaitFor(t, string(o), after, timeout, func(a Attempt) bool { return a.Outcome == o })
}
