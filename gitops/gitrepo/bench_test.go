package gitrepo_test

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"slices"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"

	"github.com/mpha-dev/mpha/gitops"
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
		if _, err := w.Apply(context.Background(), gitops.Change{
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

// BenchmarkRepoSize: the agent's Git operations against the rig's Git server as the repository
// grows to 1k, 10k and 50k files (100 commits of history): read (a shallow clone and one file)
// and apply (clone, write one file, commit, push). Reports seconds per operation, the heap
// allocated per operation (B/op) and the process's peak resident memory during it.
func BenchmarkRepoSize(b *testing.B) {
	if testing.Short() {
		b.Skip("uses the rig's Git server")
	}
	srv := testrig.StartGitServer(b)
	for _, files := range []int{1_000, 10_000, 50_000} {
		name := fmt.Sprintf("org/fleet-%d.git", files)
		srv.CreateLargeRepo(b, name, files, 100)
		auth, err := gitrepo.NewAuth(srv.URL(name), srv.Credentials())
		if err != nil {
			b.Fatal(err)
		}
		w, err := gitrepo.New(gitrepo.Options{URL: srv.URL(name), Auth: auth, AllowHTTPCredentials: true,
			Author: git.Signature{Name: "bench", Email: "bench@mpha.invalid"}})
		if err != nil {
			b.Fatal(err)
		}
		ops := []struct {
			name string
			run  func(i int) error
		}{
			{"read", func(int) error {
				snap, err := w.Read(context.Background(), "apps/team-001/svc-0001.yaml")
				if err == nil && len(snap.Files) != 1 {
					err = fmt.Errorf("read %d files, want 1", len(snap.Files))
				}
				return err
			}},
			{"apply", func(i int) error {
				_, err := w.Apply(context.Background(), gitops.Change{
					Files:   map[string][]byte{"mpha/clusters/west/secrets/iam-signing-key.yaml": fmt.Appendf(nil, "rev: %d\n", i)},
					Message: "Export iam-signing-key", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "secrets"}},
				})
				return err
			}},
		}
		for _, op := range ops {
			b.Run(fmt.Sprintf("files=%d/%s", files, op.name), func(b *testing.B) {
				b.ReportAllocs()
				resetPeakRSS(b)
				for i := 0; b.Loop(); i++ {
					if err := op.run(i); err != nil {
						b.Fatal(err)
					}
				}
				u, err := testrig.ReadUsage(os.Getpid())
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(u.HWM)/(1<<20), "peak-RSS-MiB")
			})
		}
	}
}

// resetPeakRSS returns freed memory to the kernel and resets the process's VmHWM (writing 5 to
// /proc/self/clear_refs), so that the next reading is this benchmark's peak, not an earlier one's.
func resetPeakRSS(b *testing.B) {
	b.Helper()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatalf("resetting the peak RSS: %v", err)
	}
}
