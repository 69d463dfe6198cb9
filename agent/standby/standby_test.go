package standby_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/mpha-dev/mpha/agent/standby"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/role"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/gitops/values"
	"github.com/mpha-dev/mpha/internal/helmtest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

const repo = "org/fleet.git"

type rig struct {
	east   *testrig.Cluster
	srv    *testrig.GitServer
	writer *gitrepo.Writer
	layout gitops.Layout
}

func pairYAML(active string, lastFrom string) string {
	s := gitops.Header + `apiVersion: mpha.dev/v1alpha1
kind: Pair
name: tsb-mp
floatingFQDN: active.tsb.example.com
clusters:
  - {name: east, mpFQDN: mp1.tsb.example.com}
  - {name: west, mpFQDN: mp2.tsb.example.com}
active: ` + active + `
epoch: 3
`
	if lastFrom != "" {
		s += "lastFailover: {event: ev-2, from: " + lastFrom + ", to: " + active + `, at: "2026-11-20T10:02:00Z"}` + "\n"
	}
	return s
}

func startRig(t *testing.T, active string) *rig {
	t.Helper()
	r := &rig{east: testrig.StartCluster(t, "east"), srv: testrig.StartGitServer(t)}
	var err error
	if r.layout, err = gitops.NewLayout("mpha"); err != nil {
		t.Fatal(err)
	}
	r.srv.CreateRepo(t, repo, "main", map[string]string{"README.md": "fleet\n", r.layout.Pair(): pairYAML(active, "")})
	auth, err := gitrepo.NewAuth(r.srv.URL(repo), r.srv.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	r.writer, err = gitrepo.New(gitrepo.Options{URL: r.srv.URL(repo), Auth: auth, AllowHTTPCredentials: true,
		Author: git.Signature{Name: "mpha agent (east)", Email: "mpha@east.invalid"}})
	if err != nil {
		t.Fatal(err)
	}
	helmtest.Install(t, r.east.Kubeconfig, "tsb", "mp", helmtest.Values())
	// What the TSB operator would have created: the tsb and iam Deployments, the restore job.
	ctx := context.Background()
	for _, name := range []string{"tsb", "iam"} {
		labels := map[string]string{"app": name, "platform.tsb.tetrate.io/application": name}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "tsb"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](2),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "registry.east.example.com/tsb/" + name + ":1.12.3"}}},
				},
			},
		}
		if _, err := r.east.Clientset.AppsV1().Deployments("tsb").Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "tsb-restore", Namespace: "tsb"},
		Spec: batchv1.CronJobSpec{Schedule: "*/15 * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "restore", Image: "registry.east.example.com/tsb/restore:1.12.3"}}}},
		}}},
	}
	if _, err := r.east.Clientset.BatchV1().CronJobs("tsb").Create(ctx, cj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) publisher(t *testing.T, mode string) *standby.Publisher {
	t.Helper()
	p, err := standby.New(r.east.Clientset, r.writer, standby.Options{
		Self: "east", Layout: r.layout, RoleMode: mode, Debounce: 50 * time.Millisecond, Resync: time.Hour, Poll: 200 * time.Millisecond,
		Overrides: values.Overrides{"image.registry": "registry.west.example.com", "spec.hub": "registry.west.example.com/tsb"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *rig) read(t *testing.T, paths ...string) map[string][]byte {
	t.Helper()
	snap, err := r.writer.Read(context.Background(), paths...)
	if err != nil {
		t.Fatal(err)
	}
	return snap.Files
}

// history returns the commits on main, newest first.
func (r *rig) history(t *testing.T) []*object.Commit {
	t.Helper()
	g, err := gogit.Clone(memory.NewStorage(), nil, &gogit.CloneOptions{URL: r.srv.URL(repo), Auth: r.srv.Auth(),
		ReferenceName: plumbing.NewBranchReferenceName("main"), SingleBranch: true})
	if err != nil {
		t.Fatal(err)
	}
	h, err := g.Head()
	if err != nil {
		t.Fatal(err)
	}
	it, err := g.Log(&gogit.LogOptions{From: h.Hash()})
	if err != nil {
		t.Fatal(err)
	}
	var out []*object.Commit
	_ = it.ForEach(func(c *object.Commit) error { out = append(out, c); return nil })
	return out
}

// noSecretsAnywhere scans every file of every commit for the fixture's secret values and more.
func (r *rig) noSecretsAnywhere(t *testing.T, more ...string) {
	t.Helper()
	for _, c := range r.history(t) {
		files, err := c.Files()
		if err != nil {
			t.Fatal(err)
		}
		_ = files.ForEach(func(f *object.File) error {
			s, _ := f.Contents()
			for _, leak := range append([]string{"fixture-admin-password", "fixture-postgres-password", "adminPassword"}, more...) {
				if strings.Contains(s, leak) {
					t.Errorf("commit %s: %s holds %q", c.Hash, f.Name, leak)
				}
			}
			return nil
		})
		if strings.Contains(c.Message, "fixture-") {
			t.Errorf("commit %s: message holds a secret value", c.Hash)
		}
	}
}

// The active's release becomes the standby's HelmRelease (no secrets, same spec, overrides),
// with both roles; a second run, and an upgrade with the same values, commit nothing; an upgrade
// with a changed spec commits once.
func TestPublisherRendersTheStandby(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a Git server, installs a Helm release")
	}
	r := startRig(t, "east")
	p := r.publisher(t, standby.RoleModeManifest)
	ctx := context.Background()
	l := r.layout

	rep, err := p.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Active || rep.Peer != "west" || rep.Commit == "" || rep.Revision != 1 || len(rep.Warnings) != 0 {
		t.Fatalf("first run: %+v", rep)
	}
	files := r.read(t, "mpha/clusters/east/mp/", "mpha/clusters/west/mp/")
	want := []string{
		"mpha/clusters/east/mp/kustomization.yaml", "mpha/clusters/east/mp/role.yaml",
		"mpha/clusters/west/mp/helmrelease.yaml", "mpha/clusters/west/mp/kustomization.yaml", "mpha/clusters/west/mp/role.yaml",
	}
	if len(files) != len(want) {
		t.Errorf("files: %v", keys(files))
	}
	for _, w := range want {
		if _, ok := files[w]; !ok {
			t.Errorf("%s missing", w)
		}
	}
	hr, err := values.ParseRelease(files[l.HelmRelease("west")])
	if err != nil {
		t.Fatal(err)
	}
	if hr.Chart != helmtest.ChartName || hr.Version != helmtest.ChartVersion || hr.Name != "mp" || hr.Namespace != "tsb" {
		t.Errorf("release: %+v", hr)
	}
	if _, ok := hr.Values["secrets"]; ok {
		t.Error("the standby's values hold secrets")
	}
	src := helmtest.Values()
	delete(src, "secrets")
	if d := values.Diff(src, hr.Values); strings.Join(d, ",") != "image.registry,spec.hub" {
		t.Errorf("standby values differ from the active's at %v, want only the overrides", d)
	}
	if got, _ := values.Get(hr.Values, "image.registry"); got != "registry.west.example.com" {
		t.Errorf("image.registry = %v", got)
	}
	west, err := role.Parse(files[l.Role("west")])
	if err != nil {
		t.Fatal(err)
	}
	// The restore job's shape on west is unknown (no earlier role): it is left out, not guessed.
	if west.Replicas != 0 || west.RestoreSuspended || west.Restore != nil || len(west.Deployments) != 2 {
		t.Errorf("standby role: %+v", west)
	}
	east, err := role.Parse(files[l.Role("east")])
	if err != nil {
		t.Fatal(err)
	}
	if east.Replicas != 2 || !east.RestoreSuspended || len(east.Deployments) != 2 || east.Deployments[0].Selector.MatchLabels["app"] != "iam" {
		t.Errorf("active role (live replicas 2): %+v", east)
	}
	if !bytes.Contains(files["mpha/clusters/west/mp/kustomization.yaml"], []byte("resources:\n  - helmrelease.yaml\n  - role.yaml\n")) ||
		!bytes.Contains(files["mpha/clusters/east/mp/kustomization.yaml"], []byte("resources:\n  - role.yaml\n")) {
		t.Errorf("kustomizations:\n%s\n%s", files["mpha/clusters/west/mp/kustomization.yaml"], files["mpha/clusters/east/mp/kustomization.yaml"])
	}
	head := r.history(t)[0]
	tr := trailer.Parse(head.Message)
	get := func(k string) string { v, _ := trailer.Get(tr, k); return v }
	if get(trailer.Kind) != "values" || get(trailer.Cluster) != "east" || get(trailer.To) != "west" {
		t.Errorf("trailers: %v", tr)
	}

	// Unchanged: nothing to commit, even after a new revision with the same values.
	if rep, err := p.RunOnce(ctx); err != nil || rep.Commit != "" || len(rep.Changed) != 0 {
		t.Fatalf("second run: %+v, %v", rep, err)
	}
	helmtest.Install(t, r.east.Kubeconfig, "tsb", "mp", helmtest.Values())
	if rep, err := p.RunOnce(ctx); err != nil || rep.Commit != "" || rep.Revision != 2 {
		t.Fatalf("same values, revision 2: %+v, %v", rep, err)
	}
	before := len(r.history(t))

	// A changed spec: exactly one commit, touching only the standby's HelmRelease.
	v := helmtest.Values()
	v["spec"].(map[string]any)["organization"] = "acme"
	helmtest.Install(t, r.east.Kubeconfig, "tsb", "mp", v)
	rep, err = p.RunOnce(ctx)
	if err != nil || rep.Commit == "" || strings.Join(rep.Changed, ",") != l.HelmRelease("west") {
		t.Fatalf("changed spec: %+v, %v", rep, err)
	}
	if n := len(r.history(t)); n != before+1 {
		t.Errorf("%d commits for one changed spec", n-before)
	}
	hr, _ = values.ParseRelease(r.read(t, l.HelmRelease("west"))[l.HelmRelease("west")])
	if got, _ := values.Get(hr.Values, "spec.organization"); got != "acme" {
		t.Errorf("spec.organization = %v", got)
	}
	r.noSecretsAnywhere(t)
}

// The loop commits on a Helm upgrade without being asked, and a demoted standby's suspended
// restore job survives it.
func TestPublisherRunFollowsUpgradesAndKeepsADemotedStandbySuspended(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a Git server, installs a Helm release")
	}
	r := startRig(t, "east")
	l := r.layout
	// The last failover moved west → east: west's role is a demoted standby.
	demoted := role.Standby("tsb", []role.Workload{
		{Name: "iam", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "iam", "platform.tsb.tetrate.io/application": "iam"}}},
		{Name: "tsb", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "tsb", "platform.tsb.tetrate.io/application": "tsb"}}},
	}, &role.Restore{Name: "tsb-restore", Schedule: "*/15 * * * *"}, true)
	b, err := demoted.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.writer.Apply(context.Background(), gitops.Change{Message: "failover", Files: map[string][]byte{
		l.Pair(): []byte(pairYAML("east", "west")), l.Role("west"): b,
	}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.publisher(t, standby.RoleModeManifest).Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	testrig.Eventually(t, "the standby's HelmRelease", 30*time.Second, func(context.Context) error {
		if _, ok := r.read(t, l.HelmRelease("west"))[l.HelmRelease("west")]; !ok {
			return os.ErrNotExist
		}
		return nil
	})
	west, err := role.Parse(r.read(t, l.Role("west"))[l.Role("west")])
	if err != nil {
		t.Fatal(err)
	}
	if !west.RestoreSuspended {
		t.Error("the loop resumed the demoted standby's restore job")
	}
	v := helmtest.Values()
	v["spec"].(map[string]any)["organization"] = "acme"
	helmtest.Install(t, r.east.Kubeconfig, "tsb", "mp", v)
	testrig.Eventually(t, "the upgrade's values", 30*time.Second, func(context.Context) error {
		hr, err := values.ParseRelease(r.read(t, l.HelmRelease("west"))[l.HelmRelease("west")])
		if err != nil {
			return err
		}
		if got, _ := values.Get(hr.Values, "spec.organization"); got != "acme" {
			return os.ErrNotExist
		}
		return nil
	})
}

// On the standby the publisher writes nothing; in values mode the replicas move into the values
// and role.yaml keeps only the restore job.
func TestPublisherStandbyAndValuesMode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a Git server, installs a Helm release")
	}
	r := startRig(t, "west")
	ctx := context.Background()
	p := r.publisher(t, standby.RoleModeValues)
	if rep, err := p.RunOnce(ctx); err != nil || rep.Active || rep.Commit != "" {
		t.Fatalf("as standby: %+v, %v", rep, err)
	}
	if _, err := r.writer.Apply(ctx, gitops.Change{Message: "east active", Files: map[string][]byte{r.layout.Pair(): []byte(pairYAML("east", ""))}}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	l := r.layout
	files := r.read(t, l.HelmRelease("west"), l.Role("west"))
	hr, err := values.ParseRelease(files[l.HelmRelease("west")])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range values.ReplicaPaths() {
		if got, ok := values.Get(hr.Values, p); !ok || got != float64(0) {
			t.Errorf("%s = %v", p, got)
		}
	}
	// Nothing to scale in role.yaml, and west's restore job is unknown: no role.yaml for west;
	// east's holds only its restore job, suspended.
	if _, ok := files[l.Role("west")]; ok {
		t.Errorf("values mode wrote west's role.yaml:\n%s", files[l.Role("west")])
	}
	east, err := role.Parse(r.read(t, l.Role("east"))[l.Role("east")])
	if err != nil {
		t.Fatal(err)
	}
	if len(east.Deployments) != 0 || east.Restore == nil || !east.RestoreSuspended {
		t.Errorf("values-mode active role: %+v", east)
	}
	k := r.read(t, "mpha/clusters/west/mp/kustomization.yaml")["mpha/clusters/west/mp/kustomization.yaml"]
	if !bytes.HasSuffix(k, []byte("resources:\n  - helmrelease.yaml\n")) {
		t.Errorf("west's kustomization.yaml lists a role it does not have:\n%s", k)
	}
}

