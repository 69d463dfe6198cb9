package export_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/storage/memory"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mpha-dev/mpha/agent/export"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// exportRig is one cluster, a Git server (reached through a proxy that can fail) and a peer
// certificate already published.
type exportRig struct {
	east   *testrig.Cluster
	srv    *testrig.GitServer
	proxy  *testrig.Proxy
	writer *gitrepo.Writer
	layout gitops.Layout
}

func newExportRig(t testing.TB, large bool, backoff wait.Backoff) *exportRig {
	t.Helper()
	r := &exportRig{east: testrig.StartCluster(t, "east"), srv: testrig.StartGitServer(t)}
	if large {
		r.srv.CreateLargeRepo(t, repo, 10_000, 1_000)
	} else {
		r.srv.CreateRepo(t, repo, "main", map[string]string{"README.md": "x\n"})
	}
	r.proxy = testrig.StartProxy(t, r.srv.HostPort())
	url := "http://" + r.proxy.Addr + "/" + repo
	auth, err := gitrepo.NewAuth(url, r.srv.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	if r.writer, err = gitrepo.New(gitrepo.Options{URL: url, Auth: auth, AllowHTTPCredentials: true, Backoff: backoff,
		Author: git.Signature{Name: "mpha agent (east)", Email: "mpha@east.invalid"}}); err != nil {
		t.Fatal(err)
	}
	r.layout, _ = gitops.NewLayout("")
	pem, _ := testrig.SealingKeyPair(t, "west")
	if _, err := r.writer.Apply(context.Background(), gitops.Change{Files: map[string][]byte{r.layout.SealingCert("west"): pem},
		Message: "west's certificate", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "cert"}}}); err != nil {
		t.Fatal(err)
	}
	r.east.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tsb\n"))
	return r
}

// remoteHead asks the server (not through the proxy) for main's head.
func (r *exportRig) remoteHead(t testing.TB) string {
	t.Helper()
	rem := gogit.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{r.srv.URL(repo)}})
	refs, err := rem.List(&gogit.ListOptions{Auth: r.srv.Auth()})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range refs {
		if ref.Name().String() == "refs/heads/main" {
			return ref.Hash().String()
		}
	}
	t.Fatal("no main branch")
	return ""
}

// While Git is unreachable the exporter keeps the change, retries, and commits it when Git is back;
// Run never returns an error.
func TestExporterRidesOutGitOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a Git server")
	}
	r := newExportRig(t, false, wait.Backoff{Duration: 50 * time.Millisecond, Factor: 1.5, Steps: 3})
	logs := &testrig.LogBuffer{}
	exp, err := export.New(r.east.Clientset, r.writer, export.Options{Self: "east", Peer: "west", Names: []string{"iam-signing-key"},
		Key: random(t, "hmac-key-32-bytes-at-least"), Layout: r.layout, Debounce: 200 * time.Millisecond, Resync: time.Hour,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r.proxy.Down()
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- exp.Run(ctx) }()
	if _, err := r.east.Clientset.CoreV1().Secrets("tsb").Create(ctx, newSecret(t, "iam-signing-key"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, "the exporter to fail against the unreachable server", 30*time.Second, func(context.Context) error {
		if n := strings.Count(logs.String(), "secrets export failed; retrying"); n < 2 {
			return fmt.Errorf("%d failures logged", n)
		}
		return nil
	})
	if err := r.proxy.Up(); err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, "the secret to be committed after the outage", time.Minute, func(ctx context.Context) error {
		snap, err := r.writer.Read(ctx, r.layout.Secret("west", "iam-signing-key"))
		if err != nil {
			return err
		}
		if len(snap.Files) != 1 {
			return fmt.Errorf("not committed yet")
		}
		return nil
	})
	cancel()
	if err := <-runErr; err != nil {
		t.Errorf("Run returned %v", err)
	}
}

// BenchmarkSecretToCommit: from a Secret update in the API server to its commit being on the
// Git server, through the running exporter (informer, debounce of 50ms, read, seal, commit, push),
// on a repository of 10k files and 1k commits.
func BenchmarkSecretToCommit(b *testing.B) {
	if testing.Short() {
		b.Skip("starts a cluster and a Git server")
	}
	r := newExportRig(b, true, gitrepo.DefaultBackoff)
	exp, err := export.New(r.east.Clientset, r.writer, export.Options{Self: "east", Peer: "west", Names: []string{"iam-signing-key"},
		Key: []byte(strings.Repeat("k", 32)), Layout: r.layout, Debounce: 50 * time.Millisecond, Resync: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = exp.Run(ctx) }()
	secrets := r.east.Clientset.CoreV1().Secrets("tsb")
	s := newSecret(b, "iam-signing-key")
	if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	head := ""
	waitHead := func() {
		for deadline := time.Now().Add(time.Minute); ; {
			if h := r.remoteHead(b); h != head {
				head = h
				return
			}
			if time.Now().After(deadline) {
				b.Fatal("no commit within a minute")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitHead() // the first export
	for i := 0; b.Loop(); i++ {
		cur, err := secrets.Get(ctx, "iam-signing-key", metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		cur.Data["kid"] = fmt.Appendf(nil, "kid-%d", i)
		start := time.Now()
		if _, err := secrets.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		waitHead()
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
