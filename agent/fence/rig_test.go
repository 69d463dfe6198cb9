package fence_test

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/mpha-dev/mpha/agent/fence"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// pairs is a PairSource whose answer the test sets.
type pairs struct {
	mu    sync.Mutex
	pair  *gitops.Pair
	err   error
	calls int
}

func (p *pairs) Pair(context.Context) (*gitops.Pair, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	return p.pair, p.err
}

// set makes active the active cluster at epoch, or the source fail with err.
func (p *pairs) set(t *testing.T, active string, epoch int64, err error) {
	t.Helper()
	pair, perr := gitops.ParsePair(fmt.Appendf(nil, `apiVersion: mpha.dev/v1alpha1
kind: Pair
name: tsb-mp
floatingFQDN: active.tsb.example.com
clusters: [{name: east, mpFQDN: mp1.tsb.example.com}, {name: west, mpFQDN: mp2.tsb.example.com}]
active: %s
epoch: %d
`, active, epoch))
	if perr != nil {
		t.Fatal(perr)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pair, p.err = pair, err
	if err != nil {
		p.pair = nil
	}
}

func newPairs(t *testing.T, active string) *pairs {
	p := &pairs{}
	p.set(t, active, 4, nil)
	return p
}

// clock is a settable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)} }

// site is one management plane namespace with the tsb and iam Deployments, as TSB's operator
// creates them (one replica each, no pods: the rig has no kubelet).
type site struct {
	cs kubernetes.Interface
	ns string
	// eventNS holds the Events (default ns).
	eventNS string
}

func newSite(t *testing.T, cs kubernetes.Interface, ns string, deployments ...string) *site {
	t.Helper()
	ctx := t.Context()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range deployments {
		labels := map[string]string{"app": name, "app.kubernetes.io/part-of": "tsb"}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels,
				Annotations: map[string]string{"meta.helm.sh/release-name": "mp"}},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"checksum/config": "abc"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "example.com/tetrate/" + name + ":1.12",
						Args: []string{"serve"}, Env: []corev1.EnvVar{{Name: "LOG_LEVEL", Value: "info"}}}}},
				},
			},
		}
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return &site{cs: cs, ns: ns}
}

// ready sets what the Deployment controller would report once n pods are ready.
func (s *site) ready(t *testing.T, name string, n int32) {
	t.Helper()
	d := s.get(t, name)
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n,
		ReadyReplicas: n, AvailableReplicas: n}
	if _, err := s.cs.AppsV1().Deployments(s.ns).UpdateStatus(t.Context(), d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (s *site) get(t *testing.T, name string) *appsv1.Deployment {
	t.Helper()
	d, err := s.cs.AppsV1().Deployments(s.ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (s *site) replicas(t *testing.T, name string) int32 {
	t.Helper()
	return *s.get(t, name).Spec.Replicas
}

// events lists the Events with reason on Deployment name, as "Type: message".
func (s *site) events(t *testing.T, name, reason string) []string {
	t.Helper()
	l, err := s.cs.CoreV1().Events(cmp.Or(s.eventNS, s.ns)).List(t.Context(), metav1.ListOptions{
		FieldSelector: "involvedObject.kind=Deployment,involvedObject.namespace=" + s.ns + ",involvedObject.name=" + name + ",reason=" + reason})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range l.Items {
		out = append(out, e.Type+": "+e.Message)
	}
	return out
}

func splitBrainMetric(t *testing.T, reg *prometheus.Registry) (float64, bool) {
	t.Helper()
	return testrig.Metric(t, reg, "mpha_split_brain", map[string]string{"cluster": "west"})
}

func fenceCount(t *testing.T, reg *prometheus.Registry, deployment string) float64 {
	t.Helper()
	v, _ := testrig.Metric(t, reg, "mpha_self_fence_total", map[string]string{"cluster": "west", "deployment": deployment})
	return v
}

func newDetector(t *testing.T, cs kubernetes.Interface, src fence.PairSource, o fence.Options) (*fence.Detector, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Cluster, o.Registerer = "west", reg
	d, err := fence.New(cs, src, o)
	if err != nil {
		t.Fatal(err)
	}
	return d, reg
}

func runOnce(t *testing.T, d *fence.Detector) fence.Status {
	t.Helper()
	st, err := d.RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// run runs d until the returned stop is called, which waits for Run to return nil.
func run(t *testing.T, d *fence.Detector) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// grant gives user the agent's RBAC in ns (the package comment's list), with the Events in
// eventNS: nothing in ns is writable but the Deployments' scale.
func grant(t *testing.T, cs kubernetes.Interface, ns, eventNS, user string, deployments ...string) {
	t.Helper()
	ctx := t.Context()
	bind := func(ns string, rules ...rbacv1.PolicyRule) {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "mpha-fence", Namespace: ns}, Rules: rules}
		if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "mpha-fence", Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}}}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	bind(ns,
		rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, ResourceNames: deployments, Verbs: []string{"get", "list", "watch"}},
		rbacv1.PolicyRule{APIGroups: []string{"apps"}, Resources: []string{"deployments/scale"}, ResourceNames: deployments, Verbs: []string{"patch"}})
	bind(eventNS, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create"}})
}
