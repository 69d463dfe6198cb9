package testrig

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// DefaultDNSOwner is the TXT registry's owner id StartExternalDNS uses unless told otherwise. Every
// cluster of a pair runs external-dns with the same id: see the package documentation for why.
const DefaultDNSOwner = "mpha-rig"

// ExternalDNSOptions configure StartExternalDNS.
type ExternalDNSOptions struct {
	// OwnerID is --txt-owner-id: external-dns changes only the records its TXT registry marks
	// with this id (default DefaultDNSOwner).
	OwnerID string
	// Policy is --policy: "upsert-only" (default: never deletes; a cluster that does not hold
	// the DNSEndpoint yet cannot remove the name the other publishes) or "sync".
	Policy string
	// Interval is --interval, between two syncs (default 500ms). external-dns looks once a second
	// whether a sync is due, and with 1s the look falls just short of it every other time: 500ms
	// syncs at every look, once a second. Each sync lists the DNSEndpoints and transfers the
	// zone: cheap. (--events would not be sooner: external-dns schedules an event's sync up to
	// 5s later.)
	Interval time.Duration
	// Namespace limits the DNSEndpoints read ("" = every namespace).
	Namespace string
}

// ExternalDNS is external-dns (bin/external-dns, `make tools`) run out of cluster against one rig
// cluster: DNSEndpoint objects (--source=crd) published by RFC 2136 updates to the rig's named,
// signed with its TSIG key. As a pod's restart policy would, the rig starts it again when it
// exits unasked: external-dns exits on any failed sync, e.g. while its API server is down.
type ExternalDNS struct {
	cluster *Cluster
	metrics string // host:port of its /healthz and /metrics

	proc *Process

	mu       sync.Mutex
	stop     chan struct{} // closed to end supervision (nil when not supervising)
	stopped  chan struct{} // closed when the supervisor has returned
	restarts int
}

// StartExternalDNS starts external-dns for c against d and waits until its first sync (the
// DNSEndpoint CRD must be in c: it lists them at every sync); it stops when t ends.
func StartExternalDNS(t testing.TB, c *Cluster, d *DNS, o ExternalDNSOptions) *ExternalDNS {
	t.Helper()
	if o.OwnerID == "" {
		o.OwnerID = DefaultDNSOwner
	}
	if o.Policy == "" {
		o.Policy = "upsert-only"
	}
	if o.Interval == 0 {
		o.Interval = 500 * time.Millisecond
	}
	e := &ExternalDNS{cluster: c, metrics: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	args := []string{
		"--kubeconfig", c.Kubeconfig,
		"--source=crd", "--crd-source-apiversion=externaldns.k8s.io/v1alpha1", "--crd-source-kind=DNSEndpoint",
		"--provider=rfc2136",
		"--rfc2136-host", d.Host, "--rfc2136-port", strconv.Itoa(d.Port), "--rfc2136-zone", d.Zone,
		"--rfc2136-tsig-keyname", d.TSIG.Name, "--rfc2136-tsig-secret-alg", d.TSIG.Algorithm,
		// The provider reads the zone by transfer, which named allows only when signed.
		"--rfc2136-tsig-axfr",
		"--domain-filter", d.Zone,
		// The registry's TXT record for a CNAME goes to cname-<name>: a CNAME may not share its
		// name with other data, and this keeps it alone.
		"--registry=txt", "--txt-owner-id", o.OwnerID,
		"--policy", o.Policy,
		"--interval", o.Interval.String(),
		"--metrics-address", e.metrics, // the default, :7979, is every interface and one port for all
		"--log-format=text", "--log-level=info",
	}
	if o.Namespace != "" {
		args = append(args, "--namespace", o.Namespace)
	}
	dir := t.TempDir()
	e.proc = startProcess(t, procSpec{
		name: "external-dns-" + c.Name, path: Bin(t, "external-dns"), args: args, logDir: logDir(t, dir), dir: dir,
		// From the environment, not the command line the log's first line repeats (external-dns
		// reads EXTERNAL_DNS_<FLAG>; its own config line redacts it).
		env: []string{"EXTERNAL_DNS_RFC2136_TSIG_SECRET=" + d.TSIG.Secret},
	})
	// Registered after startProcess's cleanup, so it runs first: no restart after the stop.
	t.Cleanup(e.unsupervise)
	e.supervise()
	e.waitSynced(t, time.Minute)
	return e
}

// waitSynced waits until external-dns reports a successful sync (read the DNSEndpoints, read the
// zone, sent its changes).
func (e *ExternalDNS) waitSynced(t testing.TB, timeout time.Duration) {
	t.Helper()
	e.syncedSince(t, time.Time{}, timeout)
}

// Synced waits until a sync that began after the call has succeeded: what the cluster held
// before the call is then in DNS (unless another writer changed it since).
func (e *ExternalDNS) Synced(t testing.TB, timeout time.Duration) {
	t.Helper()
	e.syncedSince(t, time.Now(), timeout)
}

func (e *ExternalDNS) syncedSince(t testing.TB, since time.Time, timeout time.Duration) {
	t.Helper()
	waitFor(t, "external-dns "+e.cluster.Name+" to sync", timeout, nil, func(ctx context.Context) error {
		g, err := e.gauges(ctx)
		if err != nil {
			return err
		}
		// A run stamps its start as the last reconcile and, when it succeeds, its end as the
		// last sync: the latest run began after since and has succeeded.
		began, synced := g["external_dns_controller_last_reconcile_timestamp_seconds"], g["external_dns_controller_last_sync_timestamp_seconds"]
		if synced.IsZero() || began.IsZero() || !began.After(since) || synced.Before(began) {
			return fmt.Errorf("no successful sync begun after %s: last began %s, last succeeded %s (see %s)",
				since.Format(time.RFC3339Nano), began.Format(time.RFC3339Nano), synced.Format(time.RFC3339Nano), e.proc.LogPath())
		}
		return nil
	})
}

// gauges reads external-dns's timestamp gauges from /metrics (zero time for a gauge at 0).
func (e *ExternalDNS) gauges(ctx context.Context) (map[string]time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.metrics+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading external-dns's metrics: %w", err)
	}
	out := map[string]time.Time{}
	for name, f := range families {
		if !strings.HasSuffix(name, "_timestamp_seconds") || len(f.GetMetric()) != 1 || f.GetMetric()[0].GetGauge() == nil {
			continue
		}
		if secs := f.GetMetric()[0].GetGauge().GetValue(); secs != 0 {
			out[name] = time.Unix(0, int64(secs*float64(time.Second)))
		} else {
			out[name] = time.Time{}
		}
	}
	return out, nil
}

