//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"
	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// eastFails (step h): east fails — its API server stops, and its Flux and agent with it. The
// failover to west completes without east (its heartbeats stop: the failed site is not waited
// for). When east comes back, its API server and agent first, the agent reports split brain
// (east's MP serves while pair.yaml makes west active) until east's Flux, back last, applies the
// standby role.
func (p *pair) eastFails(t *testing.T) {
	east, west := p.east, p.west
	before := p.pairFile(t)
	if before.Active != east.name {
		t.Fatalf("pair.yaml says %s is active, want east", before.Active)
	}
	testrig.Eventually(t, "east's tsb ready", time.Minute, func(ctx context.Context) error { return readyIs(ctx, east, 1) })
	if err := east.agent.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, proc := range east.flux.Processes() {
		if err := proc.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	east.cluster.Stop(t)
	east.mp.Halt("east's cluster is down")
	p.say("east is down: its API server, Flux, agent and MP stopped")
	id := "e2e-east-down"
	pr := p.request(t, west, id)
	p.complete(t, west, id, pr, before.Epoch, completion{fromDown: true})

	east.cluster.Restart(t)
	// East's external-dns failed while its API server was down and the rig restarted it; back
	// with the API server, it publishes the DNSEndpoint east still holds (east's MP) until east's
	// Flux applies the failover: the name alternates meanwhile (internal/testrig's doc).
	back := p.watchFloating(west, "east's return")
	defer back.stop()
	if err := east.agent.Restart(); err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	east.mp.Resume()
	p.say("east is back: its API server, agent and MP (its tsb Deployment still at 1); its Flux not yet")
	testrig.Eventually(t, "east's agent to report split brain", 2*time.Minute, func(ctx context.Context) error {
		return splitBrainIs(ctx, east, 1)
	})
	p.say("east's agent reports split brain (mpha_split_brain 1): east's MP serves while pair.yaml makes west active")
	for _, proc := range east.flux.Processes() {
		if err := proc.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	p.waitScale(t, east, 0, 3*time.Minute)
	testrig.Eventually(t, "east's split brain to clear", 2*time.Minute, func(ctx context.Context) error {
		return splitBrainIs(ctx, east, 0)
	})
	p.checkRestoreSuspended(t, east, true)
	p.say("east's Flux applied the standby role (tsb/iam 0, tsb-restore suspended): split brain cleared (mpha_split_brain 0)")
	p.dnsAgrees(t, west, p.sites())
	a := p.waitFloating(t, west, p.pairFile(t).RecordTTL(), time.Minute)
	stale := back.answers(east)
	back.stop()
	p.clientsStay(t, west)
	var split []string
	for _, c := range p.clients {
		n := 0
		for _, a := range c.Attempts() {
			if a.At.After(returned) && a.Outcome == testrig.OutcomeOK && a.Cluster == "east" {
				n++
			}
		}
		split = append(split, fmt.Sprintf("%s %d", c.Name(), n))
	}
	p.say("Answers east's MP gave the clients during the split brain: %s; since east's Flux applied the standby role, west's only",
		strings.Join(split, ", "))
	p.say("Both clusters hold the DNSEndpoint on west again; a real DNS query to BIND: %s, and it stays there. "+
		"Since east's return, %d answers (polled 10 a second) led to east: its external-dns (restarted %d times while its API "+
		"server was down) published east's old DNSEndpoint until east's Flux applied the failover", a, stale, east.externalDNS.Restarts())
}

func readyIs(ctx context.Context, s *site, n int32) error {
	for _, name := range mpDeployments {
		d, err := s.cluster.Clientset.AppsV1().Deployments(mpNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ReadyReplicas != n {
			return fmt.Errorf("%s: %s has %d ready replicas, want %d", s.name, name, d.Status.ReadyReplicas, n)
		}
	}
	return nil
}

// splitBrainIs checks s's agent's mpha_split_brain gauge.
func splitBrainIs(ctx context.Context, s *site, want float64) error {
	m, err := agentMetrics(ctx, s)
	if err != nil {
		return err
	}
	v, ok := m[`mpha_split_brain{cluster="`+s.name+`"}`]
	if !ok {
		return fmt.Errorf("%s's agent has no mpha_split_brain series yet", s.name)
	}
	if v != want {
		return fmt.Errorf("mpha_split_brain %v, want %v", v, want)
	}
	return nil
}

// agentMetrics scrapes s's agent's /metrics: each series (name and labels, as printed) → value.
func agentMetrics(ctx context.Context, s *site) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.agentURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		i := strings.LastIndexByte(line, ' ')
		if line == "" || line[0] == '#' || i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, nil
}

// chaos (step g): a failover to east while things go wrong: the request arrives 100 times (each
// copy with its own Nats-Msg-Id, so JetStream's de-duplication does not hide them from the
// agent), the handling agent is killed with SIGKILL once it accepted it, the Git server is down
// for 30 s, NATS restarts. Still exactly one pull request, and the end state of a failover.
func (p *pair) chaos(t *testing.T) {
	to := p.east
	before := p.pairFile(t)
	id := "e2e-chaos-east"
	e, err := event.NewFailoverRequest("mpha://cli/e2e", id, event.FailoverRequest{Target: to.name, Mode: event.ModePlanned,
		Reason: "e2e chaos: move the MP to east", RequestedBy: "e2e@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	p.writeSetting(t, p.west, "written on west before "+id)
	p.requested = time.Now()
	e.SetTime(time.Now().UTC())
	raw, err := event.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := p.js.Publish(p.ctx, p.subj.Requested(), raw, jetstream.WithMsgID(fmt.Sprintf("%s-copy-%d", id, i))); err != nil {
			t.Fatalf("publishing copy %d: %v", i, err)
		}
	}
	p.say("Published the request %s 100 times", id)
	p.waitPhase(t, id, event.PhaseAccepted, 2*time.Minute)
	if err := to.agent.Kill(); err != nil {
		t.Fatal(err)
	}
	p.say("kill -9 of east's agent once it accepted the request")
	gitea := p.gitea.Process()
	if err := gitea.Stop(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	p.say("The Git server (Gitea) is down")
	p.nats.Restart(t)
	p.say("NATS restarted")
	// Restarted at once, with Git still down: the agent's set-up retries until Git is back
	// (it never gives up), then the redelivered request resumes.
	if err := to.agent.Restart(); err != nil {
		t.Fatal(err)
	}
	p.say("east's agent restarted at once (Git still down)")
	time.Sleep(30*time.Second - time.Since(down))
	if err := gitea.Restart(); err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, "Gitea back", time.Minute, func(ctx context.Context) error { return testrig.HTTPOK(ctx, p.gitea.URL+"api/healthz") })
	p.say("The Git server is back after %s", time.Since(down).Round(time.Second))

	sts := p.waitPhase(t, id, event.PhaseProposed, 5*time.Minute)
	prs := map[string]bool{}
	for _, st := range sts {
		if st.PR != "" {
			prs[st.PR] = true
		}
	}
	if len(prs) != 1 {
		t.Fatalf("%d pull requests reported for %s: %v", len(prs), id, prs)
	}
	var pr string
	for u := range prs {
		pr = u
	}
	if n := p.pullRequests(t, "mpha/failover/"+id); n != 1 {
		t.Fatalf("%d pull requests on Gitea for %s", n, id)
	}
	p.say("Exactly one pull request for the request: %s", pr)
	p.complete(t, to, id, pr, before.Epoch, completion{repeats: true})
}

// pullRequests counts the pull requests (any state) whose head is branch.
func (p *pair) pullRequests(t *testing.T, branch string) int {
	t.Helper()
	c, err := gitea.NewClient(p.gitea.URL, gitea.SetToken(p.gitea.Token))
	if err != nil {
		t.Fatal(err)
	}
	prs, _, err := c.ListRepoPullRequests(p.gitea.Admin, repoName, gitea.ListPullRequestsOptions{State: gitea.StateAll,
		ListOptions: gitea.ListOptions{PageSize: 50}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, pr := range prs {
		if pr.Head != nil && pr.Head.Ref == branch {
			n++
		}
	}
	return n
}
