package testrig_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/mpha-dev/mpha/internal/testrig"
)

const floatingName = "active.tsb.example.com"

// The MP names of the drill's pair, each on its own loopback address.
var mpAddrs = map[string]string{"mp1.tsb.example.com": "127.0.0.11", "mp2.tsb.example.com": "127.0.0.12"}

var dnsEndpoints = schema.GroupVersionResource{Group: "externaldns.k8s.io", Version: "v1alpha1", Resource: "dnsendpoints"}

// external-dns publishes a DNSEndpoint shaped like mpha's dns/floating.yaml to BIND, and moves the
// CNAME when the DNSEndpoint's target changes: real queries to named see it.
func TestExternalDNSPublishesFloatingName(t *testing.T) {
	integration(t)
	t.Parallel()
	c := testrig.StartCluster(t, "east")
	prepareDNSEndpoints(t, c)
	d := testrig.StartDNS(t, testrig.DNSOptions{A: mpAddrs, TTL: 2 * time.Second})
	start := time.Now()
	e := testrig.StartExternalDNS(t, c, d, testrig.ExternalDNSOptions{})
	t.Logf("external-dns synced %s after its start", time.Since(start).Round(time.Millisecond))

	applyFloating(t, c, "mp1.tsb.example.com", 2)
	waitFloating(t, d, "mp1.tsb.example.com", 30*time.Second)
	ans, err := d.Resolve(context.Background(), floatingName, dns.TypeCNAME)
	if err != nil || len(ans) != 1 || ans[0].Header().Ttl != 2 {
		t.Errorf("the CNAME's TTL: %v (%v), want the DNSEndpoint's recordTTL, 2", ans, err)
	}
	// Ownership is a TXT record beside the CNAME's name, not at it (a CNAME admits no other data).
	txt, err := d.Resolve(context.Background(), "cname-"+floatingName, dns.TypeTXT)
	if err != nil || len(txt) != 1 || !strings.Contains(txt[0].String(), "external-dns/owner="+testrig.DefaultDNSOwner) {
		t.Errorf("the registry's TXT record: %v (%v), want owner %s", txt, err, testrig.DefaultDNSOwner)
	}

	start = time.Now()
	applyFloating(t, c, "mp2.tsb.example.com", 2)
	waitFloating(t, d, "mp2.tsb.example.com", 30*time.Second)
	t.Logf("DNSEndpoint updated → named answers mp2: %s", time.Since(start).Round(time.Millisecond))

	// The TSIG key reaches external-dns through its environment: neither log holds it.
	for _, p := range []string{d.Process().LogPath(), e.Process().LogPath()} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), d.TSIG.Secret) {
			t.Errorf("%s holds the TSIG secret", p)
		}
	}
}

