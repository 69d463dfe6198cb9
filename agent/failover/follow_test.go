package failover_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover"
	"github.com/mpha-dev/mpha/agent/failover/failovertest"
	"github.com/mpha-dev/mpha/agent/flux"
	"github.com/mpha-dev/mpha/agent/heartbeat"
	"github.com/mpha-dev/mpha/gitops/audit"
	"github.com/mpha-dev/mpha/internal/notify"
	"github.com/mpha-dev/mpha/internal/testrig"
)

var dnsEndpoints = schema.GroupVersionResource{Group: "externaldns.k8s.io", Version: "v1alpha1", Resource: "dnsendpoints"}

// The whole life of a failover on real parts: the pull request on Gitea is merged by a person
// (the test), west's Flux applies the merge, east reports it applied in a heartbeat, the probe
// answers: statuses accepted … verified arrive in order. Then `audit` rebuilds it from a fresh
// clone's git log alone. Flux's interval and the follow-through's are an hour: the merge is
// applied because the agent nudged Flux, and seen applied because the Kustomization's watch and
// east's heartbeat woke the follow-through.
func TestFollowThroughToVerified(t *testing.T) {
	t.Parallel()
	r, _ := startRig(t, rigOptions{gitea: true})
	c := testrig.StartCluster(t, "west")
	bin, err := testrig.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	c.ApplyFiles(t, filepath.Join(bin, "crds", "dnsendpoints.externaldns.k8s.io.yaml"))
	c.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: mpha\n"))
	fluxRig := testrig.StartFlux(t, c)
	fluxRig.Sync(t, testrig.GitSource{Name: "mpha", URL: r.url, Branch: "main", Path: "./mpha/dns", Interval: time.Hour,
		Username: r.auth.Username, Password: r.auth.Password})
	fluxRig.WaitApplied(t, "mpha", r.base, 2*time.Minute)
	watch, err := flux.New(c.Dynamic(t), testrig.FluxNamespace, "mpha", nil)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = watch.Run(r.ctx) }()
	var arrivals notify.Broadcast
	go func() { _ = heartbeat.Arrivals(r.ctx, r.js.Conn(), r.subj, &arrivals) }()

	var probes atomic.Int32
	probe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		probes.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(probe.Close)
	r.startAgent(t, func(o *failover.Options) {
		o.Follow = failover.FollowOptions{Interval: time.Hour, MergeInterval: 500 * time.Millisecond, ProbeURL: probe.URL,
			Revision: failover.Revisions("west", watch.Revision, failover.HeartbeatRevision(r.heartbeats(t), time.Minute)),
			Wake:     func() (<-chan struct{}, func()) { return notify.Merge(watch.Changed(), &arrivals) },
			Nudge:    func(ctx context.Context) { watch.NudgeNow(ctx, "merged", nil) }}
	})
	// east is up and reports what its Flux applied: the seed, for now.
	r.heartbeat(t, "east", "main@sha1:"+r.base)

	r.publish(t, request(t, "ev-life", planned("west")))
	sts := r.waitPhase(t, "ev-life", event.PhaseProposed, time.Minute)
	pr := sts[len(sts)-1].PR
	number, err := strconv.Atoi(pr[strings.LastIndex(pr, "/")+1:])
	if err != nil {
		t.Fatalf("PR URL %s: %v", pr, err)
	}
	time.Sleep(2 * time.Second) // nothing may happen before the merge
	if p := failovertest.Phases(r.statuses(t, "ev-life")); p != "accepted,preflight,proposed" {
		t.Fatalf("before the merge: %s", p)
	}
	if err := r.forge.Merge(r.ctx, number, "Merge the failover"); err != nil {
		t.Fatal(err)
	}
	merged := r.waitPhase(t, "ev-life", event.PhaseMerged, time.Minute)
	head := merged[len(merged)-1].Commit
	fluxRig.WaitApplied(t, "mpha", head, 2*time.Minute) // by the nudge: Flux's interval is an hour
	if p := failovertest.Phases(r.statuses(t, "ev-life")); strings.Contains(p, "applied") {
		t.Fatalf("applied before east reported the merge: %s", p)
	}
	r.heartbeat(t, "east", "main@sha1:"+head)
	sts = r.waitPhase(t, "ev-life", event.PhaseVerified, 2*time.Minute)
	if p := failovertest.Phases(sts); p != "accepted,preflight,proposed,merged,applied,verified" {
		t.Errorf("phases %s", p)
	}
	applied := sts[4]
	if !strings.Contains(applied.Message, "west applied main@sha1:"+head) || !strings.Contains(applied.Message, "east applied main@sha1:"+head) {
		t.Errorf("applied: %s", applied.Message)
	}
	if probes.Load() == 0 {
		t.Error("verified without probing")
	}
	got, err := c.Dynamic(t).Resource(dnsEndpoints).Namespace("mpha").Get(r.ctx, "mpha-floating", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	eps, _, _ := unstructured.NestedSlice(got.Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["targets"].([]any)[0] != "mp2.tsb.example.com" || eps[0].(map[string]any)["recordTTL"] != int64(30) {
		t.Errorf("the floating name in west's cluster: %v; want mp2 with pair.yaml's TTL, 30", eps)
	}

	// `mpha audit` from a fresh clone: the failover, who, why, epoch, the PR and when it merged.
	repo, err := audit.Open(r.ctx, r.url, basicAuth(r.auth), "main")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := audit.Log(r.ctx, repo, audit.Options{Kinds: []string{"failover"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("audit: %+v", entries)
	}
	e := entries[0]
	if e.Event != "ev-life" || e.Epoch != 8 || e.From != "east" || e.To != "west" || e.Mode != "planned" ||
		e.RequestedBy != "alice@example.com" || e.Reason != "east region degraded" || e.PR != "#"+strconv.Itoa(number) ||
		e.MergeCommit != head || e.Merged.IsZero() {
		t.Errorf("audit entry %+v", e)
	}
}

// heartbeat publishes cluster's heartbeat with the Flux revision it applied.
func (r *rig) heartbeat(t *testing.T, cluster, revision string) {
	t.Helper()
	e, err := event.NewHeartbeat("mpha://agent/"+cluster, cluster+"-"+strconv.FormatInt(time.Now().UnixNano(), 10),
		event.Heartbeat{Cluster: cluster, Role: "active", Epoch: 7, FluxRevision: revision})
	if err != nil {
		t.Fatal(err)
	}
	subject, err := r.subj.Heartbeat(cluster)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := event.Publish(context.Background(), r.js, subject, e); err != nil {
		t.Fatal(err)
	}
}
