package charts

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/action"
	hrelease "helm.sh/helm/v3/pkg/release"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/mpha-dev/mpha/agent/flux"
	"github.com/mpha-dev/mpha/agent/release"
	"github.com/mpha-dev/mpha/internal/helmtest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

var (
	helmReleases   = schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}
	kustomizations = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
)

// helmConfig is Helm's SDK configuration for namespace of the rig cluster.
func helmConfig(t *testing.T, c *testrig.Cluster, namespace string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &c.Kubeconfig, &namespace
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, namespace, "secret", func(string, ...any) {}); err != nil {
		t.Fatalf("helm configuration: %v", err)
	}
	return cfg
}

// seedCluster makes what the agent reads in a cluster with TSB, Flux and sealed-secrets, plus a
// neighbour of each that the agent must not reach.
func seedCluster(t *testing.T, c *testrig.Cluster) {
	t.Helper()
	crds, err := testrig.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyFiles(t, filepath.Join(crds, "crds", "helm.toolkit.fluxcd.io_helmreleases.yaml"),
		filepath.Join(crds, "crds", "kustomize.toolkit.fluxcd.io_kustomizations.yaml"),
		filepath.Join(crds, "crds", "source.toolkit.fluxcd.io_gitrepositories.yaml"))
	helmtest.Install(t, c.Kubeconfig, "tsb", "mp", helmtest.Values()) // the MP's release, revision 1 (creates tsb)
	var docs []string
	for _, ns := range []string{"mpha", "flux-system"} {
		docs = append(docs, "apiVersion: v1\nkind: Namespace\nmetadata: {name: "+ns+"}\n")
	}
	secret := func(ns, name string) string {
		return "apiVersion: v1\nkind: Secret\nmetadata: {name: " + name + ", namespace: " + ns + "}\nstringData: {k: v}\n"
	}
	for _, s := range [][2]string{{"mpha", "mpha-git"}, {"mpha", "mpha-hmac"}, {"mpha", "someone-elses"},
		{"tsb", "iam-signing-key"}, {"tsb", "tsb-iam-jwks"}, {"tsb", "tsb-certs"}, {"tsb", "postgres-credentials"}} {
		docs = append(docs, secret(s[0], s[1]))
	}
	for _, d := range []string{"tsb", "iam", "postgres"} {
		docs = append(docs, `apiVersion: apps/v1
kind: Deployment
metadata: {name: `+d+`, namespace: tsb}
spec:
  replicas: 1
  selector: {matchLabels: {app: `+d+`}}
  template:
    metadata: {labels: {app: `+d+`}}
    spec: {containers: [{name: c, image: example.com/`+d+`}]}
`)
	}
	docs = append(docs, `apiVersion: batch/v1
kind: CronJob
metadata: {name: tsb-restore, namespace: tsb}
spec:
  schedule: "0 * * * *"
  suspend: true
  jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: example.com/restore}]}}}}
`,
		"apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\nmetadata: {name: mp, namespace: tsb}\nspec: {interval: 1m, chart: {spec: {chart: managementplane, sourceRef: {kind: HelmRepository, name: tsb}}}}\n",
		"apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: mpha, namespace: flux-system}\nspec: {interval: 1m, path: ./mpha/clusters/east, prune: true, sourceRef: {kind: GitRepository, name: mpha}}\n",
		"apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: mpha, namespace: flux-system}\nspec: {interval: 1m, url: https://git.example.com/fleet.git, ref: {branch: main}}\n",
		"apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: fleet, namespace: flux-system}\nspec: {interval: 1m, url: https://git.example.com/fleet.git, ref: {branch: main}}\n",
		"apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: apps, namespace: flux-system}\nspec: {interval: 1m, path: ./apps, prune: true, sourceRef: {kind: GitRepository, name: fleet}}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: sealed-secrets-controller, namespace: kube-system}\nspec: {ports: [{name: http, port: 8080}]}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: metrics-server, namespace: kube-system}\nspec: {ports: [{name: http, port: 8080}]}\n",
	)
	for _, d := range docs {
		c.Apply(t, []byte(d))
	}
}

// impersonate returns clients acting as the agent's ServiceAccount.
func impersonate(t *testing.T, c *testrig.Cluster, ns, sa string) (kubernetes.Interface, dynamic.Interface) {
	t.Helper()
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + sa}
	return kubernetes.NewForConfigOrDie(cfg), dynamic.NewForConfigOrDie(cfg)
}

