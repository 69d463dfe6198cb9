package failback_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/git"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/audit"
	"github.com/mpha-dev/mpha/gitops/failback"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/role"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

const repo = "org/fleet.git"

// pairAfter is pair.yaml after failover ev-9 made west active at epoch 8.
const pairAfter = gitops.Header + `apiVersion: mpha.dev/v1alpha1
kind: Pair
name: tsb-mp
floatingFQDN: active.tsb.example.com
clusters:
  - {name: east, mpFQDN: mp1.tsb.example.com}
  - {name: west, mpFQDN: mp2.tsb.example.com}
active: west
epoch: 8
lastFailover: {event: ev-9, from: east, to: west, at: "2026-11-22T10:00:00Z"}
`

type fixture struct {
	ctx    context.Context
	srv    *testrig.GitServer
	w      *gitrepo.Writer
	l      gitops.Layout
	key    []byte
	certs  map[string]seal.Cert
	pems   map[string][]byte
	values map[string][]byte // secret values, for the leak scan
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Git server")
	}
	f := &fixture{ctx: context.Background(), srv: testrig.StartGitServer(t), l: mustLayout(t), key: bytes.Repeat([]byte("h"), 32),
		certs: map[string]seal.Cert{}, pems: map[string][]byte{}, values: map[string][]byte{}}
	for _, c := range []string{"east", "west", "east-old"} {
		pem, _ := testrig.SealingKeyPair(t, c)
		cert, err := seal.ParseCert(pem)
		if err != nil {
			t.Fatal(err)
		}
		f.certs[c], f.pems[c] = cert, pem
	}
	f.srv.CreateRepo(t, repo, "main", map[string]string{"README.md": "fleet\n"})
	auth, err := gitrepo.NewAuth(f.srv.URL(repo), f.srv.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	if f.w, err = gitrepo.New(gitrepo.Options{URL: f.srv.URL(repo), Auth: auth, AllowHTTPCredentials: true,
		Author: git.Signature{Name: "test", Email: "test@mpha.invalid"}}); err != nil {
		t.Fatal(err)
	}
	return f
}

func mustLayout(t *testing.T) gitops.Layout {
	l, err := gitops.NewLayout("")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (f *fixture) commit(t *testing.T, kind, cluster string, files map[string][]byte) {
	t.Helper()
	tr := []trailer.Trailer{{Key: trailer.Kind, Value: kind}}
	if cluster != "" {
		tr = append(tr, trailer.Trailer{Key: trailer.Cluster, Value: cluster})
	}
	if _, err := f.w.Apply(f.ctx, gitops.Change{Files: files, Message: kind + " by " + cluster, Trailers: tr}); err != nil {
		t.Fatal(err)
	}
}

// sealed is secret name sealed for cert.
func (f *fixture) sealed(t *testing.T, name string, cert seal.Cert) []byte {
	t.Helper()
	v := []byte("value-of-" + name + "-7c1e")
	f.values[name] = v
	ss, err := seal.Seal(cert, f.key, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "tsb"}, Data: map[string][]byte{"k": v}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := seal.Marshal(ss)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func roleFile(t *testing.T, r role.Role) []byte {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	deps    = []role.Workload{{Name: "tsb", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "tsb"}}}}
	restore = &role.Restore{Name: "tsb-restore", Schedule: "0 */4 * * *"}
)

