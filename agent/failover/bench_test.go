package failover_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover/failovertest"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// BenchmarkEventToBranch: a failover request published → its branch pushed and the proposed
// status out, with the agent on a repository of 10k files and 1k commits (branch mode). Between
// iterations the branch is deleted, so each request is a new failover. Reports p50 and p99.
func BenchmarkEventToBranch(b *testing.B) {
	if testing.Short() {
		b.Skip("uses the rig's Git server and NATS")
	}
	srv := testrig.StartGitServer(b)
	srv.CreateLargeRepo(b, "org/fleet.git", 10_000, 1_000)
	r := benchRig(b, srv)
	sub := make(chan *nats.Msg, 64)
	s, err := r.nc.ChanSubscribe(r.subj.Status(), sub)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Unsubscribe()
	var lat []time.Duration
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprintf("ev-bench-%d", i)
		e, err := event.NewFailoverRequest("mpha://bench", id, planned("west"))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := event.Publish(r.ctx, r.js, r.subj.Requested(), e); err != nil {
			b.Fatal(err)
		}
		waitProposed(b, sub, id)
		lat = append(lat, time.Since(start))
		b.StopTimer()
		deleteBranch(b, r, "mpha/failover/"+id)
		b.StartTimer()
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}

type bench struct {
	*rig
	nc *nats.Conn
}

func benchRig(b *testing.B, srv *testrig.GitServer) *bench {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	n := testrig.StartNATS(b)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	r := &rig{ctx: ctx, nats: n, logs: &testrig.LogBuffer{}, url: srv.URL("org/fleet.git")}
	if r.js, err = jetstream.New(nc); err != nil {
		b.Fatal(err)
	}
	r.subj, _ = event.NewSubjects(pairName)
	r.layout, _ = gitops.NewLayout("mpha")
	if r.auth, err = gitrepo.NewAuth(r.url, srv.Credentials()); err != nil {
		b.Fatal(err)
	}
	r.repo = r.writer(b, "mpha agent (west)")
	if _, err := r.repo.Apply(ctx, gitops.Change{Files: failovertest.Seed(b, r.layout), Message: "Seed the pair",
		Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}}); err != nil {
		b.Fatal(err)
	}
	r.startAgent(b, nil)
	return &bench{rig: r, nc: nc}
}

func waitProposed(b *testing.B, sub chan *nats.Msg, id string) {
	timeout := time.After(time.Minute)
	for {
		select {
		case m := <-sub:
			e, err := event.Decode(m.Data, event.TypeFailoverStatus)
			if err != nil {
				b.Fatal(err)
			}
			var st event.FailoverStatus
			if err := e.DataAs(&st); err != nil {
				b.Fatal(err)
			}
			if st.Event != id {
				continue
			}
			switch st.Phase {
			case event.PhaseProposed:
				return
			case event.PhaseRejected, event.PhaseFailed:
				b.Fatalf("%s: %s %s", id, st.Phase, st.Message)
			}
		case <-timeout:
			b.Fatalf("no proposed status for %s", id)
		}
	}
}

func deleteBranch(b *testing.B, r *bench, branch string) {
	remote := gogit.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{r.url}})
	if err := remote.PushContext(r.ctx, &gogit.PushOptions{Auth: basicAuth(r.auth),
		RefSpecs: []config.RefSpec{config.RefSpec(":refs/heads/" + branch)}}); err != nil {
		b.Fatalf("deleting %s: %v", branch, err)
	}
}
