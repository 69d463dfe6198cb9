package forge_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/forge"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// BenchmarkGiteaProposal: what a failover's proposal costs on a real Gitea, in its two parts:
// the failover branch pushed by mpha's Git writer (warm), then its pull request opened. The
// failover benchmark's "preflight → proposed" is these two on a busier machine. Reports p50 and
// p99 of each in ms.
func BenchmarkGiteaProposal(b *testing.B) {
	if testing.Short() {
		b.Skip("starts Gitea")
	}
	g := testrig.StartGitea(b)
	r := newGiteaRepo(b, g, g.Admin, "fleet", nil)
	f, err := forge.New(context.Background(), forge.Options{Kind: forge.KindGitea, URL: g.URL, Token: g.Token, Repository: r.owner + "/" + r.name})
	if err != nil {
		b.Fatal(err)
	}
	url := g.CloneURL(r.owner, r.name)
	auth, err := gitrepo.NewAuth(url, map[string][]byte{"username": []byte(g.Admin), "password": []byte(g.Token)})
	if err != nil {
		b.Fatal(err)
	}
	w, err := gitrepo.New(gitrepo.Options{URL: url, Auth: auth, AllowHTTPCredentials: true,
		Author: git.Signature{Name: "bench", Email: "bench@mpha.invalid"}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := w.Read(ctx, "README.md"); err != nil { // the writer's copy, warm
		b.Fatal(err)
	}
	var push, pr []time.Duration
	for i := 0; b.Loop(); i++ {
		branch := fmt.Sprintf("mpha/failover/bench-%d", i)
		start := time.Now()
		if _, err := w.Apply(ctx, gitops.Change{Branch: branch, Files: map[string][]byte{"mpha/pair.yaml": fmt.Appendf(nil, "epoch: %d\n", i)},
			Message: "Fail over", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "failover"}}}); err != nil {
			b.Fatal(err)
		}
		pushed := time.Now()
		if _, err := f.Propose(ctx, forge.Proposal{Branch: branch, Base: "main", Title: "Fail over " + branch}); err != nil {
			b.Fatal(err)
		}
		push, pr = append(push, pushed.Sub(start)), append(pr, time.Since(pushed))
	}
	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"push", push}, {"pr", pr}} {
		slices.Sort(m.d)
		pct := func(p float64) float64 { return float64(m.d[int(p*float64(len(m.d)-1))].Microseconds()) / 1000 }
		b.ReportMetric(pct(0.50), m.name+"-p50-ms")
		b.ReportMetric(pct(0.99), m.name+"-p99-ms")
	}
}
