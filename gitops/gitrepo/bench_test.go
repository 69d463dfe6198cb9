package gitrepo_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"

	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// BenchmarkApplyLargeRepo: one secret's change → a commit on the server, in a repository of 10k
// files and 1k commits. Reports p50 and p99 of the whole Apply (clone, write, commit, push).
func BenchmarkApplyLargeRepo(b *testing.B) {
	if testing.Short() {
		b.Skip("uses the rig's Git server")
	}
	srv := testrig.StartGitServer(b)
	srv.CreateLargeRepo(b, repo, 10_000, 1_000)
	auth, err := gitrepo.NewAuth(srv.URL(repo), srv.Credentials())
	if err != nil {
		b.Fatal(err)
	}
	w, err := gitrepo.New(gitrepo.Options{URL: srv.URL(repo), Auth: auth, AllowHTTPCredentials: true,
		Author: git.Signature{Name: "bench", Email: "bench@mpha.invalid"}})
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if _, err := w.Apply(context.Background(), gitrepo.Change{
			Files:   map[string][]byte{"mpha/clusters/west/secrets/iam-signing-key.yaml": fmt.Appendf(nil, "rev: %d\n", i)},
			Message: "Export iam-signing-key", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "secrets"}},
		}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
