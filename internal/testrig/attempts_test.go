package testrig_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// A failover as a client records it, one attempt a second: east answers, connections are refused
// at east's address and then at west's, west answers.
func failoverAttempts(t0 time.Time) testrig.Attempts {
	ok := func(s int, cluster, ip string) testrig.Attempt {
		return testrig.Attempt{At: t0.Add(time.Duration(s) * time.Second), Outcome: testrig.OutcomeOK, Status: 200, Cluster: cluster, IP: ip}
	}
	refused := func(s int, ip string) testrig.Attempt {
		return testrig.Attempt{At: t0.Add(time.Duration(s) * time.Second), Outcome: testrig.OutcomeRefused, IP: ip,
			Err: "dial tcp " + ip + ":443: connect: connection refused"}
	}
	return testrig.Attempts{
		ok(0, "east", "127.0.10.1"), ok(1, "east", "127.0.10.1"),
		refused(2, "127.0.10.1"), refused(3, "127.0.10.1"), refused(4, "127.0.10.2"), refused(5, "127.0.10.2"),
		ok(6, "west", "127.0.10.2"), ok(7, "west", "127.0.10.2"),
	}
}

func TestAttemptsQueries(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	as := failoverAttempts(t0)
	sec := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	for _, tc := range []struct {
		name     string
		from, to time.Time
		want     time.Duration
	}{
		{"whole record", sec(0), sec(7), 5 * time.Second},
		{"from the failover on", sec(1), sec(7), 5 * time.Second},
		{"window opening in the outage", sec(3), sec(7), 3 * time.Second},
		{"window closing in the outage", sec(0), sec(4), 3 * time.Second},
		{"only answered attempts", sec(6), sec(7), time.Second},
		{"no attempt in the window", sec(10), sec(12), 2 * time.Second},
	} {
		if got := as.Outage(tc.from, tc.to); got != tc.want {
			t.Errorf("Outage %s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if n := as.Failed(sec(0), sec(7)); n != 4 {
		t.Errorf("Failed = %d, want 4", n)
	}
	if a, ok := as.FirstAnswered("west", sec(0)); !ok || !a.At.Equal(sec(6)) {
		t.Errorf("FirstAnswered(west) = %v %v, want the attempt at +6s", a.At, ok)
	}
	if _, ok := as.FirstAnswered("east", sec(2)); ok {
		t.Error("FirstAnswered(east) after the failover found one")
	}
	if got := as.LastAnswered(); got != "west" {
		t.Errorf("LastAnswered = %q, want west", got)
	}
	if a, _ := as.Last(); !a.At.Equal(sec(7)) {
		t.Errorf("Last = %v", a.At)
	}

	want := "12:00:00.000 east 200 (×2)\n" +
		"12:00:02.000 error: connect refused: dial tcp 127.0.10.1:443: connect: connection refused (×2)\n" +
		"12:00:04.000 error: connect refused: dial tcp 127.0.10.2:443: connect: connection refused (×2)\n" +
		"12:00:06.000 west 200 (×2)\n"
	if diff := cmp.Diff(want, as.Log()); diff != "" {
		t.Errorf("Log (-want +got):\n%s", diff)
	}
	unauthorized := testrig.Change{At: sec(9), Outcome: testrig.OutcomeUnauthorized, Cluster: "west",
		Err: `401 Unauthorized: unknown kid "k2"`, Count: 1}
	if got := unauthorized.String(); got != `12:00:09.000 west 401: unknown kid "k2"` {
		t.Errorf("a 401's line: %q", got)
	}
}