// Two clusters, one name: both clusters hold the floating DNSEndpoint (both apply it from Git),
// and each runs external-dns under the same owner id, so either alone can move the name.
func TestExternalDNSTwoClustersOneName(t *testing.T) {
	integration(t)
	t.Parallel()
	cs := testrig.StartClusters(t, "east", "west")
	east, west := cs[0], cs[1]
	for _, c := range cs {
		prepareDNSEndpoints(t, c)
		applyFloating(t, c, "mp1.tsb.example.com", 2)
	}
	d := testrig.StartDNS(t, testrig.DNSOptions{A: mpAddrs, TTL: 2 * time.Second})
	eastDNS := testrig.StartExternalDNS(t, east, d, testrig.ExternalDNSOptions{})
	waitFloating(t, d, "mp1.tsb.example.com", 30*time.Second)

	// East fails; west's Flux applies the failover's DNSEndpoint.
	east.Stop(t)
	applyFloating(t, west, "mp2.tsb.example.com", 2)

	// An external-dns with an owner id of its own finds the name owned by east's and leaves it:
	// with one owner per cluster, the name could not move while the old active is down.
	other := testrig.StartExternalDNS(t, west, d, testrig.ExternalDNSOptions{OwnerID: "west"})
	other.Synced(t, 30*time.Second)
	if target, _ := floating(context.Background(), d); target != "mp1.tsb.example.com" {
		t.Fatalf("an external-dns of another owner moved the name to %q", target)
	}
	other.Stop(t)

	start := time.Now()
	westDNS := testrig.StartExternalDNS(t, west, d, testrig.ExternalDNSOptions{})
	waitFloating(t, d, "mp2.tsb.example.com", 30*time.Second)
	t.Logf("west's external-dns started → named answers mp2: %s", time.Since(start).Round(time.Millisecond))

	// external-dns exits when it cannot list DNSEndpoints; the rig starts it again, as a pod's
	// restart policy would, so it resumes when its API server does.
	testrig.Eventually(t, "east's external-dns to be restarted", time.Minute, func(context.Context) error {
		if eastDNS.Restarts() == 0 {
			return fmt.Errorf("not restarted (see %s)", eastDNS.Process().LogPath())
		}
		return nil
	})

	// upsert-only: a cluster that does not hold the DNSEndpoint (rebuilt, or before its first
	// sync) does not delete the name; with east's external-dns stopped, no one puts it back.
	eastDNS.Stop(t)
	if err := west.Dynamic(t).Resource(dnsEndpoints).Namespace("mpha").Delete(context.Background(), "mpha-floating", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	westDNS.Synced(t, 30*time.Second)
	if target, err := floating(context.Background(), d); target != "mp2.tsb.example.com" {
		t.Errorf("after west's DNSEndpoint was deleted the name points at %q (%v), want it kept at mp2", target, err)
	}
}

// prepareDNSEndpoints installs external-dns's CRD and the namespace mpha writes the DNSEndpoint in.
func prepareDNSEndpoints(t testing.TB, c *testrig.Cluster) {
	t.Helper()
	dir, err := testrig.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyFiles(t, filepath.Join(dir, "crds", "dnsendpoints.externaldns.k8s.io.yaml"))
	c.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: mpha\n"))
}

// applyFloating applies dns/floating.yaml as mpha writes it (gitops/plan), pointing the floating
// name at target.
func applyFloating(t testing.TB, c *testrig.Cluster, target string, ttl int) {
	t.Helper()
	c.Apply(t, []byte(fmt.Sprintf(`apiVersion: externaldns.k8s.io/v1alpha1
kind: DNSEndpoint
metadata:
  labels:
    app.kubernetes.io/managed-by: mpha
  name: mpha-floating
  namespace: mpha
spec:
  endpoints:
    - dnsName: %s
      recordTTL: %d
      recordType: CNAME
      targets:
        - %s
`, floatingName, ttl, target)))
}

// floating asks named for the floating name's address, as a client would, and returns the CNAME's
// target; it is an error unless the answer is exactly that CNAME and the target's own A record.
func floating(ctx context.Context, d *testrig.DNS) (string, error) {
	ans, err := d.Resolve(ctx, floatingName, dns.TypeA)
	if err != nil {
		return "", err
	}
	if len(ans) != 2 {
		return "", fmt.Errorf("%s A: %v, want a CNAME and one A", floatingName, ans)
	}
	cname, ok1 := ans[0].(*dns.CNAME)
	a, ok2 := ans[1].(*dns.A)
	if !ok1 || !ok2 || a.Hdr.Name != cname.Target {
		return "", fmt.Errorf("%s A: %v, want a CNAME and its target's A", floatingName, ans)
	}
	target := strings.TrimSuffix(cname.Target, ".")
	if want := mpAddrs[target]; a.A.String() != want {
		return target, fmt.Errorf("%s A %s, want %s", target, a.A, want)
	}
	return target, nil
}

func waitFloating(t testing.TB, d *testrig.DNS, target string, timeout time.Duration) {
	t.Helper()
	testrig.Eventually(t, floatingName+" → "+target, timeout, func(ctx context.Context) error {
		got, err := floating(ctx, d)
		if err != nil {
			return err
		}
		if got != target {
			return fmt.Errorf("CNAME → %s", got)
		}
		return nil
	})
}
