package export_test

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/git"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/agent/export"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// BenchmarkExportRepoSize: one export run (RunOnce: read the Secrets from the API server and the
// files from Git, seal the changed one, commit, push) after a rotation, as the repository grows
// to 1k, 10k and 50k files. Reports seconds per run, heap allocated per run and the process's
// peak resident memory during the runs.
func BenchmarkExportRepoSize(b *testing.B) {
	if testing.Short() {
		b.Skip("starts a cluster and a Git server")
	}
	east := testrig.StartCluster(b, "east")
	east.Apply(b, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tsb\n"))
	secrets := east.Clientset.CoreV1().Secrets("tsb")
	ctx := context.Background()
	if _, err := secrets.Create(ctx, newSecret(b, "iam-signing-key"), metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	srv := testrig.StartGitServer(b)
	layout, _ := gitops.NewLayout("")
	pem, _ := testrig.SealingKeyPair(b, "west")
	for _, files := range []int{1_000, 10_000, 50_000} {
		name := fmt.Sprintf("org/fleet-%d.git", files)
		srv.CreateLargeRepo(b, name, files, 100)
		auth, err := gitrepo.NewAuth(srv.URL(name), srv.Credentials())
		if err != nil {
			b.Fatal(err)
		}
		w, err := gitrepo.New(gitrepo.Options{URL: srv.URL(name), Auth: auth, AllowHTTPCredentials: true,
			Author: git.Signature{Name: "mpha agent (east)", Email: "mpha@east.invalid"}})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Apply(ctx, gitops.Change{Files: map[string][]byte{layout.SealingCert("west"): pem},
			Message: "west's certificate", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "cert"}}}); err != nil {
			b.Fatal(err)
		}
		exp, err := export.New(east.Clientset, w, export.Options{Self: "east", Peer: "west", Names: []string{"iam-signing-key"},
			Key: []byte(strings.Repeat("k", 32)), Layout: layout})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("files=%d", files), func(b *testing.B) {
			b.ReportAllocs()
			debug.FreeOSMemory()
			if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
				b.Fatalf("resetting the peak RSS: %v", err)
			}
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				cur, err := secrets.Get(ctx, "iam-signing-key", metav1.GetOptions{})
				if err != nil {
					b.Fatal(err)
				}
				cur.Data["kid"] = fmt.Appendf(nil, "kid-%d-%d", files, i)
				if _, err := secrets.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				rep, err := exp.RunOnce(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if rep.Count(export.Sealed) != 1 {
					b.Fatalf("run %d: %+v, want one secret sealed", i, rep)
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
