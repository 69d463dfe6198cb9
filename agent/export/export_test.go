package export_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/agent/export"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

const repo = "org/fleet.git"

type rig struct {
	east, west *testrig.Cluster
	srv        *testrig.GitServer
	writer     *gitrepo.Writer
	layout     gitops.Layout
	values     map[string]map[string][]byte // secret → key → plaintext, to scan for
}

func random(t testing.TB, prefix string) []byte {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return []byte(prefix + "-" + hex.EncodeToString(b))
}

// remember records a secret's values so the leak scan looks for them. The signing keys' kid is
// an identifier the exporter publishes (mpha.dev/kid): not scanned for.
func (r *rig) remember(s *corev1.Secret) {
	if r.values[s.Name] == nil {
		r.values[s.Name] = map[string][]byte{}
	}
	for k, v := range s.Data {
		if k == "kid" && (s.Name == seal.SigningKeySecret || s.Name == seal.JWKSSecret) {
			continue
		}
		r.values[s.Name][k+"@"+string(v[len(v)-6:])] = v
	}
}

// history clones the whole repository into memory.
func (r *rig) history(t *testing.T) *gogit.Repository {
	t.Helper()
	g, err := gogit.Clone(memory.NewStorage(), nil, &gogit.CloneOptions{URL: r.srv.URL(repo), Auth: r.srv.Auth(),
		ReferenceName: plumbing.NewBranchReferenceName("main"), SingleBranch: true})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func (r *rig) head(t *testing.T) *object.Commit {
	t.Helper()
	g := r.history(t)
	h, err := g.Head()
	if err != nil {
		t.Fatal(err)
	}
	c, err := g.CommitObject(h.Hash())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// commitsSince returns the commits from head back to (not including) base, newest first.
func commitsSince(t *testing.T, head *object.Commit, base plumbing.Hash) []*object.Commit {
	t.Helper()
	var out []*object.Commit
	for c := head; c.Hash != base; {
		out = append(out, c)
		if c.NumParents() == 0 {
			t.Fatalf("%s is not an ancestor of %s", base, head.Hash)
		}
		var err error
		if c, err = c.Parent(0); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// changedFiles lists the paths a commit changed relative to its parent.
func changedFiles(t *testing.T, c *object.Commit) []string {
	t.Helper()
	p, err := c.Parent(0)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := p.Patch(c)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, fp := range patch.FilePatches() {
		from, to := fp.Files()
		if to != nil {
			out = append(out, to.Path())
		} else if from != nil {
			out = append(out, from.Path())
		}
	}
	return out
}

func (r *rig) secretFiles(t *testing.T, c *object.Commit) map[string]string {
	t.Helper()
	out := map[string]string{}
	tree, err := c.Tree()
	if err != nil {
		t.Fatal(err)
	}
	dir := r.layout.SecretsDir("west") + "/"
	_ = tree.Files().ForEach(func(f *object.File) error {
		if strings.HasPrefix(f.Name, dir) {
			s, _ := f.Contents()
			out[strings.TrimSuffix(strings.TrimPrefix(f.Name, dir), ".yaml")] = s
		}
		return nil
	})
	return out
}

func newSecret(t testing.TB, name string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "tsb", Labels: map[string]string{"platform.tsb.tetrate.io/application": "tsb"}},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"kid": random(t, "kid"), "value": random(t, "plain-"+name)},
	}
}

// The exporter against real parts: a burst of 11 Secrets is one commit that the standby's real
// controller unseals; a rotation is one commit; unchanged data none; a new peer certificate one
// re-seal commit of every file; a deletion keeps the file; and no plaintext reaches Git or logs.
func TestExporter(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters, the sealed-secrets controller and a Git server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cs := testrig.StartClusters(t, "east", "west")
	r := &rig{east: cs[0], west: cs[1], srv: testrig.StartGitServer(t), values: map[string]map[string][]byte{}}
	ctl := testrig.StartSealedSecrets(t, r.west)
	r.srv.CreateRepo(t, repo, "main", map[string]string{"README.md": "fleet\n"})
	var err error
	if r.layout, err = gitops.NewLayout(""); err != nil {
		t.Fatal(err)
	}
	auth, err := gitrepo.NewAuth(r.srv.URL(repo), r.srv.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	r.writer, err = gitrepo.New(gitrepo.Options{URL: r.srv.URL(repo), Auth: auth, AllowHTTPCredentials: true,
		Author: git.Signature{Name: "mpha agent (east)", Email: "mpha@east.invalid"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*testrig.Cluster{r.east, r.west} {
		c.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tsb\n"))
	}
	// West publishes its sealing certificate (the cert publisher's job).
	publishCert(ctx, t, r, ctl.Cert(t))

	logs := &testrig.LogBuffer{}
	key := loadKey(ctx, t, r.east)
	reg := prometheus.NewRegistry()
	metrics, err := export.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	exp, err := export.New(r.east.Clientset, r.writer, export.Options{
		Self: "east", Peer: "west", Names: agent.DefaultSecretNames("generic"), Key: key, Layout: r.layout, Metrics: metrics,
		Debounce: time.Second, Resync: time.Hour, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	runCtx, stopRun := context.WithCancel(ctx)
	go func() { runErr <- exp.Run(runCtx) }()

	// 1. A burst: 11 of the 12 generic-model secrets at once (azure-credentials stays absent).
	base := r.head(t).Hash
	var names []string
	for _, n := range agent.DefaultSecretNames("generic") {
		if n != "azure-credentials" {
			names = append(names, n)
		}
	}
	secrets := map[string]*corev1.Secret{}
	for _, n := range names {
		s := newSecret(t, n)
		r.remember(s)
		secrets[n] = s
		if _, err := r.east.Clientset.CoreV1().Secrets("tsb").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testrig.Eventually(t, "11 sealed secrets in Git", time.Minute, func(context.Context) error {
		if got := len(r.secretFiles(t, r.head(t))); got != 11 {
			return fmt.Errorf("%d files", got)
		}
		return nil
	})
	if n := len(commitsSince(t, r.head(t), base)); n != 1 {
		t.Errorf("the burst of 11 secrets made %d commits, want 1", n)
	}
	if c := r.head(t); !strings.Contains(c.Message, "Mpha-Kind: secrets") || !strings.Contains(c.Message, "Mpha-Cluster: east") {
		t.Errorf("commit message lacks the trailers:\n%s", c.Message)
	}
	// The last export time of each secret: the 11 committed, not the absent one.
	testrig.Eventually(t, "export metrics", 10*time.Second, func(context.Context) error {
		synced := map[string]float64{}
		mfs, err := reg.Gather()
		if err != nil {
			return err
		}
		for _, mf := range mfs {
			if mf.GetName() != "mpha_export_last_sync_timestamp_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "secret" {
						synced[l.GetValue()] = m.GetGauge().GetValue()
					}
				}
			}
		}
		if len(synced) != 11 {
			return fmt.Errorf("last sync times for %d secrets, want 11: %v", len(synced), synced)
		}
		if _, ok := synced["azure-credentials"]; ok {
			return errors.New("an absent secret has a last sync time")
		}
		for n, ts := range synced {
			if ts < float64(time.Now().Add(-5*time.Minute).Unix()) {
				return fmt.Errorf("%s: last sync %v is not recent", n, ts)
			}
		}
		return nil
	})

	// 2. The standby's real controller unseals every committed file to identical data.
	files := r.secretFiles(t, r.head(t))
	// The signing keys carry their kid for the standby's readiness checks; the others none.
	for n, f := range files {
		facts, err := seal.FactsFromSealed([]byte(f))
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		want := ""
		if n == seal.SigningKeySecret || n == seal.JWKSSecret {
			want = string(secrets[n].Data["kid"])
		}
		if strings.Join(facts.Kids, ",") != want {
			t.Errorf("%s: kids %v, want %q", n, facts.Kids, want)
		}
	}
	for _, n := range names {
		r.west.Apply(t, []byte(files[n]))
	}
	for _, n := range names {
		testrig.Eventually(t, "west to unseal "+n, time.Minute, func(ctx context.Context) error {
			got, err := r.west.Clientset.CoreV1().Secrets("tsb").Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			for k, v := range secrets[n].Data {
				if !bytes.Equal(got.Data[k], v) {
					return fmt.Errorf("key %s differs", k)
				}
			}
			return nil
		})
	}

	// 3. Rotating iam-signing-key (a new kid) is one commit, of that file only.
	base = r.head(t).Hash
	rotated := secrets["iam-signing-key"].DeepCopy()
	rotated.Data = map[string][]byte{"kid": random(t, "kid2"), "value": random(t, "plain-rotated")}
	r.remember(rotated)
	if _, err := r.east.Clientset.CoreV1().Secrets("tsb").Update(ctx, rotated, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, "the rotation to be committed", time.Minute, func(context.Context) error {
		if len(commitsSince(t, r.head(t), base)) == 0 {
			return fmt.Errorf("no commit yet")
		}
		return nil
	})
	cs3 := commitsSince(t, r.head(t), base)
	if len(cs3) != 1 {
		t.Errorf("the rotation made %d commits, want 1", len(cs3))
	}
	// The new kid is a public fact: the facts file changes with it.
	if got := changedFiles(t, cs3[0]); !slices.Equal(slices.Sorted(slices.Values(got)), []string{r.layout.Secret("west", "iam-signing-key"), r.layout.Facts("east")}) {
		t.Errorf("the rotation changed %v, want only iam-signing-key and east's facts file", got)
	}

	// 4. The same data again (only an annotation changes): no commit.
	base = r.head(t).Hash
	same, err := r.east.Clientset.CoreV1().Secrets("tsb").Get(ctx, "tsb-iam-jwks", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	same.Annotations = map[string]string{"touched": "yes"}
	if _, err := r.east.Clientset.CoreV1().Secrets("tsb").Update(ctx, same, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := exp.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Commit != "" || rep.Count(export.Unchanged) != 11 || rep.Secrets["azure-credentials"] != export.Absent {
		t.Errorf("unchanged data: report %+v, want no commit, 11 unchanged, azure-credentials absent", rep)
	}

	// 5. West's controller renews its sealing key, as its periodic renewal does, and publishes
	// the new certificate: one commit re-sealing all 11 files, which the controller unseals to
	// identical data with its old key gone.
	stopRun() // the loop would race RunOnce; the rest is driven directly
	if err := <-runErr; err != nil {
		t.Errorf("Run returned %v", err)
	}
	ctl.RenewKey(t)
	publishCert(ctx, t, r, ctl.Cert(t))
	base = r.head(t).Hash
	rep, err = exp.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cs5 := commitsSince(t, r.head(t), base)
	if rep.Count(export.Resealed) != 11 || len(cs5) != 1 || len(changedFiles(t, cs5[0])) != 11 {
		t.Errorf("new certificate: %d re-sealed, %d commits; want 11 re-sealed in 1 commit changing 11 files", rep.Count(export.Resealed), len(cs5))
	}
	secrets["iam-signing-key"] = rotated
	unsealedWithRenewedKeyOnly(ctx, t, r, ctl, names, secrets)

	// 6. A secret deleted in the cluster: reported, its file stays.
	if err := r.east.Clientset.CoreV1().Secrets("tsb").Delete(ctx, "tsb-certs", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err = exp.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The only commit is the facts file's, which now says the secret is absent on east.
	if rep.Secrets["tsb-certs"] != export.Removed || !rep.FactsUpdated {
		t.Errorf("deleted secret: %+v, want removed and the facts file updated", rep)
	}
	if got := changedFiles(t, r.head(t)); !slices.Equal(got, []string{r.layout.Facts("east")}) {
		t.Errorf("the deletion changed %v, want only east's facts file", got)
	}
	if _, ok := r.secretFiles(t, r.head(t))["tsb-certs"]; !ok {
		t.Error("the deleted secret's file was removed from Git")
	}
	_, facts := readFacts(ctx, t, r, "east")
	if f, ok := facts["tsb-certs"]; !ok || f.Present {
		t.Errorf("east's facts file on tsb-certs: %+v (listed %v), want absent", f, ok)
	}
	if f := facts["iam-signing-key"]; !f.Present || strings.Join(f.Kids, ",") != string(rotated.Data["kid"]) {
		t.Errorf("east's facts file on iam-signing-key: %+v, want the rotated kid", f)
	}

	// 7. No plaintext, base64 of it, or unkeyed hash of it, anywhere in Git's history or the logs.
	scanForLeaks(t, r, logs.String(), 20)
}

// unsealedWithRenewedKeyOnly deletes every sealing key of west's controller but the newest and
// restarts it, removes what it unsealed before, applies the files at the head of Git, and waits
// for each Secret to come back with want's data: only the renewed key can have unsealed them.
func unsealedWithRenewedKeyOnly(ctx context.Context, t *testing.T, r *rig, ctl *testrig.SealedSecrets, names []string, want map[string]*corev1.Secret) {
	t.Helper()
	keys, err := r.west.Clientset.CoreV1().Secrets(testrig.SealedSecretsNamespace).List(ctx, metav1.ListOptions{LabelSelector: "sealedsecrets.bitnami.com/sealed-secrets-key"})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys.Items) < 2 {
		t.Fatalf("the controller holds %d sealing keys after the renewal, want 2 or more", len(keys.Items))
	}
	slices.SortFunc(keys.Items, func(a, b corev1.Secret) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	for _, k := range keys.Items[:len(keys.Items)-1] {
		if err := r.west.Clientset.CoreV1().Secrets(testrig.SealedSecretsNamespace).Delete(ctx, k.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := ctl.Process().Stop(); err != nil {
		t.Fatal(err)
	}
	if err := ctl.Process().Restart(); err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, "the controller back", time.Minute, func(ctx context.Context) error { return testrig.HTTPOK(ctx, ctl.CertURL) })
	ss := schema.GroupVersionResource{Group: "bitnami.com", Version: "v1alpha1", Resource: "sealedsecrets"}
	for _, n := range names {
		if err := r.west.Dynamic(t).Resource(ss).Namespace("tsb").Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := r.west.Clientset.CoreV1().Secrets("tsb").Delete(ctx, n, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
	files := r.secretFiles(t, r.head(t))
	for _, n := range names {
		r.west.Apply(t, []byte(files[n]))
	}
	for _, n := range names {
		testrig.Eventually(t, "west to unseal the re-sealed "+n, time.Minute, func(ctx context.Context) error {
			got, err := r.west.Clientset.CoreV1().Secrets("tsb").Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if len(got.Data) != len(want[n].Data) {
				return fmt.Errorf("%d keys, want %d", len(got.Data), len(want[n].Data))
			}
			for k, v := range want[n].Data {
				if !bytes.Equal(got.Data[k], v) {
					return fmt.Errorf("key %s differs", k)
				}
			}
			return nil
		})
	}
}

// readFacts reads cluster's facts file from the head of the repository.
func readFacts(ctx context.Context, t *testing.T, r *rig, cluster string) (string, map[string]seal.Facts) {
	t.Helper()
	snap, err := r.writer.Read(ctx, r.layout.Facts(cluster))
	if err != nil {
		t.Fatal(err)
	}
	b, ok := snap.Files[r.layout.Facts(cluster)]
	if !ok {
		t.Fatalf("%s is not in Git", r.layout.Facts(cluster))
	}
	if !bytes.HasPrefix(b, []byte(gitops.Header)) {
		t.Errorf("%s lacks mpha's header", r.layout.Facts(cluster))
	}
	c, facts, err := seal.ParseFactsFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if c != cluster {
		t.Errorf("%s describes %q", r.layout.Facts(cluster), c)
	}
	return c, facts
}

func publishCert(ctx context.Context, t *testing.T, r *rig, pem []byte) {
	t.Helper()
	if _, err := r.writer.Apply(ctx, gitops.Change{
		Files:   map[string][]byte{r.layout.SealingCert("west"): pem},
		Message: "Publish west's sealing certificate", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "cert"}},
	}); err != nil {
		t.Fatal(err)
	}
}

func scanForLeaks(t *testing.T, r *rig, logs string, minBlobs int) {
	t.Helper()
	var forms []string
	for _, kv := range r.values {
		for _, v := range kv {
			sum := sha256.Sum256(v)
			forms = append(forms, string(v), base64.StdEncoding.EncodeToString(v), hex.EncodeToString(sum[:]))
		}
	}
	blobs, err := r.history(t).BlobObjects()
	if err != nil {
		t.Fatal(err)
	}
	scanned := 0
	err = blobs.ForEach(func(b *object.Blob) error {
		rd, err := b.Reader()
		if err != nil {
			return err
		}
		defer rd.Close()
		content, err := io.ReadAll(rd)
		if err != nil {
			return err
		}
		scanned++
		for _, f := range forms {
			if bytes.Contains(content, []byte(f)) {
				t.Errorf("blob %s holds a secret value (or its base64 or SHA-256)", b.Hash)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if scanned < minBlobs {
		t.Errorf("scanned only %d blobs: the scan proves little", scanned)
	}
	for _, f := range forms {
		if strings.Contains(logs, f) {
			t.Error("the exporter's logs hold a secret value (or its base64 or SHA-256)")
		}
	}
	if !strings.Contains(logs, "secrets exported") {
		t.Error("the captured logs are not the exporter's: the scan proves nothing")
	}
}

// loadKey stores an HMAC key in a Secret the way an operator would, checks LoadKey's refusals,
// and returns the key LoadKey read.
func loadKey(ctx context.Context, t *testing.T, c *testrig.Cluster) []byte {
	t.Helper()
	c.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: mpha\n"))
	want := random(t, "hmac-key-32-bytes-at-least")
	for name, data := range map[string]map[string][]byte{
		"mpha-hmac":  {export.KeyField: want},
		"short":      {export.KeyField: []byte("short")},
		"wrong-keys": {"a": want, "b": want},
	} {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "mpha"}, Data: data}
		if _, err := c.Clientset.CoreV1().Secrets("mpha").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name, wantErr := range map[string]string{"short": "at least 32 bytes", "wrong-keys": `no "key" key (it has a, b)`, "absent": "not found"} {
		if _, err := export.LoadKey(ctx, c.Clientset, "mpha", name); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("LoadKey(%s): err = %v, want %q", name, err, wantErr)
		}
	}
	got, err := export.LoadKey(ctx, c.Clientset, "mpha", "mpha-hmac")
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("LoadKey: %v", err)
	}
	return got
}
