package failovertest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/role"
)

// Seed is a pair's repository as the values loop leaves it (gitops/testdata/pair.yaml: tsb-mp,
// east active at epoch 7): east's role active (2 replicas of tsb and iam), west's standby with
// its restore job, the floating name on east with pair.yaml's TTL (30s).
func Seed(t testing.TB, l gitops.Layout) map[string][]byte {
	t.Helper()
	_, here, _, _ := runtime.Caller(0)
	pair, err := os.ReadFile(filepath.Join(filepath.Dir(here), "..", "..", "..", "gitops", "testdata", "pair.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	deps := []role.Workload{
		{Name: "tsb", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "tsb"}}},
		{Name: "iam", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "iam"}}},
	}
	east, err := role.Active("tsb", 2, deps, nil).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	west, err := role.Standby("tsb", deps, &role.Restore{Name: "tsb-restore", Schedule: "*/15 * * * *"}, false).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	dns := gitops.Header + `apiVersion: externaldns.k8s.io/v1alpha1
kind: DNSEndpoint
metadata:
  labels:
    app.kubernetes.io/managed-by: mpha
  name: mpha-floating
  namespace: mpha
spec:
  endpoints:
    - dnsName: active.tsb.example.com
      recordTTL: 30
      recordType: CNAME
      targets:
        - mp1.tsb.example.com
`
	return map[string][]byte{l.Pair(): pair, l.Role("east"): east, l.Role("west"): west, l.FloatingDNS(): []byte(dns)}
}
