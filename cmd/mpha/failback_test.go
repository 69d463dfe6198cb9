package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/git"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/role"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/pgcopy/pgcopytest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// `mpha failback prepare` after a failover east → west: exit 2 while west has not re-seeded
// east; once it has, --dry-run reports ready and commits nothing, the real run commits, and a
// third run finds the pair prepared.
func TestFailbackPrepare(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Git server")
	}
	ctx := context.Background()
	srv := testrig.StartGitServer(t)
	l, _ := gitops.NewLayout("")
	pair := gitops.Header + `apiVersion: mpha.dev/v1alpha1
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
	deps := []role.Workload{{Name: "tsb", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "tsb"}}}}
	standby, err := role.Standby("tsb", deps, &role.Restore{Name: "tsb-restore", Schedule: "0 * * * *"}, true).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	srv.CreateRepo(t, "org/fleet.git", "main", map[string]string{l.Pair(): pair, l.Role("east"): string(standby)})
	t.Setenv(envGitUsername, srv.Username)
	t.Setenv(envGitPassword, srv.Password)
	args := []string{"failback", "prepare", "--repo", srv.URL("org/fleet.git"), "--insecure-http-credentials"}

	out, _, err := run(t, args...)
	var failed *checksFailedError
	if !errors.As(err, &failed) || failed.ExitCode() != exitChecksFailed || !strings.Contains(out, "east is not re-seeded by west yet") {
		t.Fatalf("before re-seeding: %v\n%s", err, out)
	}

	// West's agent re-seeds east: its certificate, a secret sealed for it, its values.
	auth, err := gitrepo.NewAuth(srv.URL("org/fleet.git"), srv.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	w, err := gitrepo.New(gitrepo.Options{URL: srv.URL("org/fleet.git"), Auth: auth, AllowHTTPCredentials: true,
		Author: git.Signature{Name: "mpha agent (west)", Email: "west@mpha.invalid"}})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _ := testrig.SealingKeyPair(t, "east")
	cert, err := seal.ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := seal.Seal(cert, []byte(strings.Repeat("h", 32)), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "iam-signing-key", Namespace: "tsb"},
		Data: map[string][]byte{"private.key": []byte("s3cret-signing-key")}})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := seal.Marshal(ss)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		kind, cluster string
		files         map[string][]byte
	}{
		{"cert", "east", map[string][]byte{l.SealingCert("east"): certPEM}},
		{"secrets", "west", map[string][]byte{l.Secret("east", "iam-signing-key"): sealed}},
		{"values", "west", map[string][]byte{l.HelmRelease("east"): []byte("# rendered from west\n")}},
	} {
		if _, err := w.Apply(ctx, gitops.Change{Files: c.files, Message: c.kind,
			Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: c.kind}, {Key: trailer.Cluster, Value: c.cluster}}}); err != nil {
			t.Fatal(err)
		}
	}
	before, err := w.Read(ctx, l.Role("east"))
	if err != nil {
		t.Fatal(err)
	}

	out, _, err = run(t, append(args, "--dry-run")...)
	if err != nil || !strings.Contains(out, "ready: without --dry-run") {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if after, _ := w.Read(ctx, l.Role("east")); after.Commit != before.Commit {
		t.Error("--dry-run committed")
	}
	out, _, err = run(t, args...)
	if err != nil || !strings.Contains(out, "committed") || !strings.Contains(out, "ready to fail back") {
		t.Fatalf("prepare: %v\n%s", err, out)
	}
	snap, err := w.Read(ctx, l.Role("east"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := role.Parse(snap.Files[l.Role("east")]); err != nil || r.RestoreSuspended {
		t.Errorf("east's role: %+v, %v", r, err)
	}
	out, _, err = run(t, append(args, "-o", "json")...)
	var res struct {
		Ready, Prepared bool
		Commit          string
	}
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || !res.Ready || !res.Prepared || res.Commit != "" {
		t.Errorf("after: %v %+v\n%s", err, res, out)
	}
	if strings.Contains(out, "s3cret-signing-key") || strings.Contains(out, srv.Password) {
		t.Error("the output quotes a secret")
	}

	// With the databases: east's does not follow west's by logical replication, so a dry run
	// says a copy would be made (not ready), and the real run makes mpha's verified copy.
	const pgPassword = "failback-Pa55word"
	westDB := pgcopytest.StartServer(ctx, t, pgPassword, "ALTER ROLE tsb CREATEDB")
	eastDB := pgcopytest.StartServer(ctx, t, pgPassword, "ALTER ROLE tsb CREATEDB")
	if err := pgcopytest.Generate(ctx, pgcopytest.DSN(westDB, pgPassword), "tsb", 500); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MPHA_DB_FROM", pgcopytest.DSN(westDB, pgPassword))
	t.Setenv("MPHA_DB_TO", pgcopytest.DSN(eastDB, pgPassword))
	out, _, err = run(t, append(args, "--dry-run")...)
	if !errors.As(err, &failed) || !strings.Contains(out, "does not follow 127.0.0.1:") || !strings.Contains(out, "without --dry-run a verified copy is made") {
		t.Errorf("dry run with the databases: %v\n%s", err, out)
	}
	out, _, err = run(t, args...)
	if err != nil || !strings.Contains(out, "re-seeded by mpha's copy: tsb from 127.0.0.1:") || !strings.Contains(out, "prepared") {
		t.Fatalf("prepare with the databases: %v\n%s", err, out)
	}
	want, err := pgcopytest.Take(ctx, westDB.DSN("tsb"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgcopytest.Take(ctx, eastDB.DSN("tsb"))
	if err != nil {
		t.Fatal(err)
	}
	for name, sum := range want.Tables {
		if got.Tables[name] != sum {
			t.Errorf("east's %s differs from west's after the failback preparation", name)
		}
	}
	if strings.Contains(out, pgPassword) {
		t.Error("the output quotes the database password")
	}
}