// Credentials nested in the release's kept values (a spec password, an operator env entry) are
// stripped before the values reach Git: the commit names their paths, the log names their paths,
// neither holds a value; in refuse mode nothing is committed.
func TestPublisherStripsCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a Git server, installs a Helm release")
	}
	r := startRig(t, "east")
	ctx := context.Background()
	v := helmtest.Values()
	spec := v["spec"].(map[string]any)
	spec["dataStore"].(map[string]any)["postgres"].(map[string]any)["password"] = "fixture-spec-password"
	spec["identityProvider"] = map[string]any{"oidc": map[string]any{"clientId": "mp", "clientSecret": "fixture-oidc-secret"}}
	v["operator"].(map[string]any)["deployment"].(map[string]any)["env"] = []any{
		map[string]any{"name": "DB_PASSWORD", "value": "fixture-env-password"}, map[string]any{"name": "LOG_LEVEL", "value": "debug"}}
	helmtest.Install(t, r.east.Kubeconfig, "tsb", "mp", v)
	planted := []string{"fixture-spec-password", "fixture-oidc-secret", "fixture-env-password"}
	want := []string{"operator.deployment.env[0].value", "spec.dataStore.postgres.password", "spec.identityProvider.oidc.clientSecret"}

	var logs bytes.Buffer
	refusing, err := standby.New(r.east.Clientset, r.writer, standby.Options{Self: "east", Layout: r.layout,
		SecretValues: values.SecretsRefuse, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	before := len(r.history(t))
	_, err = refusing.RunOnce(ctx)
	var se *values.SecretsError
	if !errors.As(err, &se) || strings.Join(se.Paths, ",") != strings.Join(want, ",") {
		t.Fatalf("refuse mode: %v, want a refusal naming %v", err, want)
	}
	if n := len(r.history(t)); n != before {
		t.Errorf("refuse mode committed %d time(s)", n-before)
	}

	p, err := standby.New(r.east.Clientset, r.writer, standby.Options{Self: "east", Layout: r.layout,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := p.RunOnce(ctx)
	if err != nil || rep.Commit == "" {
		t.Fatalf("strip mode: %+v, %v", rep, err)
	}
	if strings.Join(rep.Stripped, ",") != strings.Join(want, ",") {
		t.Errorf("stripped %v, want %v", rep.Stripped, want)
	}
	head := r.history(t)[0]
	for _, p := range want {
		if !strings.Contains(head.Message, "- "+p+"\n") || !strings.Contains(logs.String(), p) {
			t.Errorf("%s is not named in the commit message and the log:\n%s\n%s", p, head.Message, logs.String())
		}
	}
	hr, err := values.ParseRelease(r.read(t, r.layout.HelmRelease("west"))[r.layout.HelmRelease("west")])
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := values.Get(hr.Values, "spec.dataStore.postgres.address"); got != "pg.example.com:5432" {
		t.Errorf("the rest of the data store went with the password: address %v", got)
	}
	for _, leak := range planted {
		if strings.Contains(logs.String(), leak) {
			t.Errorf("the log holds %q", leak)
		}
	}
	r.noSecretsAnywhere(t, planted...)
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Flux in the standby cluster applies the folder the active wrote, with no kustomization.yaml of
// ours above mp/ (Flux generates one): the HelmRepository and HelmRelease are created with the
// rendered values, and the role scales the operator's Deployments to 0 without touching the rest.
func TestFluxAppliesTheStandbyFolder(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters, Flux and a Git server, installs a Helm release")
	}
	r := startRig(t, "east")
	west := testrig.StartCluster(t, "west")
	ctx := context.Background()
	// The standby's MP objects, as its TSB operator created them (replicas 1 until the role applies).
	for _, d := range []string{"tsb", "iam"} {
		live, err := r.east.Clientset.AppsV1().Deployments("tsb").Get(ctx, d, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: d, Namespace: "tsb"}, Spec: *live.Spec.DeepCopy()}
		w.Spec.Replicas = ptr.To[int32](1)
		west.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tsb\n"))
		if _, err := west.Clientset.AppsV1().Deployments("tsb").Create(ctx, w, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := r.publisher(t, standby.RoleModeManifest).RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	flux := testrig.StartFlux(t, west)
	creds := r.srv.Credentials()
	flux.Sync(t, testrig.GitSource{Name: "fleet", URL: r.srv.URL(repo), Branch: "main", Path: "./" + r.layout.ClusterDir("west"),
		Username: string(creds["username"]), Password: string(creds["password"])})
	flux.WaitApplied(t, "fleet", rep.Commit, 2*time.Minute)

	dyn := west.Dynamic(t)
	hr, err := dyn.Resource(helmReleases).Namespace("tsb").Get(ctx, "mp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vals, _, _ := unstructured.NestedMap(hr.Object, "spec", "values")
	if _, ok := vals["secrets"]; ok || vals["image"].(map[string]any)["registry"] != "registry.west.example.com" {
		t.Errorf("applied HelmRelease values: %v", vals)
	}
	if _, err := dyn.Resource(helmRepositories).Namespace("tsb").Get(ctx, values.RepositoryName, metav1.GetOptions{}); err != nil {
		t.Error(err)
	}
	for _, d := range []string{"tsb", "iam"} {
		got, err := west.Clientset.AppsV1().Deployments("tsb").Get(ctx, d, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if *got.Spec.Replicas != 0 || got.Spec.Template.Spec.Containers[0].Image == "" {
			t.Errorf("%s after the standby role: replicas %d, image %q", d, *got.Spec.Replicas, got.Spec.Template.Spec.Containers[0].Image)
		}
	}
}

var (
	helmReleases     = schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}
	helmRepositories = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "helmrepositories"}
)
