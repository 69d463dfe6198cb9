package gitrepo_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
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

// BenchmarkRepoSize: one write (bring the copy up to date, change one file, commit, push) and one
// read as the repository grows to 1k, 10k, 50k and 200k files (100 commits of history), side by
// side with the git CLI doing the same write on a warm clone (fetch, reset to the new head,
// write, add, commit, push). mpha's writer runs warm with its store in memory and on disk, and
// cold (its first call: a depth-1 fetch of everything). Reports seconds per operation, the heap
// allocated per operation (B/op) and the peak resident memory: the process's during mpha's
// operations, the git processes' largest for the CLI's.
func BenchmarkRepoSize(b *testing.B) {
	if testing.Short() {
		b.Skip("uses the rig's Git server")
	}
	srv := testrig.StartGitServer(b)
	for _, files := range []int{1_000, 10_000, 50_000, 200_000} {
		name := fmt.Sprintf("org/fleet-%d.git", files)
		srv.CreateLargeRepo(b, name, files, 100)
		auth, err := gitrepo.NewAuth(srv.URL(name), srv.Credentials())
		if err != nil {
			b.Fatal(err)
		}
		writer := func(b *testing.B, cacheDir string) *gitrepo.Writer {
			w, err := gitrepo.New(gitrepo.Options{URL: srv.URL(name), Auth: auth, AllowHTTPCredentials: true, CacheDir: cacheDir,
				Author: git.Signature{Name: "bench", Email: "bench@mpha.invalid"}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(w.Close)
			return w
		}
		path := "mpha/clusters/west/secrets/iam-signing-key.yaml"
		apply := func(w *gitrepo.Writer, i int) error {
			_, err := w.Apply(context.Background(), gitops.Change{
				Files:   map[string][]byte{path: fmt.Appendf(nil, "rev: %d %d\n", i, time.Now().UnixNano())},
				Message: "Export iam-signing-key", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "secrets"}},
			})
			return err
		}
		measure := func(b *testing.B, op func(i int) error) {
			b.ReportAllocs()
			resetPeakRSS(b)
			for i := 0; b.Loop(); i++ {
				if err := op(i); err != nil {
					b.Fatal(err)
				}
			}
			u, err := testrig.ReadUsage(os.Getpid())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(u.HWM)/(1<<20), "peak-RSS-MiB")
		}
		for _, store := range []string{"memory", "disk"} {
			dir := ""
			if store == "disk" {
				dir = b.TempDir()
			}
			b.Run(fmt.Sprintf("files=%d/apply-warm-%s", files, store), func(b *testing.B) {
				w := writer(b, dir)
				if err := apply(w, -1); err != nil { // the first call fills the store
					b.Fatal(err)
				}
				measure(b, func(i int) error { return apply(w, i) })
			})
		}
		b.Run(fmt.Sprintf("files=%d/read-warm-memory", files), func(b *testing.B) {
			w := writer(b, "")
			read := func(int) error {
				snap, err := w.Read(context.Background(), "apps/team-001/svc-0001.yaml")
				if err == nil && len(snap.Files) != 1 {
					err = fmt.Errorf("read %d files, want 1", len(snap.Files))
				}
				return err
			}
			if err := read(0); err != nil { // the first call fills the store
				b.Fatal(err)
			}
			measure(b, read)
		})
		b.Run(fmt.Sprintf("files=%d/apply-cold-memory", files), func(b *testing.B) {
			measure(b, func(i int) error {
				w := writer(b, "")
				defer w.Close()
				return apply(w, i)
			})
		})
		b.Run(fmt.Sprintf("files=%d/git-cli-warm", files), func(b *testing.B) {
			gitCLIWrite(b, srv, name, path)
		})
	}
}

// gitCLIWrite times the git CLI writing one file on a warm clone: what mpha's writer is held to.
func gitCLIWrite(b *testing.B, srv *testrig.GitServer, repo, path string) {
	dir := b.TempDir()
	// GNU time reports git's own peak: the rusage of a child of this process would include this
	// process's memory (Go starts children with vfork, and exec keeps the old peak).
	timeBin, err := exec.LookPath("/usr/bin/time")
	if err != nil {
		b.Fatalf("GNU time measures the git CLI's memory: apt-get install time (%v)", err)
	}
	rss := filepath.Join(b.TempDir(), "rss")
	var peak int64
	git := func(args ...string) {
		cmd := exec.Command(timeBin, append([]string{"-f", "%M", "-o", rss, "git", "-C", dir, "-c", "user.name=bench", "-c", "user.email=bench@mpha.invalid"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("git %v: %v\n%s", args, err, out)
		}
		kb, err := os.ReadFile(rss)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(string(kb)), 10, 64); err == nil && n > peak {
			peak = n
		}
	}
	git("clone", "-q", "--branch", "main", srv.AuthURL(repo), ".")
	peak = 0
	for i := 0; b.Loop(); i++ {
		git("fetch", "-q", "origin", "main")
		git("reset", "-q", "--hard", "FETCH_HEAD")
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(path)), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, path), fmt.Appendf(nil, "rev: %d %d\n", i, time.Now().UnixNano()), 0o644); err != nil {
			b.Fatal(err)
		}
		git("add", path)
		git("commit", "-q", "-m", "Export iam-signing-key")
		git("push", "-q", "origin", "HEAD:main")
	}
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
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
