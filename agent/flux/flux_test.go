package flux_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/mpha-dev/mpha/agent/flux"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// The watch reports the Kustomization's applied revision from its cache and wakes its subscribers
// when that revision changes (not on other updates); a nudge sets the reconcile annotation on the
// Kustomization and on its GitRepository, and on nothing else.
func TestWatchAndNudge(t *testing.T) {
	if testing.Short() {
		t.Skip("uses the rig's API server")
	}
	t.Parallel()
	c := testrig.StartCluster(t, "east")
	bin, err := testrig.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyFiles(t, filepath.Join(bin, "crds", "kustomize.toolkit.fluxcd.io_kustomizations.yaml"),
		filepath.Join(bin, "crds", "source.toolkit.fluxcd.io_gitrepositories.yaml"))
	c.Apply(t, []byte(`apiVersion: v1
kind: Namespace
metadata: {name: flux-system}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: mpha, namespace: flux-system}
spec: {interval: 1h, path: ./mpha/clusters/east, prune: true, sourceRef: {kind: GitRepository, name: fleet}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: fleet, namespace: flux-system}
spec: {interval: 1h, url: https://git.example.com/fleet.git, ref: {branch: main}}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: other, namespace: flux-system}
spec: {interval: 1h, url: https://git.example.com/other.git, ref: {branch: main}}
`))
	dyn := c.Dynamic(t)
	ctx := t.Context()
	w, err := flux.New(dyn, "flux-system", "mpha", nil)
	if err != nil {
		t.Fatal(err)
	}
	changed, stop := w.Changed().Subscribe()
	defer stop()
	go func() { _ = w.Run(ctx) }()
	<-changed // the informer's first list: an add

	if _, err := w.Revision(ctx); err == nil {
		t.Error("a revision before the Kustomization applied anything")
	}
	setStatus := func(rev, ready string) {
		t.Helper()
		k, err := dyn.Resource(flux.Kustomizations).Namespace("flux-system").Get(ctx, "mpha", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedField(k.Object, rev, "status", "lastAppliedRevision"); err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedField(k.Object, ready, "status", "lastAttemptedRevision"); err != nil {
			t.Fatal(err)
		}
		if _, err := dyn.Resource(flux.Kustomizations).Namespace("flux-system").UpdateStatus(ctx, k, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i, rev := range []string{"main@sha1:aaaa", "main@sha1:bbbb"} {
		setStatus(rev, rev)
		select {
		case <-changed:
		case <-time.After(30 * time.Second):
			t.Fatalf("no wake-up for the applied revision %s", rev)
		}
		if got, err := w.Revision(ctx); err != nil || got != rev {
			t.Errorf("revision %d: %q, %v; want %s", i, got, err, rev)
		}
	}
	// Another status field changes, the applied revision does not: no wake-up (a wrong one
	// would have arrived within the half second: the updates above took milliseconds).
	setStatus("main@sha1:bbbb", "main@sha1:cccc")
	time.Sleep(500 * time.Millisecond)
	select {
	case <-changed:
		t.Error("woken for an update that did not change the applied revision")
	default:
	}

	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	if err := w.Nudge(ctx, now); err != nil {
		t.Fatal(err)
	}
	want := now.Format(time.RFC3339Nano)
	for _, o := range []struct {
		kind, name, want string
	}{{"Kustomization", "mpha", want}, {"GitRepository", "fleet", want}, {"GitRepository", "other", ""}} {
		gvr := flux.GitRepositories
		if o.kind == "Kustomization" {
			gvr = flux.Kustomizations
		}
		got, err := dyn.Resource(gvr).Namespace("flux-system").Get(ctx, o.name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if a := got.GetAnnotations()[flux.RequestedAtAnnotation]; a != o.want {
			t.Errorf("%s %s: %s = %q, want %q", o.kind, o.name, flux.RequestedAtAnnotation, a, o.want)
		}
	}
}
