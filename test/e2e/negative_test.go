//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/readiness"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// westOwnKid is the kid of the iam-signing-key west holds of its own in the negative controls.
const westOwnKid = "iam-key-west-own"

// TestNegativeControls shows that the drill's proof can fail: the pair is set up as an operator
// who skipped what mpha copies would have it. The agents export tsb-iam-jwks but not
// iam-signing-key, and west, installed on its own, holds an iam-signing-key and certificates from
// a CA of its own. Then:
//
//   - the preflight refuses a planned failover, naming the kid mismatch and the two root CAs;
//   - an emergency failover forcing those two checks goes through Git and Flux, and the clients,
//     configured as in the drill, fail the TLS handshake with west's MP (another CA); the agent
//     never reports verified, for its probe fails the same way;
//   - west's certificate replaced by one of the shared CA, the clients get 401 (unknown kid) from
//     west's MP: their tokens were signed by east's key, which west does not hold;
//   - east's iam-signing-key copied to west by hand, what mpha should have done, the clients are
//     answered by west and the failover is verified.
//
// Each refusal is asserted: were the stand-ins or clients to accept what TSB would not, or the
// preflight to miss what it must see, this test fails.
func TestNegativeControls(t *testing.T) {
	p := startPair(t, t.Logf, rigOptions{mergePoll: mergePoll, exportNames: []string{"tsb-iam-jwks"}, westOwnKey: true, westCA: true})
	id := "e2e-negative-west"
	var merged time.Time
	steps := []step{
		{name: "the export leaves iam-signing-key out", run: func(t *testing.T) {
			p.secretsReach(t, p.east, p.west, []string{"tsb-iam-jwks"}, 3*time.Minute)
			path := p.layout.Secret("west", "iam-signing-key")
			if _, ok := p.files(t, path)[path]; ok {
				t.Fatalf("%s is on main, though secrets.names leaves it out", path)
			}
			if kid := secretData(t, p, p.west, "iam-signing-key")["kid"]; string(kid) != westOwnKid {
				t.Fatalf("west's iam-signing-key has kid %q, want its own %s", kid, westOwnKid)
			}
			p.waitScale(t, p.west, 0, 3*time.Minute)
		}},
		{name: "doctor and the preflight refuse: kid mismatch, two root CAs", run: func(t *testing.T) {
			res := map[string]readiness.Result{}
			for _, c := range []string{readiness.SigningKeyKid, readiness.RootCA} {
				res[c] = p.doctorCheck(t, c)
			}
			sts, code := p.requestWith(t, p.west, id+"-planned", "--mode", "planned")
			if code != 3 {
				t.Fatalf("a planned failover exited %d, want 3 (refused): %+v", code, sts)
			}
			last := sts[len(sts)-1]
			if last.Phase != event.PhaseRejected {
				t.Fatalf("the planned failover ended %s, want rejected", last.Phase)
			}
			for name, want := range map[string]string{readiness.SigningKeyKid: westOwnKid, readiness.RootCA: "different root CAs"} {
				c := checkOf(sts, name)
				if c == nil || c.Result != string(readiness.Fail) || !strings.Contains(c.Evidence, want) {
					t.Errorf("the preflight's %s: %+v; want a failure naming %q", name, c, want)
				}
				if r := res[name]; r.Status != readiness.Fail || !strings.Contains(r.Evidence, want) {
					t.Errorf("doctor's %s: %s: %s; want a failure naming %q", name, r.Status, r.Evidence, want)
				}
			}
			p.say("The preflight refused the planned failover: %s", last.Message)
		}},
		{name: "forced: the clients fail TLS with west's MP", run: func(t *testing.T) {
			sts, code := p.requestWith(t, p.west, id, "--mode", "emergency", "--force", readiness.SigningKeyKid+","+readiness.RootCA)
			if code != 0 || sts[len(sts)-1].Phase != event.PhaseProposed {
				t.Fatalf("the emergency failover exited %d: %+v", code, sts)
			}
			pr := sts[len(sts)-1].PR
			if err := p.approveAndMerge(p.ctx, prNumber(t, pr), "Merge failover "+id); err != nil {
				t.Fatalf("merging %s: %v", pr, err)
			}
			merged = time.Now()
			p.waitPhase(t, id, event.PhaseApplied, 5*time.Minute)
			p.dnsAgrees(t, p.west, p.sites())
			p.waitFloating(t, p.west, p.pairFile(t).RecordTTL(), time.Minute)
			for _, c := range p.clients {
				a := c.WaitFor(t, "a TLS failure at west's address", merged, time.Minute, func(a testrig.Attempt) bool {
					return a.Outcome == testrig.OutcomeTLS && a.IP == p.west.addr
				})
				p.say("client %s at west's MP: %s", c.Name(), a.Err)
			}
			p.clientsNeverAnswered(t, p.west, merged)
			p.notVerified(t, id)
		}},
		{name: "west's certificate from the shared CA: the clients get 401, unknown kid", run: func(t *testing.T) {
			crt, key := p.ca.Leaf(t, p.west.fqdn, floatingFQDN)
			p.leaks.Add(key)
			fixed := time.Now()
			p.setSecretData(t, p.west, "tsb-certs", map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": p.ca.PEM})
			for _, c := range p.clients {
				a := c.WaitFor(t, "west's 401", fixed, time.Minute, func(a testrig.Attempt) bool {
					return a.Outcome == testrig.OutcomeUnauthorized && a.Cluster == "west"
				})
				if !strings.Contains(a.Err, "unknown kid") || !strings.Contains(a.Err, westOwnKid) {
					t.Errorf("client %s: west refused for another reason: %s", c.Name(), a.Err)
				}
				p.say("client %s at west's MP: 401 %s", c.Name(), a.Err)
			}
			p.clientsNeverAnswered(t, p.west, merged)
			p.notVerified(t, id)
		}},
		{name: "east's signing key copied by hand: answered, verified", run: func(t *testing.T) {
			copied := time.Now()
			p.setSecretData(t, p.west, "iam-signing-key", secretData(t, p, p.east, "iam-signing-key"))
			for _, c := range p.clients {
				c.WaitAnswered(t, "west", copied, time.Minute)
			}
			p.waitPhase(t, id, event.PhaseVerified, 2*time.Minute)
			p.say("With east's iam-signing-key and a certificate of the shared CA, west's MP answers the clients and the failover is verified")
		}},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			t.FailNow()
		}
	}
}

