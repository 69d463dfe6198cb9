package role_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-billy/v5/util"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/role"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

const (
	fleet   = "org/fleet.git"
	cluster = "east"
)

// tsbObjects are TSB's objects as its operator creates them, before Flux ever sees them.
type tsbObjects struct {
	deployments []*appsv1.Deployment
	restore     *batchv1.CronJob
}

// Real Flux applies each role (standby, active, demoted standby, standby again) onto Deployments
// and a CronJob it did not create, changing only the replicas and the suspend flag; a partial
// object without the selector or schedule is refused; removing role.yaml from Git leaves the
// objects in place.
func TestFluxAppliesRoles(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and Flux")
	}
	t.Parallel()
	c := testrig.StartCluster(t, cluster)
	srv := testrig.StartGitServer(t)
	flux := testrig.StartFlux(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	before := createTSB(ctx, t, c.Clientset)
	var deps []role.Workload
	for _, d := range before.deployments {
		deps = append(deps, role.WorkloadOf(d))
	}
	restore := role.RestoreOf(before.restore)
	layout, err := gitops.NewLayout("")
	if err != nil {
		t.Fatal(err)
	}
	path := layout.Role(cluster)
	// The Kustomization's path must outlive role.yaml, or the last step would test a missing path.
	keep := layout.ClusterDir(cluster) + "/keep.yaml"
	keepDoc := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  namespace: flux-system\n"

	standby := role.Standby("", deps, restore, false)
	head := srv.CreateRepo(t, fleet, "main", map[string]string{path: string(marshal(t, standby)), keep: keepDoc})
	flux.Sync(t, testrig.GitSource{Name: "fleet", URL: srv.URL(fleet), Branch: "main",
		Path: "./" + layout.ClusterDir(cluster), Username: srv.Username, Password: srv.Password})
	flux.WaitApplied(t, "fleet", head, 2*time.Minute)
	checkApplied(ctx, t, c.Clientset, before, standby)

	// Why role.yaml repeats the selector and the schedule: without them Flux refuses the apply.
	// Nor can role.yaml stand in for an object that does not exist.
	absent := role.Standby("", append(slices.Clone(deps), role.Workload{Name: "absent", Selector: deps[0].Selector}), restore, false)
	for _, tc := range []struct{ name, doc, want string }{
		{"missing Deployment", string(marshal(t, absent)),
			`Deployment/tsb/absent dry-run failed (Invalid): Deployment.apps "absent" is invalid: [spec.template.metadata.labels: Invalid value: null`},
		{"Deployment without selector", partial("apps/v1", "Deployment", role.TSB, "replicas: 0"),
			`Deployment/tsb/tsb dry-run failed (Invalid): Deployment.apps "tsb" is invalid: [spec.selector: Required value`},
		{"CronJob without schedule", partial("batch/v1", "CronJob", role.RestoreJob, "suspend: true"),
			`CronJob/tsb/tsb-restore dry-run failed (Invalid): CronJob.batch "tsb-restore" is invalid: spec.schedule: Required value`},
	} {
		head = push(ctx, t, srv, map[string][]byte{path: []byte(tc.doc)})
		flux.Reconcile(t, "fleet")
		if msg := waitRefused(t, c, head); !strings.Contains(msg, tc.want) {
			t.Errorf("%s: Ready says %q, want %q", tc.name, msg, tc.want)
		}
		checkApplied(ctx, t, c.Clientset, before, standby)
	}

	for _, step := range []struct {
		name string
		r    role.Role
	}{
		{"active", role.Active("", 1, deps, restore)},
		{"demoted standby", role.Standby("", deps, restore, true)},
		{"re-seeded standby", standby},
	} {
		head = push(ctx, t, srv, map[string][]byte{path: marshal(t, step.r)})
		flux.Reconcile(t, "fleet")
		flux.WaitApplied(t, "fleet", head, 2*time.Minute)
		t.Logf("%s applied", step.name)
		checkApplied(ctx, t, c.Clientset, before, step.r)
	}

	head = push(ctx, t, srv, map[string][]byte{path: nil})
	flux.Reconcile(t, "fleet")
	flux.WaitApplied(t, "fleet", head, 2*time.Minute)
	checkApplied(ctx, t, c.Clientset, before, standby)
}

func to[T any](v T) *T { return &v }

func deref[T any](p *T, nilValue T) T {
	if p == nil {
		return nilValue
	}
	return *p
}

