package plan_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/plan"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// On real parts: the plan lands as one commit on its branch (main untouched); the commit is
// fenced once main's epoch moved on; and the DNSEndpoint it writes is valid for external-dns's
// CRD as Flux applies it.
func TestPlanOnGitAndFlux(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Git server, a cluster and Flux")
	}
	ctx := context.Background()
	l := layout(t)
	srv := testrig.StartGitServer(t)
	files := map[string]string{}
	for k, v := range current(t) {
		files[k] = string(v)
	}
	base := srv.CreateRepo(t, "org/fleet.git", "main", files)
	auth, err := gitrepo.NewAuth(srv.URL("org/fleet.git"), srv.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	w, err := gitrepo.New(gitrepo.Options{URL: srv.URL("org/fleet.git"), Auth: auth, AllowHTTPCredentials: true,
		Author: git.Signature{Name: "mpha agent (west)", Email: "mpha@west.invalid"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(current(t), request(), plan.Options{Layout: l})
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.Apply(ctx, p.Change)
	if err != nil {
		t.Fatal(err)
	}
	if snap, err := w.Read(ctx, l.Pair()); err != nil || snap.Commit != base {
		t.Errorf("main moved to %s (want %s): %v", snap.Commit, base, err)
	}
	// Applying the same plan again (a redelivered request) changes nothing.
	if again, err := w.Apply(ctx, p.Change); err != nil || !again.NoChange || again.Commit != res.Commit {
		t.Errorf("second apply: %+v, %v", again, err)
	}

	// Another failover merged first (epoch 8 on main): a plan made at epoch 7 must not commit.
	other := request()
	other.Event = "ev-43"
	p2, err := plan.Build(current(t), other, plan.Options{Layout: l})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Apply(ctx, gitops.Change{Message: "merge ev-42", Files: p.Change.Files}); err != nil {
		t.Fatal(err)
	}
	var conflict *gitrepo.ConflictError
	if _, err := w.Apply(ctx, p2.Change); !errors.As(err, &conflict) || !errors.Is(err, plan.ErrStale) {
		t.Fatalf("a plan at epoch 7 onto epoch 8: %v", err)
	}

	// Flux applies dns/ with external-dns's CRD installed.
	c := testrig.StartCluster(t, "west")
	crd := filepath.Join(mustBinDir(t), "crds", "dnsendpoints.externaldns.k8s.io.yaml")
	c.ApplyFiles(t, crd)
	c.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: mpha\n"))
	flux := testrig.StartFlux(t, c)
	creds := srv.Credentials()
	flux.Sync(t, testrig.GitSource{Name: "dns", URL: srv.URL("org/fleet.git"), Branch: "main", Path: "./mpha/dns",
		Username: string(creds["username"]), Password: string(creds["password"])})
	head, err := w.Read(ctx, l.Pair())
	if err != nil {
		t.Fatal(err)
	}
	flux.WaitApplied(t, "dns", head.Commit, 2*time.Minute)
	got, err := c.Dynamic(t).Resource(dnsEndpoints).Namespace("mpha").Get(ctx, "mpha-floating", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eps, _, _ := unstructured.NestedSlice(got.Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["targets"].([]any)[0] != "mp2.tsb.example.com" {
		t.Errorf("applied DNSEndpoint: %v", eps)
	}
}

var dnsEndpoints = schema.GroupVersionResource{Group: "externaldns.k8s.io", Version: "v1alpha1", Resource: "dnsendpoints"}

func mustBinDir(t *testing.T) string {
	t.Helper()
	d, err := testrig.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
