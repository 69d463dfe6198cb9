package fence_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/mpha-dev/mpha/agent/fence"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// west on a real API server: the old active, back while pair.yaml makes east active. Each part
// has its own namespace; the server is shared, so the parts run one after the other.
func TestDetector(t *testing.T) {
	if testing.Short() {
		t.Skip("starts kube-apiserver")
	}
	west := testrig.StartCluster(t, "west")
	cs := west.Clientset

	t.Run("a serving standby is split brain until it stops", func(t *testing.T) {
		s := newSite(t, cs, "mp-detect", "tsb", "iam")
		d, reg := newDetector(t, cs, newPairs(t, "east"), fence.Options{Namespace: s.ns})
		if st := runOnce(t, d); st.SplitBrain {
			t.Fatalf("no pods ready: %+v", st)
		}
		if v, ok := splitBrainMetric(t, reg); !ok || v != 0 {
			t.Errorf("mpha_split_brain = %v (present %v), want 0", v, ok)
		}

		s.ready(t, "tsb", 1)
		st := runOnce(t, d)
		if !st.SplitBrain || st.Active != "east" || st.Epoch != 4 || st.Since.IsZero() {
			t.Fatalf("tsb ready on the standby: %+v", st)
		}
		if diff := cmp.Diff(map[string]int32{"tsb": 1, "iam": 0}, st.Ready); diff != "" {
			t.Errorf("Ready (-want +got):\n%s", diff)
		}
		if v, _ := splitBrainMetric(t, reg); v != 1 {
			t.Errorf("mpha_split_brain = %v, want 1", v)
		}
		runOnce(t, d) // still split brain: no second Event
		want := []string{"Warning: " + st.Message}
		if diff := cmp.Diff(want, s.events(t, "tsb", fence.ReasonSplitBrain)); diff != "" {
			t.Errorf("SplitBrain Events on tsb (-want +got):\n%s", diff)
		}
		if ev := s.events(t, "iam", fence.ReasonSplitBrain); len(ev) != 0 {
			t.Errorf("iam is not ready but has SplitBrain Events %q", ev)
		}
		if s.replicas(t, "tsb") != 1 || len(st.Fenced) != 0 {
			t.Errorf("without SelfFence tsb was scaled: replicas %d, Fenced %q", s.replicas(t, "tsb"), st.Fenced)
		}

		s.ready(t, "tsb", 0)
		if st := runOnce(t, d); st.SplitBrain {
			t.Fatalf("tsb no longer ready: %+v", st)
		}
		if v, _ := splitBrainMetric(t, reg); v != 0 {
			t.Errorf("mpha_split_brain = %v after the split brain ended, want 0", v)
		}
		if ev := s.events(t, "tsb", fence.ReasonSplitBrainResolved); len(ev) != 1 || ev[0][:7] != "Normal:" {
			t.Errorf("SplitBrainResolved Events on tsb = %q, want one Normal", ev)
		}
	})

	t.Run("missing Deployments are no split brain", func(t *testing.T) {
		s := newSite(t, cs, "mp-missing")
		d, reg := newDetector(t, cs, newPairs(t, "east"), fence.Options{Namespace: s.ns, SelfFence: true})
		if st := runOnce(t, d); st.SplitBrain || len(st.Ready) != 0 {
			t.Fatalf("nothing deployed: %+v", st)
		}
		if v, ok := splitBrainMetric(t, reg); !ok || v != 0 {
			t.Errorf("mpha_split_brain = %v (present %v), want 0", v, ok)
		}
	})

	t.Run("self-fence scales the serving Deployments to 0 and nothing else", func(t *testing.T) {
		s := newSite(t, cs, "mp-fence", "tsb", "iam")
		clk := newClock()
		d, reg := newDetector(t, cs, newPairs(t, "east"), fence.Options{Namespace: s.ns, SelfFence: true,
			FenceAfter: time.Minute, Now: clk.Now})
		s.ready(t, "tsb", 1)
		before := s.get(t, "tsb")
		if st := runOnce(t, d); !st.SplitBrain || len(st.Fenced) != 0 || s.replicas(t, "tsb") != 1 {
			t.Fatalf("fenced before FenceAfter: %+v, replicas %d", st, s.replicas(t, "tsb"))
		}
		clk.Add(time.Minute)
		st := runOnce(t, d)
		if diff := cmp.Diff([]string{"tsb"}, st.Fenced); diff != "" {
			t.Errorf("Fenced (-want +got):\n%s", diff)
		}
		after := s.get(t, "tsb")
		if *after.Spec.Replicas != 0 {
			t.Fatalf("tsb replicas = %d, want 0", *after.Spec.Replicas)
		}
		want := before.Spec.DeepCopy()
		want.Replicas = ptr.To[int32](0)
		if diff := cmp.Diff(*want, after.Spec); diff != "" {
			t.Errorf("the scale-down changed more than spec.replicas (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(before.Labels, after.Labels); diff != "" {
			t.Errorf("labels changed (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(before.Annotations, after.Annotations); diff != "" {
			t.Errorf("annotations changed (-want +got):\n%s", diff)
		}
		if s.replicas(t, "iam") != 1 {
			t.Errorf("iam has no ready pods but was scaled to %d", s.replicas(t, "iam"))
		}
		if v := fenceCount(t, reg, "tsb"); v != 1 {
			t.Errorf("mpha_self_fence_total{deployment=tsb} = %v, want 1", v)
		}
		if ev := s.events(t, "tsb", fence.ReasonSelfFenced); len(ev) != 1 {
			t.Errorf("SelfFenced Events on tsb = %q, want one", ev)
		}

		// Pods still terminating: ready, but the spec asks for 0 already. Nothing more to do.
		clk.Add(time.Minute)
		if st := runOnce(t, d); !st.SplitBrain || len(st.Fenced) != 0 {
			t.Errorf("second round: %+v", st)
		}
		if v := fenceCount(t, reg, "tsb"); v != 1 {
			t.Errorf("mpha_self_fence_total{deployment=tsb} = %v after a second round, want 1", v)
		}
	})

	t.Run("a new epoch restarts the wait before fencing", func(t *testing.T) {
		s := newSite(t, cs, "mp-epoch", "tsb")
		clk, src := newClock(), newPairs(t, "east")
		d, _ := newDetector(t, cs, src, fence.Options{Namespace: s.ns, SelfFence: true, FenceAfter: time.Minute, Now: clk.Now})
		s.ready(t, "tsb", 1)
		runOnce(t, d)
		clk.Add(50 * time.Second)
		src.set(t, "east", 5, nil)
		runOnce(t, d)
		clk.Add(50 * time.Second)
		if st := runOnce(t, d); len(st.Fenced) != 0 || s.replicas(t, "tsb") != 1 {
			t.Fatalf("fenced 50s into epoch 5: %+v", st)
		}
		clk.Add(10 * time.Second)
		if st := runOnce(t, d); len(st.Fenced) != 1 || s.replicas(t, "tsb") != 0 {
			t.Fatalf("not fenced a minute into epoch 5: %+v", st)
		}
	})

	t.Run("a Deployment changed after the round read it is not scaled", func(t *testing.T) {
		s := newSite(t, cs, "mp-conflict", "tsb")
		s.ready(t, "tsb", 1)
		// Flux applies a role between the round's read and its patch.
		var once sync.Once
		cfg := rest.CopyConfig(west.Config)
		cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			return roundTripper(func(req *http.Request) (*http.Response, error) {
				if req.Method == http.MethodPatch {
					once.Do(func() { s.ready(t, "tsb", 2) })
				}
				return rt.RoundTrip(req)
			})
		}
		racy, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		clk := newClock()
		d, reg := newDetector(t, racy, newPairs(t, "east"), fence.Options{Namespace: s.ns, SelfFence: true,
			FenceAfter: time.Minute, Now: clk.Now})
		runOnce(t, d)
		clk.Add(time.Minute)
		st, err := d.RunOnce(t.Context())
		if !apierrors.IsConflict(err) || len(st.Fenced) != 0 {
			t.Fatalf("RunOnce = %+v, %v; want a conflict and nothing fenced", st, err)
		}
		if s.replicas(t, "tsb") != 1 || fenceCount(t, reg, "tsb") != 0 {
			t.Fatalf("scaled a Deployment that changed after the read: replicas %d", s.replicas(t, "tsb"))
		}
		if st := runOnce(t, d); len(st.Fenced) != 1 || s.replicas(t, "tsb") != 0 {
			t.Fatalf("the next round did not fence: %+v", st)
		}
	})

	t.Run("the active is never split brain and never scaled", func(t *testing.T) {
		s := newSite(t, cs, "mp-active", "tsb", "iam")
		clk := newClock()
		d, reg := newDetector(t, cs, newPairs(t, "west"), fence.Options{Namespace: s.ns, SelfFence: true,
			FenceAfter: time.Second, Now: clk.Now})
		s.ready(t, "tsb", 1)
		s.ready(t, "iam", 1)
		for range 3 {
			if st := runOnce(t, d); st.SplitBrain || len(st.Fenced) != 0 {
				t.Fatalf("active: %+v", st)
			}
			clk.Add(time.Hour)
		}
		if s.replicas(t, "tsb") != 1 || s.replicas(t, "iam") != 1 {
			t.Errorf("active scaled: tsb %d, iam %d", s.replicas(t, "tsb"), s.replicas(t, "iam"))
		}
		if v, _ := splitBrainMetric(t, reg); v != 0 {
			t.Errorf("mpha_split_brain = %v, want 0", v)
		}
		if ev := s.events(t, "tsb", fence.ReasonSplitBrain); len(ev) != 0 {
			t.Errorf("Events on the active: %q", ev)
		}
	})

	t.Run("an unreadable pair.yaml changes nothing", func(t *testing.T) {
		s := newSite(t, cs, "mp-unknown", "tsb")
		clk, src := newClock(), newPairs(t, "east")
		d, reg := newDetector(t, cs, src, fence.Options{Namespace: s.ns, SelfFence: true, FenceAfter: time.Minute, Now: clk.Now})
		s.ready(t, "tsb", 1)
		if st := runOnce(t, d); !st.SplitBrain {
			t.Fatalf("tsb ready on the standby: %+v", st)
		}
		errGit := errors.New("git server unreachable")
		src.set(t, "east", 4, errGit)
		clk.Add(time.Hour)
		if _, err := d.RunOnce(t.Context()); !errors.Is(err, errGit) {
			t.Fatalf("RunOnce error = %v, want %v", err, errGit)
		}
		if s.replicas(t, "tsb") != 1 {
			t.Errorf("scaled to %d without knowing the roles", s.replicas(t, "tsb"))
		}
		if v, _ := splitBrainMetric(t, reg); v != 1 {
			t.Errorf("mpha_split_brain = %v after a failed read, want it left at 1", v)
		}
		if !d.Status().SplitBrain {
			t.Errorf("Status() forgot the last known split brain: %+v", d.Status())
		}

		// A detector that never read pair.yaml publishes no value at all.
		d2, reg2 := newDetector(t, cs, src, fence.Options{Namespace: s.ns, SelfFence: true})
		if _, err := d2.RunOnce(t.Context()); err == nil {
			t.Fatal("RunOnce without pair.yaml succeeded")
		}
		if v, ok := splitBrainMetric(t, reg2); ok {
			t.Errorf("mpha_split_brain = %v before any pair.yaml, want no series", v)
		}
	})

	t.Run("Run notices a Deployment becoming ready without waiting for the interval", func(t *testing.T) {
		s := newSite(t, cs, "mp-run", "tsb", "iam")
		src := newPairs(t, "east")
		d, reg := newDetector(t, cs, src, fence.Options{Namespace: s.ns, Interval: time.Hour})
		stop := run(t, d)
		defer stop()
		testrig.Eventually(t, "the first round", 30*time.Second, func(context.Context) error {
			if d.Status().Epoch != 4 {
				return errors.New("no round yet")
			}
			return nil
		})
		s.ready(t, "iam", 2)
		// Status is stored when a round has ended, after its metric and Events.
		testrig.Eventually(t, "split brain after iam got ready", 30*time.Second, func(context.Context) error {
			if st := d.Status(); !st.SplitBrain {
				return fmt.Errorf("status %+v", st)
			}
			return nil
		})
		if v, _ := splitBrainMetric(t, reg); v != 1 {
			t.Errorf("mpha_split_brain = %v, want 1", v)
		}
		if ev := s.events(t, "iam", fence.ReasonSplitBrain); len(ev) != 1 {
			t.Errorf("SplitBrain Events on iam = %q, want one", ev)
		}
	})

	t.Run("least privilege", func(t *testing.T) {
		s := newSite(t, cs, "mp-rbac", "tsb", "iam", "postgres")
		agentNS := "mpha-rbac"
		if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNS}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		s.eventNS = agentNS
		grant(t, cs, s.ns, agentNS, "mpha-agent", "tsb", "iam")
		cfg := rest.CopyConfig(west.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: "mpha-agent"}
		agent, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		// RBAC reaches the authorizer's cache shortly after the write.
		testrig.Eventually(t, "the Role in force", 30*time.Second, func(ctx context.Context) error {
			_, err := agent.AppsV1().Deployments(s.ns).Get(ctx, "tsb", metav1.GetOptions{})
			return err
		})
		if _, err := agent.AppsV1().Deployments(s.ns).Get(t.Context(), "postgres", metav1.GetOptions{}); err == nil {
			t.Fatal("the Role grants more than tsb and iam")
		}
		clk := newClock()
		d, _ := newDetector(t, agent, newPairs(t, "east"), fence.Options{Namespace: s.ns, EventNamespace: agentNS, SelfFence: true,
			FenceAfter: time.Minute, Now: clk.Now, Interval: time.Hour})
		stop := run(t, d) // informers: list and watch by name
		defer stop()
		s.ready(t, "tsb", 1)
		testrig.Eventually(t, "split brain seen by the agent", 30*time.Second, func(context.Context) error {
			if !d.Status().SplitBrain {
				return fmt.Errorf("status %+v", d.Status())
			}
			return nil
		})
		clk.Add(time.Minute)
		s.ready(t, "iam", 1) // a change the informer sees: the next round fences both
		testrig.Eventually(t, "tsb and iam fenced", 30*time.Second, func(context.Context) error {
			for _, name := range []string{"tsb", "iam"} {
				if r := s.replicas(t, name); r != 0 {
					return fmt.Errorf("%s has %d replicas", name, r)
				}
				if ev := s.events(t, name, fence.ReasonSelfFenced); len(ev) != 1 {
					return fmt.Errorf("SelfFenced Events on %s = %q, want one", name, ev)
				}
			}
			return nil
		})
		if ev := s.events(t, "tsb", fence.ReasonSplitBrain); len(ev) != 1 {
			t.Errorf("SplitBrain Events on tsb = %q, want one", ev)
		}
		if s.replicas(t, "postgres") != 1 {
			t.Error("postgres was scaled")
		}
	})
}