// supervise restarts the process whenever it exits while supervised, after a back-off that
// doubles up to 10s (kubelet's crash-loop back-off, shortened for tests).
func (e *ExternalDNS) supervise() {
	stop, stopped := make(chan struct{}), make(chan struct{})
	e.mu.Lock()
	e.stop, e.stopped = stop, stopped
	e.mu.Unlock()
	go func() {
		defer close(stopped)
		backoff := time.Second
		for {
			began := time.Now()
			select {
			case <-stop:
				return
			case <-e.proc.Done():
			}
			if time.Since(began) > time.Minute {
				backoff = time.Second // it ran fine for a while: this is a new failure
			}
			select {
			case <-stop:
				return
			case <-time.After(backoff):
			}
			if err := e.proc.start(); err != nil {
				return // the log says why; Synced and the test's assertions will
			}
			e.mu.Lock()
			e.restarts++
			e.mu.Unlock()
			backoff = min(2*backoff, 10*time.Second)
		}
	}()
}

// unsupervise ends supervision and waits for the supervisor: a process it started after that
// is stopped by whoever stops the process next.
func (e *ExternalDNS) unsupervise() {
	e.mu.Lock()
	stop, stopped := e.stop, e.stopped
	e.stop, e.stopped = nil, nil
	e.mu.Unlock()
	if stop == nil {
		return
	}
	close(stop)
	<-stopped
}

// Stop stops external-dns and keeps it stopped (an outage of the cluster's external-dns).
func (e *ExternalDNS) Stop(t testing.TB) {
	t.Helper()
	e.unsupervise()
	if err := e.proc.Stop(); err != nil {
		t.Fatal(err)
	}
}

// Start starts a stopped external-dns again and waits for its first sync.
func (e *ExternalDNS) Start(t testing.TB) {
	t.Helper()
	if err := e.proc.start(); err != nil {
		t.Fatal(err)
	}
	e.supervise()
	e.waitSynced(t, time.Minute)
}

// Restarts is how many times the rig started external-dns again after it exited unasked.
func (e *ExternalDNS) Restarts() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.restarts
}

// Process is external-dns's current process, for figures. Stop it with Stop, not Process().Stop:
// the rig would start it again.
func (e *ExternalDNS) Process() *Process { return e.proc }
