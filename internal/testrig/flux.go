package testrig

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// FluxNamespace is where the rig's Flux objects live.
const FluxNamespace = "flux-system"

var (
	gitRepositoryGVR = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"}
	kustomizationGVR = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
)

// Flux is Flux's source-controller and kustomize-controller, run out of cluster against one rig
// cluster. There are no pods: Deployments Flux applies are stored, never run.
type Flux struct {
	cluster           *Cluster
	source, kustomize *Process
}

// StartFlux installs Flux's CRDs into c and starts both controllers; they stop when t ends.
func StartFlux(t testing.TB, c *Cluster) *Flux {
	t.Helper()
	InstallFluxCRDs(t, c)
	dir := t.TempDir()
	artifacts := filepath.Join(dir, "artifacts")
	if err := os.MkdirAll(artifacts, 0o755); err != nil { // source-controller refuses a missing path
		t.Fatal(err)
	}
	ports := freePorts(t, 5) // storage, then metrics and health for each controller
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	storage := addr(0)
	env := []string{"KUBECONFIG=" + c.Kubeconfig, "RUNTIME_NAMESPACE=" + FluxNamespace}
	start := func(name string, metrics, health string, extra ...string) *Process {
		p := startProcess(t, procSpec{
			name: name + "-" + c.Name, path: Bin(t, name), env: env, logDir: logDir(t, dir),
			args: append([]string{
				"--metrics-addr", metrics, "--health-addr", health,
				"--events-addr=", "--watch-all-namespaces=true", "--log-level", "info",
			}, extra...),
		})
		waitFor(t, name+" /readyz", 60*time.Second, p, func(ctx context.Context) error { return HTTPOK(ctx, "http://"+health+"/readyz") })
		return p
	}
	f := &Flux{cluster: c}
	f.source = start("source-controller", addr(1), addr(2), "--storage-path", artifacts, "--storage-addr", storage, "--storage-adv-addr", storage)
	f.kustomize = start("kustomize-controller", addr(3), addr(4))
	return f
}

// InstallFluxCRDs installs Flux's CRDs and its namespace in c, without its controllers: for a
// test of what watches Flux's objects.
func InstallFluxCRDs(t testing.TB, c *Cluster) {
	t.Helper()
	crds, _ := filepath.Glob(filepath.Join(binFile(t, "crds"), "*.toolkit.fluxcd.io_*.yaml"))
	if len(crds) == 0 {
		t.Fatalf("no Flux CRDs under bin/crds: run `%s`", ToolsTarget)
	}
	c.ApplyFiles(t, crds...)
	c.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+FluxNamespace+"\n"))
}

// Processes are the two controllers' processes (source, kustomize), for fault tests and figures.
func (f *Flux) Processes() []*Process { return []*Process{f.source, f.kustomize} }

// GitSource says what a Flux pair syncs: a repository, a branch and a path in it.
type GitSource struct {
	Name               string // of the GitRepository and Kustomization
	URL, Branch, Path  string
	Username, Password string // basic auth, if set
	// Interval is how often Flux fetches and applies unasked (default 1m).
	Interval time.Duration
	// Source, if set, names a GitRepository another Sync made: the Kustomization applies Path
	// from it (one fetch feeds both, as in a fleet repository), and no GitRepository is made.
	Source string
}

// Sync creates (or updates) a GitRepository and a pruning Kustomization for src in flux-system.
func (f *Flux) Sync(t testing.TB, src GitSource) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs := f.cluster.Clientset
	interval := "1m"
	if src.Interval > 0 {
		interval = src.Interval.String()
	}
	repo := map[string]any{
		"interval": interval, "url": src.URL, "ref": map[string]any{"branch": src.Branch}, "timeout": "20s",
	}
	if src.Username != "" {
		sec := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: src.Name + "-auth", Namespace: FluxNamespace},
			StringData: map[string]string{"username": src.Username, "password": src.Password},
		}
		if _, err := cs.CoreV1().Secrets(FluxNamespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		repo["secretRef"] = map[string]any{"name": sec.Name}
	}
	source := cmp.Or(src.Source, src.Name)
	objs := []*unstructured.Unstructured{
		fluxObject("kustomize.toolkit.fluxcd.io/v1", "Kustomization", src.Name, map[string]any{
			"interval": interval, "path": src.Path, "prune": true, "wait": false, "timeout": "30s",
			"sourceRef": map[string]any{"kind": "GitRepository", "name": source},
		}),
	}
	if src.Source == "" {
		objs = append([]*unstructured.Unstructured{fluxObject("source.toolkit.fluxcd.io/v1", "GitRepository", src.Name, repo)}, objs...)
	}
	dyn := f.cluster.Dynamic(t)
	for _, o := range objs {
		gvr := gitRepositoryGVR
		if o.GetKind() == "Kustomization" {
			gvr = kustomizationGVR
		}
		if _, err := dyn.Resource(gvr).Namespace(FluxNamespace).Apply(ctx, o.GetName(), o,
			metav1.ApplyOptions{FieldManager: fieldManager, Force: true}); err != nil {
			t.Fatalf("applying %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

func fluxObject(apiVersion, kind, name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": apiVersion, "kind": kind,
		"metadata": map[string]any{"name": name, "namespace": FluxNamespace},
		"spec":     spec,
	}}
}

// Reconcile asks both controllers to act on name now instead of at the next interval.
func (f *Flux) Reconcile(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{"reconcile.fluxcd.io/requestedAt":%q}}}`, time.Now().Format(time.RFC3339Nano)))
	dyn := f.cluster.Dynamic(t)
	for _, gvr := range []schema.GroupVersionResource{gitRepositoryGVR, kustomizationGVR} {
		if _, err := dyn.Resource(gvr).Namespace(FluxNamespace).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatalf("requesting reconcile of %s %s: %v", gvr.Resource, name, err)
		}
	}
}

// WaitApplied waits until Kustomization name reports Ready with revision commit applied, and
// fails t with the Ready condition's message otherwise.
func (f *Flux) WaitApplied(t testing.TB, name, commit string, timeout time.Duration) {
	t.Helper()
	dyn := f.cluster.Dynamic(t)
	waitFor(t, "Kustomization "+name+" to apply "+commit, timeout, f.kustomize, func(ctx context.Context) error {
		k, err := dyn.Resource(kustomizationGVR).Namespace(FluxNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		rev, _, _ := unstructured.NestedString(k.Object, "status", "lastAppliedRevision")
		if conditionTrue(k, "Ready") && strings.HasSuffix(rev, commit) {
			return nil
		}
		return fmt.Errorf("lastAppliedRevision %q; Ready: %s", rev, conditionMessage(k, "Ready"))
	})
}
