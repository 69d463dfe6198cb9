package failover_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// standby-ready reads the target's HelmRelease from a real API server with Flux's CRD: absent
// warns, not reconciled warns, Ready=False fails with Flux's message, Ready at the current
// generation passes; Preflights joins it with other checks.
func TestStandbyReady(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := testrig.StartCluster(t, "west")
	bin, err := testrig.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyFiles(t, filepath.Join(bin, "crds", "helm.toolkit.fluxcd.io_helmreleases.yaml"))
	c.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tsb\n"))
	dyn := c.Dynamic(t)
	gvr := schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}
	epoch := failover.PreflightFunc(func(context.Context, string, string) ([]event.Check, error) {
		return []event.Check{{Name: "epoch", Result: "pass"}}, nil
	})
	p := failover.Preflights(epoch, failover.StandbyReady(dyn, "tsb", "mp"))
	check := func(want, evidence string) {
		t.Helper()
		var checks []event.Check
		testrig.Eventually(t, "standby-ready "+want, 30*time.Second, func(ctx context.Context) error {
			var err error
			checks, err = p.Run(ctx, "east", "west")
			return err
		})
		if len(checks) != 2 || checks[0].Name != "epoch" || checks[1].Name != "standby-ready" ||
			checks[1].Result != want || !strings.Contains(checks[1].Evidence, evidence) {
			t.Errorf("checks %+v, want standby-ready %s with %q", checks, want, evidence)
		}
	}
	check("warn", "no HelmRelease tsb/mp")

	hr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
		"metadata": map[string]any{"name": "mp", "namespace": "tsb"},
		"spec": map[string]any{"interval": "5m", "chart": map[string]any{"spec": map[string]any{
			"chart": "managementplane", "sourceRef": map[string]any{"kind": "HelmRepository", "name": "tsb-charts"}}}},
	}}
	created, err := dyn.Resource(gvr).Namespace("tsb").Create(ctx, hr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check("warn", "not reconciled at generation 1")

	setReady := func(status, reason, message string) {
		t.Helper()
		obj, err := dyn.Resource(gvr).Namespace("tsb").Get(ctx, "mp", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		obj.Object["status"] = map[string]any{"observedGeneration": created.GetGeneration(), "conditions": []any{map[string]any{
			"type": "Ready", "status": status, "reason": reason, "message": message,
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}}}
		if _, err := dyn.Resource(gvr).Namespace("tsb").UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setReady("False", "InstallFailed", "chart pull error: 401")
	check("fail", "not Ready (InstallFailed): chart pull error: 401")
	setReady("True", "InstallSucceeded", "Helm install succeeded")
	check("pass", "Ready at generation 1")
}
