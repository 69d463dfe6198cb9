package heartbeat_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/heartbeat"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/internal/testrig"
	"github.com/mpha-dev/mpha/internal/version"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

const pairName = "tsb-mp"

func pairYAML(active string, epoch int64) string {
	return fmt.Sprintf(gitops.Header+`apiVersion: mpha.dev/v1alpha1
kind: Pair
name: tsb-mp
floatingFQDN: active.tsb.example.com
clusters:
  - {name: east, mpFQDN: mp1.tsb.example.com}
  - {name: west, mpFQDN: mp2.tsb.example.com}
active: %s
epoch: %d
`, active, epoch)
}

func parsePair(t *testing.T, active string, epoch int64) *gitops.Pair {
	t.Helper()
	p, err := gitops.ParsePair([]byte(pairYAML(active, epoch)))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func subjects(t *testing.T) event.Subjects {
	t.Helper()
	s, err := event.NewSubjects(pairName)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// staticPair is a PairSource answering p or err.
type staticPair struct {
	mu  sync.Mutex
	p   *gitops.Pair
	err error
}

func (s *staticPair) Pair(context.Context) (*gitops.Pair, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	return s.p, nil
}

// recorder is a JetStream that keeps what is published, or fails with err.
type recorder struct {
	msgs []*nats.Msg
	err  error
}

func (r *recorder) PublishMsg(_ context.Context, m *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if r.err != nil {
		return nil, r.err
	}
	r.msgs = append(r.msgs, m)
	return &jetstream.PubAck{Stream: "MPHA_TSB_MP", Sequence: uint64(len(r.msgs))}, nil
}

func decodeHeartbeat(t *testing.T, b []byte) (event.Event, event.Heartbeat) {
	t.Helper()
	e, err := event.Decode(b, event.TypeHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	var hb event.Heartbeat
	if err := e.DataAs(&hb); err != nil {
		t.Fatal(err)
	}
	return e, hb
}

// One heartbeat: the role from pair.yaml, the epoch, the version, the facts (but not their
// Cluster, Role or Epoch), on the cluster's subject, with a valid id and the clock's time.
func TestHeartbeatBeat(t *testing.T) {
	at := time.Date(2026, 11, 20, 10, 0, 0, 123, time.UTC)
	lag := 1.5
	facts := event.Heartbeat{Cluster: "x", Role: "x", Epoch: 99, Kids: map[string]string{"iam-signing-key": "kid-1"},
		CAFingerprints: []string{"ab:cd"}, MP: &event.MPHealth{Healthy: true}, Postgres: &event.PostgresStatus{Role: "replica", LagSeconds: &lag}}
	for _, tc := range []struct {
		cluster, role string
	}{{"east", heartbeat.RoleActive}, {"west", heartbeat.RoleStandby}} {
		t.Run(tc.cluster, func(t *testing.T) {
			js := &recorder{}
			p := &heartbeat.Publisher{Cluster: tc.cluster, Subjects: subjects(t), Pair: &staticPair{p: parsePair(t, "east", 7)},
				JS: js, Now: func() time.Time { return at },
				Facts: func(context.Context) (event.Heartbeat, error) { return facts, nil }}
			hb, err := p.Beat(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			want := facts
			want.Cluster, want.Role, want.Epoch, want.AgentVersion = tc.cluster, tc.role, 7, version.Get().Version
			if diff := cmp.Diff(want, hb); diff != "" {
				t.Errorf("heartbeat (-want +got):\n%s", diff)
			}
			if len(js.msgs) != 1 || js.msgs[0].Subject != "mpha.tsb-mp.heartbeat."+tc.cluster {
				t.Fatalf("published %d messages (subject %v)", len(js.msgs), js.msgs)
			}
			e, got := decodeHeartbeat(t, js.msgs[0].Data)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("published data (-want +got):\n%s", diff)
			}
			if e.ID() != fmt.Sprintf("%s-%d", tc.cluster, at.UnixNano()) || !e.Time().Equal(at) || e.Source() != "mpha://agent/"+tc.cluster {
				t.Errorf("event id %s, time %s, source %s", e.ID(), e.Time(), e.Source())
			}
		})
	}
}

// Facts failing leaves them out; a pair that lacks the cluster, no pair.yaml, or NATS failing
// fail the heartbeat.
func TestHeartbeatBeatFailures(t *testing.T) {
	pair := parsePair(t, "east", 7)
	js := &recorder{}
	p := &heartbeat.Publisher{Cluster: "east", Subjects: subjects(t), Pair: &staticPair{p: pair}, JS: js,
		Facts: func(context.Context) (event.Heartbeat, error) { return event.Heartbeat{}, errors.New("no MP") }}
	hb, err := p.Beat(context.Background())
	if err != nil || hb.Role != heartbeat.RoleActive || hb.Kids != nil || len(js.msgs) != 1 {
		t.Errorf("facts failing: hb %+v, err %v, %d published", hb, err, len(js.msgs))
	}
	for _, tc := range []struct {
		name string
		p    heartbeat.Publisher
		want string
	}{
		{"not a member", heartbeat.Publisher{Cluster: "north", Pair: &staticPair{p: pair}, JS: &recorder{}}, `cluster "north" is not in pair tsb-mp`},
		{"no pair.yaml", heartbeat.Publisher{Cluster: "east", Pair: &staticPair{err: errors.New("git down")}, JS: &recorder{}}, "pair.yaml: git down"},
		{"NATS down", heartbeat.Publisher{Cluster: "east", Pair: &staticPair{p: pair}, JS: &recorder{err: nats.ErrNoResponders}}, "no responders"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.Subjects = subjects(t)
			if _, err := tc.p.Beat(context.Background()); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if err := (&heartbeat.Publisher{Cluster: "east"}).Run(context.Background()); err == nil {
		t.Error("Run without subjects, pair source or JetStream returned nil")
	}
}

// fakeRepo serves pair.yaml from a string and counts its reads.
type fakeRepo struct {
	mu      sync.Mutex
	content string
	err     error
	reads   int
}

func (f *fakeRepo) Read(_ context.Context, paths ...string) (gitrepo.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.err != nil {
		return gitrepo.Snapshot{}, f.err
	}
	files := map[string][]byte{}
	if f.content != "" {
		files[paths[0]] = []byte(f.content)
	}
	return gitrepo.Snapshot{Commit: fmt.Sprint("c", f.reads), Files: files}, nil
}

// GitPair reads at most once per refresh, keeps the last good copy when a read fails, and fails
// only while it has none.
func TestHeartbeatGitPairCaches(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	repo := &fakeRepo{}
	layout, _ := gitops.NewLayout("fleet/mpha")
	g := heartbeat.NewGitPair(repo, heartbeat.GitPairOptions{Layout: layout, Refresh: time.Minute, Now: func() time.Time { return now }})
	step := func(d time.Duration) { now = now.Add(d) }

	if _, err := g.Pair(ctx); err == nil || !strings.Contains(err.Error(), "fleet/mpha/pair.yaml is not in Git") {
		t.Fatalf("no pair.yaml: err = %v", err)
	}
	repo.content = pairYAML("east", 3)
	if p, err := g.Pair(ctx); err != nil || p.Active != "east" || repo.reads != 2 {
		t.Fatalf("first read: %v, %v, %d reads", p, err, repo.reads)
	}
	repo.content = pairYAML("west", 4)
	step(30 * time.Second)
	if p, _ := g.Pair(ctx); p.Active != "east" || repo.reads != 2 {
		t.Fatalf("within the refresh: active %s after %d reads, want the cached east and no read", p.Active, repo.reads)
	}
	step(31 * time.Second)
	if p, _ := g.Pair(ctx); p.Active != "west" || p.Epoch != 4 || repo.reads != 3 {
		t.Fatalf("after the refresh: active %s epoch %d after %d reads", p.Active, p.Epoch, repo.reads)
	}
	repo.err = errors.New("git down")
	step(2 * time.Minute)
	if p, err := g.Pair(ctx); err != nil || p.Active != "west" || repo.reads != 4 {
		t.Fatalf("git down: %v, %v after %d reads; want the last copy", p, err, repo.reads)
	}
	if _, _ = g.Pair(ctx); repo.reads != 4 {
		t.Errorf("a failed read was retried before the refresh period: %d reads", repo.reads)
	}
	repo.content, repo.err = "kind: Nonsense\n", nil
	step(2 * time.Minute)
	if p, err := g.Pair(ctx); err != nil || p.Active != "west" {
		t.Errorf("an invalid pair.yaml replaced the last good copy: %v, %v", p, err)
	}

	// Fresh reads now, within the refresh too, and the cached copy follows it; a failed fresh
	// read is an error, not the last copy.
	repo.content = pairYAML("east", 5)
	if p, err := g.Fresh(ctx); err != nil || p.Active != "east" || p.Epoch != 5 {
		t.Fatalf("Fresh: %v, %v", p, err)
	}
	if p, _ := g.Pair(ctx); p.Epoch != 5 {
		t.Errorf("after Fresh the cached copy is at epoch %d", p.Epoch)
	}
	repo.err = errors.New("git down")
	if _, err := g.Fresh(ctx); err == nil {
		t.Error("a failed fresh read served the last copy")
	}
}
