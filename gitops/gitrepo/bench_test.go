package gitrepo_test

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"

	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// largeRepo fills repo on the rig server with files files and commits commits (the first adds
// every file, each later one changes one), through git fast-import.
func largeRepo(b *testing.B, srv *testrig.GitServer, files, commits int) {
	b.Helper()
	bare := filepath.Join(srv.Root(), repo)
	if out, err := exec.Command("git", "init", "--bare", "--initial-branch=main", bare).CombinedOutput(); err != nil {
		b.Fatalf("git init: %v\n%s", err, out)
	}
	cmd := exec.Command("git", "-C", bare, "fast-import", "--quiet")
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(in)
	ts := time.Now().Add(-time.Duration(commits) * time.Minute).Unix()
	for c := range commits {
		msg := fmt.Sprintf("commit %d", c)
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter rig <rig@mpha.invalid> %d +0000\ndata %d\n%s\n", ts+int64(c)*60, len(msg), msg)
		blob := func(path, content string) {
			fmt.Fprintf(w, "M 644 inline %s\ndata %d\n%s\n", path, len(content), content)
		}
		if c == 0 {
			for f := range files {
				blob(fmt.Sprintf("apps/team-%03d/svc-%04d.yaml", f%100, f), fmt.Sprintf("kind: ConfigMap\nname: svc-%d\n", f))
			}
			continue
		}
		blob(fmt.Sprintf("apps/team-%03d/svc-%04d.yaml", c%100, c%files), fmt.Sprintf("kind: ConfigMap\nrev: %d\n", c))
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		b.Fatalf("git fast-import: %v", err)
	}
}

// BenchmarkApplyLargeRepo: one secret's change → a commit on the server, in a repository of 10k
// files and 1k commits. Reports p50 and p99 of the whole Apply (clone, write, commit, push).
func BenchmarkApplyLargeRepo(b *testing.B) {
	if testing.Short() {
		b.Skip("uses the rig's Git server")
	}
	srv := testrig.StartGitServer(b)
	largeRepo(b, srv, 10_000, 1_000)
	auth, err := gitrepo.NewAuth(srv.URL(repo), map[string][]byte{"username": []byte(srv.Username), "password": []byte(srv.Password)})
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
