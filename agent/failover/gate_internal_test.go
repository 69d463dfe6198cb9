package failover

import (
	"testing"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/gitops/forge"
)

// The pull request's status from the checks: a failing check turns it red with its evidence,
// unless the emergency forced it; warnings and forced checks are counted in a green one. A
// resumed follow-through reads the forced checks from the commit's Mpha-Forced trailer.
func TestGateStatus(t *testing.T) {
	pass := event.Check{Name: "epoch", Result: "pass", Evidence: "main at epoch 7"}
	warn := event.Check{Name: "standby-ready", Result: "warn", Evidence: "not reconciled"}
	kid := event.Check{Name: "signing-key-kid", Result: "fail", Evidence: "kid differs"}
	stale := event.Check{Name: "epoch", Result: "fail", Evidence: "stale: main is at epoch 9, this pull request was built at 7"}
	tests := []struct {
		name   string
		checks []event.Check
		force  []string
		state  forge.StatusState
		desc   string
	}{
		{"all hold", []event.Check{pass, warn}, nil, forge.StatusSuccess, "preflight holds: 1 pass, 1 warn"},
		{"a check fails", []event.Check{pass, kid}, nil, forge.StatusFailure, "preflight fails, do not merge: signing-key-kid (kid differs)"},
		{"the emergency forced it", []event.Check{pass, kid}, []string{"signing-key-kid"}, forge.StatusSuccess, "preflight holds: 1 pass, 0 warn, 1 forced by the emergency"},
		{"forcing one check does not force another", []event.Check{stale, kid}, []string{"signing-key-kid"}, forge.StatusFailure,
			"preflight fails, do not merge: epoch (stale: main is at epoch 9, this pull request was built at 7)"},
		{"forced at the preflight", []event.Check{pass, {Name: "root-ca", Result: resultForced}}, nil, forge.StatusSuccess, "preflight holds: 1 pass, 0 warn, 1 forced by the emergency"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := gateStatus(tc.checks, tc.force, "https://forge/pulls/7")
			if st.Context != StatusContext || st.State != tc.state || st.Description != tc.desc || st.TargetURL != "https://forge/pulls/7" {
				t.Errorf("status %+v, want %s %q", st, tc.state, tc.desc)
			}
		})
	}
	msg := "Fail over tsb-mp from east to west (epoch 8)\n\nMpha-Kind: failover\nMpha-Mode: emergency\nMpha-Forced: signing-key-kid, root-ca\n"
	if got := forcedChecks(msg); len(got) != 2 || got[0] != "signing-key-kid" || got[1] != "root-ca" {
		t.Errorf("forced checks %q", got)
	}
	if got := forcedChecks("Fail over\n\nMpha-Kind: failover\n"); got != nil {
		t.Errorf("forced checks of a planned failover: %q", got)
	}
}