// The chart installs into a cluster with Helm's SDK, and its RBAC is proven with real requests
// made as the agent's ServiceAccount: what the agent does is allowed, nothing else is.
func TestInstallAndRBAC(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a rig cluster")
	}
	c := testrig.StartCluster(t, "east")
	seedCluster(t, c)

	vals := readValues(t, "mpha/ci/minimal-values.yaml")
	in := action.NewInstall(helmConfig(t, c, "mpha"))
	in.ReleaseName, in.Namespace = "mpha", "mpha"
	rel, err := in.Run(loadChart(t), vals)
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	if rel.Info.Status != hrelease.StatusDeployed {
		t.Fatalf("helm install: status %s", rel.Info.Status)
	}
	if !strings.Contains(rel.Info.Notes, "kubectl -n mpha get secret mpha-git") {
		t.Errorf("NOTES do not say which Secrets to check:\n%s", rel.Info.Notes)
	}
	ctx := t.Context()
	cm, err := c.Clientset.CoreV1().ConfigMaps("mpha").Get(ctx, "mpha", metav1.GetOptions{})
	if err != nil || !strings.Contains(cm.Data["config.yaml"], "cluster: east") {
		t.Fatalf("the ConfigMap: %v %v", cm, err)
	}

	cs, dyn := impersonate(t, c, "mpha", "mpha")
	testrig.Eventually(t, "the Roles in force", 30*time.Second, func(ctx context.Context) error {
		_, err := cs.CoreV1().Secrets("tsb").Get(ctx, "iam-signing-key", metav1.GetOptions{})
		return err
	})
	byName := func(name string) metav1.ListOptions {
		return metav1.ListOptions{FieldSelector: "metadata.name=" + name}
	}
	gvr := func(r schema.GroupVersionResource, ns string) dynamic.ResourceInterface {
		return dyn.Resource(r).Namespace(ns)
	}
	noop := []byte(`{"metadata":{"labels":{"mpha-test":"x"}}}`)

	allowed := map[string]func(ctx context.Context) error{
		"get its Git credentials": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("mpha").Get(ctx, "mpha-git", metav1.GetOptions{}))
		},
		"get its HMAC key": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("mpha").Get(ctx, "mpha-hmac", metav1.GetOptions{}))
		},
		"get a named TSB secret": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("tsb").Get(ctx, "tsb-iam-jwks", metav1.GetOptions{}))
		},
		"list a named TSB secret": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("tsb").List(ctx, byName("iam-signing-key")))
		},
		"watch a named TSB secret": func(ctx context.Context) error {
			return stop(cs.CoreV1().Secrets("tsb").Watch(ctx, byName("iam-signing-key")))
		},
		"get a checked TSB secret": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("tsb").Get(ctx, "tsb-certs", metav1.GetOptions{}))
		},
		"read the Helm release":    func(ctx context.Context) error { return ignore(release.NewReader(cs, "tsb", "mp").Latest(ctx)) },
		"watch the tsb Deployment": func(ctx context.Context) error { return stop(cs.AppsV1().Deployments("tsb").Watch(ctx, byName("tsb"))) },
		"get the iam Deployment": func(ctx context.Context) error {
			return ignore(cs.AppsV1().Deployments("tsb").Get(ctx, "iam", metav1.GetOptions{}))
		},
		"get the restore CronJob": func(ctx context.Context) error {
			return ignore(cs.BatchV1().CronJobs("tsb").Get(ctx, "tsb-restore", metav1.GetOptions{}))
		},
		"get the MP HelmRelease": func(ctx context.Context) error {
			return ignore(gvr(helmReleases, "tsb").Get(ctx, "mp", metav1.GetOptions{}))
		},
		"get its Flux Kustomization": func(ctx context.Context) error {
			return ignore(gvr(kustomizations, "flux-system").Get(ctx, "mpha", metav1.GetOptions{}))
		},
		"list and watch its Flux Kustomization by name (the informer)": func(ctx context.Context) error {
			if err := ignore(gvr(kustomizations, "flux-system").List(ctx, byName("mpha"))); err != nil {
				return err
			}
			return stop(gvr(kustomizations, "flux-system").Watch(ctx, byName("mpha")))
		},
		"nudge its Kustomization and GitRepository": func(ctx context.Context) error {
			w, err := flux.New(dyn, "flux-system", "mpha", nil)
			if err != nil {
				return err
			}
			return w.Nudge(ctx, time.Now())
		},
		"get the sealed-secrets Service": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Services("kube-system").Get(ctx, "sealed-secrets-controller", metav1.GetOptions{}))
		},
		"create and renew its Lease": func(ctx context.Context) error {
			l, err := cs.CoordinationV1().Leases("mpha").Create(ctx, lease("mpha-agent-east"), metav1.CreateOptions{})
			if err != nil {
				return err
			}
			if l, err = cs.CoordinationV1().Leases("mpha").Get(ctx, l.Name, metav1.GetOptions{}); err != nil {
				return err
			}
			return ignore(cs.CoordinationV1().Leases("mpha").Update(ctx, l, metav1.UpdateOptions{}))
		},
		"write the readiness ConfigMap": func(ctx context.Context) error {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mpha-readiness"}, Data: map[string]string{"a": "b"}}
			if _, err := cs.CoreV1().ConfigMaps("mpha").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
				return err
			}
			got, err := cs.CoreV1().ConfigMaps("mpha").Get(ctx, cm.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			return ignore(cs.CoreV1().ConfigMaps("mpha").Update(ctx, got, metav1.UpdateOptions{}))
		},
		"create an Event in its namespace": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Events("mpha").Create(ctx, event("mpha"), metav1.CreateOptions{}))
		},
	}
	for name, do := range allowed {
		if err := do(ctx); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The certificate through the service proxy is authorized; the rig has no endpoints behind
	// the Service, so the proxy answers 503, never 403.
	_, err = cs.CoreV1().Services("kube-system").ProxyGet("http", "sealed-secrets-controller", "http", "/v1/cert.pem", nil).DoRaw(ctx)
	if err == nil || apierrors.IsForbidden(err) {
		t.Errorf("the sealing certificate through the service proxy: %v, want allowed (and no endpoints)", err)
	}

	denied := map[string]func(ctx context.Context) error{
		"get another secret in tsb": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("tsb").Get(ctx, "postgres-credentials", metav1.GetOptions{}))
		},
		"get another secret in its own ns": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("mpha").Get(ctx, "someone-elses", metav1.GetOptions{}))
		},
		"list the secrets in tsb": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("tsb").List(ctx, metav1.ListOptions{}))
		},
		"list tsb secrets by Helm's labels": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("tsb").List(ctx, metav1.ListOptions{LabelSelector: "owner=helm"}))
		},
		"list another secret by name": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("tsb").List(ctx, byName("postgres-credentials")))
		},
		"watch the secrets in tsb": func(ctx context.Context) error {
			return stop(cs.CoreV1().Secrets("tsb").Watch(ctx, metav1.ListOptions{}))
		},
		"list secrets cluster-wide": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}))
		},
		"get a release revision past N": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("tsb").Get(ctx, release.SecretName("mp", 201), metav1.GetOptions{}))
		},
		"update a TSB secret": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("tsb").Patch(ctx, "iam-signing-key", types.MergePatchType, noop, metav1.PatchOptions{}))
		},
		"delete a TSB secret": func(ctx context.Context) error {
			return cs.CoreV1().Secrets("tsb").Delete(ctx, "tsb-iam-jwks", metav1.DeleteOptions{})
		},
		"create a secret in tsb": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("tsb").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}))
		},
		"create a ConfigMap in tsb": func(ctx context.Context) error {
			return ignore(cs.CoreV1().ConfigMaps("tsb").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}))
		},
		"create an Event in tsb": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Events("tsb").Create(ctx, event("tsb"), metav1.CreateOptions{}))
		},
		"patch the tsb Deployment": func(ctx context.Context) error {
			return ignore(cs.AppsV1().Deployments("tsb").Patch(ctx, "tsb", types.MergePatchType, noop, metav1.PatchOptions{}))
		},
		"scale the tsb Deployment": func(ctx context.Context) error { return scale(ctx, cs, "tsb") },
		"get another Deployment": func(ctx context.Context) error {
			return ignore(cs.AppsV1().Deployments("tsb").Get(ctx, "postgres", metav1.GetOptions{}))
		},
		"patch the restore CronJob": func(ctx context.Context) error {
			return ignore(cs.BatchV1().CronJobs("tsb").Patch(ctx, "tsb-restore", types.MergePatchType, noop, metav1.PatchOptions{}))
		},
		"patch the MP HelmRelease": func(ctx context.Context) error {
			return ignore(gvr(helmReleases, "tsb").Patch(ctx, "mp", types.MergePatchType, noop, metav1.PatchOptions{}))
		},
		"get another Kustomization": func(ctx context.Context) error {
			return ignore(gvr(kustomizations, "flux-system").Get(ctx, "apps", metav1.GetOptions{}))
		},
		"list the Kustomizations": func(ctx context.Context) error {
			return ignore(gvr(kustomizations, "flux-system").List(ctx, metav1.ListOptions{}))
		},
		"patch another Kustomization": func(ctx context.Context) error {
			return ignore(gvr(kustomizations, "flux-system").Patch(ctx, "apps", types.MergePatchType, noop, metav1.PatchOptions{}))
		},
		"patch another GitRepository": func(ctx context.Context) error {
			return ignore(gvr(flux.GitRepositories, "flux-system").Patch(ctx, "fleet", types.MergePatchType, noop, metav1.PatchOptions{}))
		},
		"get its GitRepository (patch only)": func(ctx context.Context) error {
			return ignore(gvr(flux.GitRepositories, "flux-system").Get(ctx, "mpha", metav1.GetOptions{}))
		},
		"proxy to another Service": func(ctx context.Context) error {
			return raw(cs.CoreV1().Services("kube-system").ProxyGet("http", "metrics-server", "http", "/", nil).DoRaw(ctx))
		},
		"take another Lease": func(ctx context.Context) error {
			return ignore(cs.CoordinationV1().Leases("mpha").Update(ctx, lease("kube-controller-manager"), metav1.UpdateOptions{}))
		},
		"update another ConfigMap": func(ctx context.Context) error {
			return ignore(cs.CoreV1().ConfigMaps("mpha").Patch(ctx, "mpha", types.MergePatchType, noop, metav1.PatchOptions{}))
		},
		"read the Helm release by its labels": func(ctx context.Context) error {
			return ignore(cs.CoreV1().Secrets("tsb").List(ctx, metav1.ListOptions{LabelSelector: release.Selector("mp").String()}))
		},
	}
	for name, do := range denied {
		if err := do(ctx); !apierrors.IsForbidden(err) {
			t.Errorf("%s: got %v, want Forbidden", name, err)
		}
	}

	// config.selfFence grants the scale of tsb and iam, and nothing more.
	vals["config"].(map[string]any)["selfFence"] = true
	up := action.NewUpgrade(helmConfig(t, c, "mpha"))
	up.Namespace = "mpha"
	if _, err := up.Run("mpha", loadChart(t), vals); err != nil {
		t.Fatalf("helm upgrade: %v", err)
	}
	testrig.Eventually(t, "the scale grant", 30*time.Second, func(ctx context.Context) error { return scale(ctx, cs, "iam") })
	if err := scale(ctx, cs, "postgres"); !apierrors.IsForbidden(err) {
		t.Errorf("scale postgres with selfFence: %v, want Forbidden", err)
	}
	if err := ignore(cs.AppsV1().Deployments("tsb").Patch(ctx, "tsb", types.MergePatchType, noop, metav1.PatchOptions{})); !apierrors.IsForbidden(err) {
		t.Errorf("patch the tsb Deployment with selfFence: %v, want Forbidden", err)
	}
}

func ignore[T any](_ T, err error) error { return err }

func raw(_ []byte, err error) error { return err }

// stop opens a watch and closes it.
func stop(w interface{ Stop() }, err error) error {
	if err != nil {
		return err
	}
	if w == nil {
		return errors.New("no watch")
	}
	w.Stop()
	return nil
}

func scale(ctx context.Context, cs kubernetes.Interface, name string) error {
	_, err := cs.AppsV1().Deployments("tsb").Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"replicas":0}}`),
		metav1.PatchOptions{}, "scale")
	return err
}

func lease(name string) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("mpha-0")}}
}

func event(ns string) *corev1.Event {
	now := metav1.Now()
	return &corev1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: "mpha.", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "ConfigMap", Namespace: ns, Name: "mpha-readiness", APIVersion: "v1"},
		Reason:         "Test", Message: "rbac", Type: corev1.EventTypeNormal, FirstTimestamp: now, LastTimestamp: now, Count: 1}
}
