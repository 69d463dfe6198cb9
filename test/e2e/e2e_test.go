//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"code.gitea.io/sdk/gitea"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// TestDrill is the whole mission on real parts, step by step; each step is a subtest whose
// assertions must hold before the next one starts. The phase timings are printed at the end.
func TestDrill(t *testing.T) {
	var ph phases
	var p *pair
	t.Cleanup(func() {
		ph.print(t, os.Stdout)
		if p != nil {
			printClients(os.Stdout, p.clientRows)
		}
		if p != nil && len(p.dnsMoves) > 0 {
			fmt.Printf("The floating name in real DNS (BIND, polled 10 a second from each merge):\n  %s\n", strings.Join(p.dnsMoves, "\n  "))
		}
	})
	ph.time("start the rig", func() { p = startPair(t, t.Logf) })
	steps := append(p.firstSteps(), []step{
		{name: "e signing key rotated on west reaches east", run: p.rotateSigningKey},
		{name: "f failback to east", run: func(t *testing.T) {
			p.failbackSyncs(t)
			// East exports again, west's rotated key included: the standby is in step before the
			// next failover may start from it.
			p.secretsReach(t, p.east, p.west, exported, 3*time.Minute)
			p.doctor(t, p.east, p.west)
		}},
		{name: "f' west's database rebuilt as east's replica", run: p.rebuildStandby},
		{name: "h east fails: failover without it, split brain until its Flux applies", run: p.eastFailsPromotes},
		{name: "g chaos: 100 copies, kill -9, Git down 30s, NATS restart", run: p.chaosSyncs},
		{name: "i logical replication: a gated PR refused while red, failover to west with RPO 0, east re-subscribed", run: p.logicalFailsOver},
		{name: "j failback to east: mpha failback prepare, the gated PR, RPO 0", run: p.failbackPrepared},
		{name: "k game day: mpha drill run fails over to west and back, its report committed", run: p.gameDay},
		{name: "the agents needed only the chart's RBAC", run: p.rbacSuffices},
		{name: "no secret leaked", run: p.noLeaks},
	}...)
	for _, s := range steps {
		ok := true
		ph.time(s.name, func() { ok = t.Run(s.name, s.run) })
		if !ok {
			t.FailNow()
		}
	}
}

// step is one step of the drill: name is its subtest's, title what the demo prints for it.
type step struct {
	name, title string
	run         func(t *testing.T)
}

// firstSteps are the drill's steps a–d, which the demo narrates too: one list, so that the demo
// cannot drift from the drill.
func (p *pair) firstSteps() []step {
	return []step{
		{"a secrets reach the standby", "east's agent exports the TSB secrets, sealed for west; west's controller unseals them", p.secretsReachStandby},
		{"b standby values and role reach west", "east's agent renders west's management plane: HelmRelease values and role", p.standbyReachesWest},
		{"c doctor names east's unmanaged secrets; its fix applied", "mpha doctor finds what would break a failback, and prints the fix", p.managedFix},
		{"c doctor passes", "mpha doctor: could west take over?", func(t *testing.T) { p.doctor(t, p.east, p.west) }},
		{"d failover to west", "A failover to west, through a pull request", p.failoverPromotes},
	}
}

// phases times the drill's steps.
type phases struct {
	rows []phaseRow
}

type phaseRow struct {
	name string
	took time.Duration
}

func (ph *phases) time(name string, f func()) {
	start := time.Now()
	defer func() { ph.rows = append(ph.rows, phaseRow{name, time.Since(start)}) }()
	f()
}

func (ph *phases) print(t testing.TB, w io.Writer) {
	var total time.Duration
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "phase\tseconds\t\n")
	for _, r := range ph.rows {
		fmt.Fprintf(tw, "%s\t%.1f\t\n", r.name, r.took.Seconds())
		total += r.took
	}
	fmt.Fprintf(tw, "total\t%.1f\t\n", total.Seconds())
	_ = tw.Flush()
	if t.Failed() {
		fmt.Fprintln(w, "(the drill failed: the last phase is where)")
	}
}

// noLeaks scans for the TSB secrets' values, the HMAC key and the forge token (and their unkeyed
// SHA-256): every commit message and file of every branch, every pull request, both agents' logs.
func (p *pair) noLeaks(t *testing.T) {
	repo, err := gogit.CloneContext(p.ctx, memory.NewStorage(), nil, &gogit.CloneOptions{URL: p.gitURL, NoCheckout: true,
		Auth: &githttp.BasicAuth{Username: p.gitea.Admin, Password: p.gitea.Token}})
	if err != nil {
		t.Fatal(err)
	}
	refs, err := repo.References()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[plumbing.Hash]bool{}
	commits := 0
	_ = refs.ForEach(func(r *plumbing.Reference) error {
		if r.Type() != plumbing.HashReference {
			return nil
		}
		it, err := repo.Log(&gogit.LogOptions{From: r.Hash()})
		if err != nil {
			t.Fatal(err)
		}
		return it.ForEach(func(c *object.Commit) error {
			if seen[c.Hash] {
				return nil
			}
			seen[c.Hash] = true
			commits++
			p.leaks.Scan(t, "commit "+c.Hash.String()[:10]+" message", c.Message)
			files, err := c.Files()
			if err != nil {
				t.Fatal(err)
			}
			return files.ForEach(func(f *object.File) error {
				s, err := f.Contents()
				if err != nil {
					return err
				}
				p.leaks.Scan(t, "commit "+c.Hash.String()[:10]+" "+f.Name, s)
				return nil
			})
		})
	})
	c, err := gitea.NewClient(p.gitea.URL, gitea.SetToken(p.gitea.Token))
	if err != nil {
		t.Fatal(err)
	}
	prs, _, err := c.ListRepoPullRequests(p.gitea.Admin, repoName, gitea.ListPullRequestsOptions{State: gitea.StateAll})
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range prs {
		p.leaks.Scan(t, fmt.Sprintf("pull request #%d", pr.Index), pr.Title+"\n"+pr.Body)
	}
	logs := p.agentLogs(t)
	p.leaks.Scan(t, "the agents' logs", logs)
	if commits < 5 || len(prs) == 0 || !strings.Contains(logs, "msg") {
		t.Fatalf("scanned too little to mean anything: %d commits, %d PRs, %d bytes of logs", commits, len(prs), len(logs))
	}
	p.say("No secret value, HMAC key or token (nor an unkeyed SHA-256 of one) in %d commits, %d pull requests or the agents' logs", commits, len(prs))
}