// partial is a hand-written role.yaml document with only spec.<field>.
func partial(apiVersion, kind, name, field string) string {
	return gitops.Header + "apiVersion: " + apiVersion + "\nkind: " + kind + "\nmetadata:\n  name: " + name +
		"\n  namespace: tsb\n  annotations:\n" +
		"    kustomize.toolkit.fluxcd.io/ssa: Merge\n    kustomize.toolkit.fluxcd.io/prune: disabled\nspec:\n  " + field + "\n"
}

// waitRefused waits until Flux has tried commit and returns its Ready message; it fails t if
// Flux applied it.
func waitRefused(t *testing.T, c *testrig.Cluster, commit string) string {
	t.Helper()
	gvr := schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
	dyn := c.Dynamic(t)
	var msg string
	testrig.Eventually(t, "Flux to refuse "+commit, 2*time.Minute, func(ctx context.Context) error {
		k, err := dyn.Resource(gvr).Namespace(testrig.FluxNamespace).Get(ctx, "fleet", metav1.GetOptions{})
		if err != nil {
			return err
		}
		rev, _, _ := unstructured.NestedString(k.Object, "status", "lastAttemptedRevision")
		status, m := readyCondition(k)
		switch {
		case !strings.HasSuffix(rev, commit) || status == "Unknown":
			return fmt.Errorf("lastAttemptedRevision %q, Ready %s: %s", rev, status, m)
		case status == "True":
			t.Fatalf("Flux applied %s: %s", commit, m)
		}
		msg = m
		return nil
	})
	return msg
}

func readyCondition(k *unstructured.Unstructured) (status, message string) {
	conds, _, _ := unstructured.NestedSlice(k.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			status, _ = m["status"].(string)
			message, _ = m["message"].(string)
		}
	}
	return status, message
}

func marshal(t *testing.T, r role.Role) []byte {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkApplied fails t unless the live objects are before with r's replicas and suspend flag,
// plus the marks of role.yaml and Flux's own labels, and nothing else changed.
func checkApplied(ctx context.Context, t *testing.T, cs kubernetes.Interface, before tsbObjects, r role.Role) {
	t.Helper()
	for _, b := range before.deployments {
		d, err := cs.AppsV1().Deployments(b.Namespace).Get(ctx, b.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Deployment %s: %v", b.Name, err)
		}
		if got := deref(d.Spec.Replicas, -1); got != r.Replicas {
			t.Errorf("Deployment %s: replicas %d, want %d", b.Name, got, r.Replicas)
		}
		want := b.Spec.DeepCopy()
		want.Replicas = d.Spec.Replicas
		if diff := cmp.Diff(*want, d.Spec); diff != "" {
			t.Errorf("Deployment %s: spec changed beyond replicas (-before +after):\n%s", b.Name, diff)
		}
		checkMarks(t, "Deployment "+b.Name, b.ObjectMeta, d.ObjectMeta)
	}
	b := before.restore
	cj, err := cs.BatchV1().CronJobs(b.Namespace).Get(ctx, b.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("CronJob %s: %v", b.Name, err)
	}
	if got := deref(cj.Spec.Suspend, false); got != r.RestoreSuspended {
		t.Errorf("CronJob %s: suspend %t, want %t", b.Name, got, r.RestoreSuspended)
	}
	want := b.Spec.DeepCopy()
	want.Suspend = cj.Spec.Suspend
	if diff := cmp.Diff(*want, cj.Spec); diff != "" {
		t.Errorf("CronJob %s: spec changed beyond suspend (-before +after):\n%s", b.Name, diff)
	}
	checkMarks(t, "CronJob "+b.Name, b.ObjectMeta, cj.ObjectMeta)
}

// checkMarks: the labels and annotations are the creator's plus role.yaml's and Flux's.
func checkMarks(t *testing.T, what string, before, after metav1.ObjectMeta) {
	t.Helper()
	labels := map[string]string{}
	maps.Copy(labels, before.Labels)
	maps.Copy(labels, map[string]string{
		"kustomize.toolkit.fluxcd.io/name":      "fleet",
		"kustomize.toolkit.fluxcd.io/namespace": testrig.FluxNamespace,
	})
	if diff := cmp.Diff(labels, after.Labels); diff != "" {
		t.Errorf("%s: labels (-want +got):\n%s", what, diff)
	}
	annotations := map[string]string{}
	maps.Copy(annotations, before.Annotations)
	maps.Copy(annotations, map[string]string{role.SSAAnnotation: role.SSAMerge, role.PruneAnnotation: role.PruneDisabled})
	if diff := cmp.Diff(annotations, after.Annotations); diff != "" {
		t.Errorf("%s: annotations (-want +got):\n%s", what, diff)
	}
}

// createTSB creates namespace tsb with the tsb and iam Deployments and the tsb-restore CronJob,
// with client-go as TSB's operator would, and returns them as the API server stored them.
func createTSB(ctx context.Context, t *testing.T, cs kubernetes.Interface) tsbObjects {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: role.DefaultNamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var out tsbObjects
	for _, d := range []*appsv1.Deployment{tsbDeployment(role.TSB, nil), tsbDeployment(role.IAM, []metav1.LabelSelectorRequirement{
		{Key: "platform.tsb.tetrate.io/plane", Operator: metav1.LabelSelectorOpIn, Values: []string{"management"}},
	})} {
		got, err := cs.AppsV1().Deployments(ns.Name).Create(ctx, d, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating Deployment %s: %v", d.Name, err)
		}
		out.deployments = append(out.deployments, got)
	}
	cj, err := cs.BatchV1().CronJobs(ns.Name).Create(ctx, restoreCronJob(), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating CronJob: %v", err)
	}
	out.restore = cj
	return out
}

func tsbLabels(app string) map[string]string {
	return map[string]string{
		"app":                                 app,
		"platform.tsb.tetrate.io/application": app,
		"platform.tsb.tetrate.io/plane":       "management",
		// The owner's mark must survive the role (checkMarks compares every label).
		"app.kubernetes.io/managed-by": "Helm",
	}
}

func tsbDeployment(name string, exprs []metav1.LabelSelectorRequirement) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: role.DefaultNamespace, Labels: tsbLabels(name),
			Annotations: map[string]string{"platform.tsb.tetrate.io/version": "1.12.4"},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: to[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}, MatchExpressions: exprs},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{
				MaxSurge: to(intstr.FromInt32(1)), MaxUnavailable: to(intstr.FromInt32(0)),
			}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: tsbLabels(name), Annotations: map[string]string{"sidecar.istio.io/inject": "false"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: name,
					Containers: []corev1.Container{{
						Name: name, Image: "containers.dl.tetrate.io/" + name + "-server:1.12.4",
						Args:  []string{"--log-output-level", "default:info"},
						Ports: []corev1.ContainerPort{{Name: "grpc", ContainerPort: 9080}, {Name: "http", ContainerPort: 8443}},
						Env: []corev1.EnvVar{
							{Name: "TSB_DB_HOST", Value: "tsb-postgres"},
							{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
						},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("256Mi"),
						}},
					}},
				},
			},
		},
	}
}