func (f *fixture) assess(t *testing.T) failback.Assessment {
	t.Helper()
	a, err := f.read(t)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// read clones the repository as `mpha failback prepare` does and assesses it: the files, then
// the history of those whose author counts.
func (f *fixture) read(t *testing.T) (failback.Assessment, error) {
	t.Helper()
	r, err := audit.Open(f.ctx, f.srv.URL(repo), f.srv.Auth(), "main")
	if err != nil {
		t.Fatal(err)
	}
	h, err := gitrepo.NewHistory(r, "main")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := h.Read(failback.Inputs(f.l)...)
	if err != nil {
		t.Fatal(err)
	}
	paths, err := failback.Authored(snap.Files, f.l)
	if err != nil {
		return failback.Assessment{}, err
	}
	last, err := h.LastChanges(f.ctx, paths...)
	if err != nil {
		t.Fatal(err)
	}
	return failback.Assess(failback.Input{Commit: snap.Commit, Files: snap.Files, Last: last}, f.l)
}

func result(a failback.Assessment, name string) failback.Check {
	for _, c := range a.Checks {
		if c.Name == name {
			return c
		}
	}
	return failback.Check{}
}

// The history of a failover east → west, step by step: right after it east is not re-seeded; an
// old sealed copy or a file another writer left does not count; once west has sealed every secret
// for east and rendered its values, the restore job may resume, and after the commit there is
// nothing left to do.
func TestPrepareAfterFailover(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	l := f.l
	// Before the failover: east active, its export sealed two secrets for west; east's agent
	// once sealed for an old certificate of its own... and both publish their certificates.
	f.commit(t, "cert", "east", map[string][]byte{l.SealingCert("east"): f.pems["east"]})
	f.commit(t, "cert", "west", map[string][]byte{l.SealingCert("west"): f.pems["west"]})
	f.commit(t, "secrets", "east", map[string][]byte{
		l.Secret("west", "iam-signing-key"): f.sealed(t, "iam-signing-key", f.certs["west"]),
		l.Secret("west", "tsb-iam-jwks"):    f.sealed(t, "tsb-iam-jwks", f.certs["west"]),
	})
	// The failover commit: west active, east demoted (restore suspended).
	f.commit(t, "failover", "", map[string][]byte{
		l.Pair():       []byte(pairAfter),
		l.Role("east"): roleFile(t, role.Standby("tsb", deps, restore, true)),
		l.Role("west"): roleFile(t, role.Active("tsb", 1, deps, restore)),
	})

	a := f.assess(t)
	if a.Active != "west" || a.Demoted != "east" || a.Event != "ev-9" || a.Epoch != 8 || !a.Suspended {
		t.Fatalf("assessment: %+v", a)
	}
	if a.Ready() || a.Prepared() {
		t.Fatalf("ready right after the failover: %+v", a.Checks)
	}
	if c := result(a, failback.CheckSecrets); c.Result != failback.Fail || !strings.Contains(c.Evidence, "iam-signing-key: not sealed for east") {
		t.Errorf("secrets: %+v", c)
	}
	if c := result(a, failback.CheckValues); c.Result != failback.Fail || !strings.Contains(c.Evidence, "helmrelease.yaml is missing") {
		t.Errorf("values: %+v", c)
	}
	if _, err := failback.Change(a, l); err == nil || !strings.Contains(err.Error(), "not re-seeded") {
		t.Errorf("Change before re-seeding: %v", err)
	}

	// West's export seals one secret for an old certificate of east's, the other properly; its
	// values arrive; a person edits the HelmRelease by hand afterwards.
	f.commit(t, "secrets", "west", map[string][]byte{
		l.Secret("east", "iam-signing-key"): f.sealed(t, "iam-signing-key", f.certs["east-old"]),
		l.Secret("east", "tsb-iam-jwks"):    f.sealed(t, "tsb-iam-jwks", f.certs["east"]),
	})
	f.commit(t, "values", "west", map[string][]byte{l.HelmRelease("east"): []byte("# values v1\n")})
	f.commit(t, "manual", "", map[string][]byte{l.HelmRelease("east"): []byte("# values edited by hand\n")})
	a = f.assess(t)
	if c := result(a, failback.CheckSecrets); c.Result != failback.Fail || !strings.Contains(c.Evidence, "iam-signing-key.yaml: sealed for certificate") {
		t.Errorf("secrets sealed for an old certificate: %+v", c)
	}
	if c := result(a, failback.CheckValues); c.Result != failback.Fail || !strings.Contains(c.Evidence, "not rendered from west's release") {
		t.Errorf("values last written by hand: %+v", c)
	}

	// West re-seals for east's current certificate and renders the values again: ready.
	f.commit(t, "secrets", "west", map[string][]byte{l.Secret("east", "iam-signing-key"): f.sealed(t, "iam-signing-key", f.certs["east"])})
	f.commit(t, "values", "west", map[string][]byte{l.HelmRelease("east"): []byte("# values v2\n")})
	a = f.assess(t)
	if !a.Ready() || a.Prepared() {
		t.Fatalf("after re-seeding: %+v", a.Checks)
	}
	ch, err := failback.Change(a, l)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.Apply(f.ctx, ch); err != nil {
		t.Fatal(err)
	}
	a = f.assess(t)
	if !a.Prepared() || a.Suspended {
		t.Fatalf("after the commit: prepared %v, %+v", a.Prepared(), a.Checks)
	}
	snap, err := f.w.Read(f.ctx, l.Role("east"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := role.Parse(snap.Files[l.Role("east")])
	if err != nil || r.RestoreSuspended || r.Replicas != 0 || r.Restore == nil || r.Restore.Schedule != restore.Schedule {
		t.Errorf("east's role after prepare: %+v, %v", r, err)
	}
	if _, err := failback.Change(a, l); err == nil {
		t.Error("a second prepare found something to do")
	}
	// The commit is in the audit trail with its trailers, and quotes no secret.
	repo, err := audit.Open(f.ctx, f.srv.URL(repo), f.srv.Auth(), "main")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := audit.Log(f.ctx, repo, audit.Options{Kinds: []string{failback.Kind}})
	if err != nil || len(entries) != 1 || entries[0].Cluster != "east" || entries[0].Event != "ev-9" {
		t.Fatalf("audit: %+v, %v", entries, err)
	}
	for n, v := range f.values {
		if strings.Contains(ch.Message, string(v)) {
			t.Errorf("the commit message quotes %s", n)
		}
	}
}

// Without a failover in pair.yaml there is nothing to prepare.
func TestNoFailoverNoDemotedCluster(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.commit(t, "pair", "", map[string][]byte{f.l.Pair(): []byte(strings.Split(pairAfter, "lastFailover")[0])})
	if _, err := f.read(t); !errors.Is(err, failback.ErrNoFailover) {
		t.Errorf("err = %v, want ErrNoFailover", err)
	}
}
