package export_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/agent/export"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// After a failover the new active's own folder still holds the SealedSecrets the old active
// sealed for it, and its Flux still applies them. The test shows, on the real controller, that a
// restart then rolls a rotated key back to the sealed copy; and that the exporter refreshes the
// copies it finds there (only those), so that a restart restores the current key instead.
func TestExporterRefreshesItsOwnCopies(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster, the sealed-secrets controller and a Git server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	east := testrig.StartClusters(t, "east")[0]
	ctl := testrig.StartSealedSecrets(t, east)
	srv := testrig.StartGitServer(t)
	srv.CreateRepo(t, repo, "main", map[string]string{"README.md": "fleet\n"})
	r := &rig{east: east, srv: srv, values: map[string]map[string][]byte{}}
	r.layout, _ = gitops.NewLayout("")
	auth, err := gitrepo.NewAuth(srv.URL(repo), srv.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	r.writer, err = gitrepo.New(gitrepo.Options{URL: srv.URL(repo), Auth: auth, AllowHTTPCredentials: true,
		Author: git.Signature{Name: "mpha agent (east)", Email: "mpha@east.invalid"}})
	if err != nil {
		t.Fatal(err)
	}
	east.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tsb\n"))
	key := loadKey(ctx, t, east)
	westCert, _ := testrig.SealingKeyPair(t, "west")
	eastCertPEM := ctl.Cert(t)
	eastCert, err := seal.ParseCert(eastCertPEM)
	if err != nil {
		t.Fatal(err)
	}
	commit := func(files map[string][]byte, msg string) {
		t.Helper()
		if _, err := r.writer.Apply(ctx, gitops.Change{Files: files, Message: msg,
			Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "cert"}}}); err != nil {
			t.Fatal(err)
		}
	}
	commit(map[string][]byte{r.layout.SealingCert("west"): westCert}, "Publish west's sealing certificate")

	// East was the standby: west's export sealed iam-signing-key for it, and east's controller
	// unsealed it. tsb-iam-jwks has no copy in east's folder.
	const signing, jwks = "iam-signing-key", "tsb-iam-jwks"
	old := newSecret(t, signing)
	r.remember(old)
	ss, err := seal.Seal(eastCert, key, old)
	if err != nil {
		t.Fatal(err)
	}
	oldFile, err := seal.Marshal(ss)
	if err != nil {
		t.Fatal(err)
	}
	commit(map[string][]byte{r.layout.Secret("east", signing): oldFile}, "west's export, while east was the standby")
	east.Apply(t, oldFile)
	waitData(t, east, signing, old.Data, "east's controller to unseal the copy")
	other := newSecret(t, jwks)
	r.remember(other)
	if _, err := east.Clientset.CoreV1().Secrets("tsb").Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// East is now the active and rotates its key.
	rotate := func(prefix string) *corev1.Secret {
		t.Helper()
		s, err := east.Clientset.CoreV1().Secrets("tsb").Get(ctx, signing, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s.Data = map[string][]byte{"kid": random(t, prefix+"-kid"), "value": random(t, prefix+"-value")}
		r.remember(s)
		if s, err = east.Clientset.CoreV1().Secrets("tsb").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	restart := func() {
		t.Helper()
		if err := ctl.Process().Stop(); err != nil {
			t.Fatal(err)
		}
		if err := ctl.Process().Restart(); err != nil {
			t.Fatal(err)
		}
	}

	// 1. The hazard, shown: with the stale copy applied, a controller restart rolls the key back.
	rotate("first")
	restart()
	waitData(t, east, signing, old.Data, "the restarted controller to restore the stale copy")

	// 2. Without its own certificate in Git, the exporter cannot refresh the copy: it warns.
	logs := &testrig.LogBuffer{}
	exp, err := export.New(east.Clientset, r.writer, export.Options{Self: "east", Peer: "west",
		Names: []string{signing, jwks}, Key: key, Layout: r.layout,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	rotated := rotate("second")
	rep, err := exp.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Own) != 0 || !strings.Contains(logs.String(), "its sealing certificate is not in Git") {
		t.Errorf("without east's certificate: own copies %v, want none and a warning", rep.Own)
	}
	if _, ok := r.files(ctx, t)[r.layout.Secret("east", jwks)]; ok {
		t.Errorf("%s was written to east's own folder, where it had no copy", jwks)
	}

	// 3. With it, the next run refreshes the copy there is, in one commit with the peer's files.
	commit(map[string][]byte{r.layout.SealingCert("east"): eastCertPEM}, "Publish east's sealing certificate")
	base := r.head(t).Hash
	if rep, err = exp.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if want := map[string]export.Outcome{signing: export.Sealed}; fmt.Sprint(rep.Own) != fmt.Sprint(want) {
		t.Errorf("own copies %v, want %v", rep.Own, want)
	}
	cs := commitsSince(t, r.head(t), base)
	if len(cs) != 1 {
		t.Fatalf("%d commits, want 1", len(cs))
	}
	if got := changedFiles(t, cs[0]); !slices.Equal(got, []string{r.layout.Secret("east", signing)}) {
		t.Errorf("the refresh changed %v, want only east's own copy of %s", got, signing)
	}
	if !strings.Contains(cs[0].Message, "own folder") {
		t.Errorf("the commit message does not say why east's own folder changed:\n%s", cs[0].Message)
	}
	if rep, err = exp.RunOnce(ctx); err != nil || rep.Commit != "" || rep.Own[signing] != export.Unchanged {
		t.Errorf("a second run: %+v, %v; want no commit and the copy unchanged", rep, err)
	}

	// 3b. A failover to west merges: east's exporter, still running until the runtime notices,
	// exports nothing, not even a rotation (it would seal east's data over west's own copies).
	pairFile, err := (&gitops.Pair{APIVersion: gitops.PairAPIVersion, Kind: gitops.PairKind, Name: "tsb-mp", FloatingFQDN: "active.example.com",
		Clusters: []gitops.ClusterRef{{Name: "east", MPFQDN: "mp1.example.com"}, {Name: "west", MPFQDN: "mp2.example.com"}}, Active: "west", Epoch: 2}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	commit(map[string][]byte{r.layout.Pair(): pairFile}, "Fail over to west")
	base = r.head(t).Hash
	rotate("after-failover")
	if rep, err = exp.RunOnce(ctx); err != nil || rep.NotActive != "west" || rep.Commit != "" {
		t.Errorf("a run after the failover: %+v, %v; want nothing exported, west named the active", rep, err)
	}
	if n := len(commitsSince(t, r.head(t), base)); n != 0 {
		t.Errorf("the demoted exporter made %d commits", n)
	}
	// (Back to the data the refreshed copy holds, for step 4.)
	cur, err := east.Clientset.CoreV1().Secrets("tsb").Get(ctx, signing, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Data = rotated.Data
	if _, err := east.Clientset.CoreV1().Secrets("tsb").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// 4. Flux applies the refreshed copy; a restart now keeps the rotated key. A canary applied
	// after the restart is unsealed after the copy (the controller has one worker and a FIFO
	// queue), so once it is there the copy has been handled.
	refreshed, ok := r.files(ctx, t)[r.layout.Secret("east", signing)]
	if !ok {
		t.Fatal("east's own copy is gone from Git")
	}
	east.Apply(t, refreshed)
	restart()
	canary := newSecret(t, "canary")
	r.remember(canary)
	css, err := seal.Seal(eastCert, key, canary)
	if err != nil {
		t.Fatal(err)
	}
	canaryFile, err := seal.Marshal(css)
	if err != nil {
		t.Fatal(err)
	}
	east.Apply(t, canaryFile)
	waitData(t, east, "canary", canary.Data, "the canary")
	got, err := east.Clientset.CoreV1().Secrets("tsb").Get(ctx, signing, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Data["kid"], rotated.Data["kid"]) {
		t.Errorf("after the refresh, a controller restart still rolled the signing key back (kid %.12s…)", got.Data["kid"])
	}
	scanForLeaks(t, r, logs.String(), 6)
}

func (r *rig) files(ctx context.Context, t *testing.T) map[string][]byte {
	t.Helper()
	snap, err := r.writer.Read(ctx, r.layout.Root()+"/**")
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Files) < 3 {
		t.Fatalf("read only %d files from the repository", len(snap.Files))
	}
	return snap.Files
}

func waitData(t *testing.T, c *testrig.Cluster, name string, want map[string][]byte, what string) {
	t.Helper()
	testrig.Eventually(t, what, time.Minute, func(ctx context.Context) error {
		got, err := c.Clientset.CoreV1().Secrets("tsb").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for k, v := range want {
			if !bytes.Equal(got.Data[k], v) {
				return fmt.Errorf("key %s differs", k)
			}
		}
		return nil
	})
}