func restoreCronJob() *batchv1.CronJob {
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: role.RestoreJob, Namespace: role.DefaultNamespace, Labels: map[string]string{"app": role.RestoreJob}},
		Spec: batchv1.CronJobSpec{
			Schedule: "*/15 * * * *", TimeZone: to("Etc/UTC"), Suspend: to(false),
			ConcurrencyPolicy: batchv1.ForbidConcurrent, SuccessfulJobsHistoryLimit: to[int32](1),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				BackoffLimit: to[int32](2),
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": role.RestoreJob}},
					Spec: corev1.PodSpec{
						RestartPolicy: corev1.RestartPolicyNever,
						Containers: []corev1.Container{{
							Name: "restore", Image: "postgres:15",
							Command: []string{"/bin/sh", "-c", "pg_restore --clean -d tsb /backup/latest.dump"},
							Env:     []corev1.EnvVar{{Name: "PGHOST", Value: "tsb-postgres"}, {Name: "PGUSER", Value: "tsb"}},
						}},
					},
				},
			}},
		},
	}
}

// push clones the fleet repository, writes files (nil content removes the file), commits and
// pushes; it returns the new head.
func push(ctx context.Context, t *testing.T, srv *testrig.GitServer, files map[string][]byte) string {
	t.Helper()
	r, err := gogit.PlainCloneContext(ctx, t.TempDir(), false, &gogit.CloneOptions{URL: srv.URL(fleet), Auth: srv.Auth()})
	if err != nil {
		t.Fatal(err)
	}
	wt, err := r.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	for p, content := range files {
		if content == nil {
			if _, err := wt.Remove(p); err != nil {
				t.Fatalf("removing %s: %v", p, err)
			}
			continue
		}
		if err := util.WriteFile(wt.Filesystem, p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := wt.AddWithOptions(&gogit.AddOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	h, err := wt.Commit("role", &gogit.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@mpha.invalid", When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.PushContext(ctx, &gogit.PushOptions{Auth: srv.Auth()}); err != nil {
		t.Fatal(err)
	}
	return h.String()
}