// clientsNeverAnswered: no client got a 200 from s since since.
func (p *pair) clientsNeverAnswered(t *testing.T, s *site, since time.Time) {
	t.Helper()
	for _, c := range p.clients {
		if a, ok := c.Attempts().FirstAnswered(s.name, since); ok {
			t.Errorf("client %s was answered by %s at %s: its MP accepted what TSB's would refuse", c.Name(), s.name, a.At.Format("15:04:05.000"))
		}
	}
}

// notVerified: the agent has not reported the failover verified: its probe is refused too.
func (p *pair) notVerified(t *testing.T, id string) {
	t.Helper()
	for _, st := range p.statuses(t, id) {
		if st.Phase == event.PhaseVerified || st.Phase == event.PhaseFailed {
			t.Fatalf("request %s reported %s while the clients are refused: %s", id, st.Phase, st.Message)
		}
	}
}

func secretData(t *testing.T, p *pair, s *site, name string) map[string][]byte {
	t.Helper()
	sec, err := s.cluster.Clientset.CoreV1().Secrets(mpNS).Get(p.ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("%s: reading secret %s: %v", s.name, name, err)
	}
	return sec.Data
}

// setSecretData replaces the data of s's secret name, as an operator's kubectl would.
func (p *pair) setSecretData(t *testing.T, s *site, name string, data map[string][]byte) {
	t.Helper()
	testrig.Eventually(t, fmt.Sprintf("%s's %s replaced", s.name, name), 30*time.Second, func(ctx context.Context) error {
		sec, err := s.cluster.Clientset.CoreV1().Secrets(mpNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		sec.Data = maps.Clone(data)
		_, err = s.cluster.Clientset.CoreV1().Secrets(mpNS).Update(ctx, sec, metav1.UpdateOptions{})
		return err
	})
}
