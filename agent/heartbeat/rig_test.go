package heartbeat_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/heartbeat"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/internal/natsconn"
	"github.com/mpha-dev/mpha/internal/testrig"
)

const repo = "org/fleet.git"

func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts nats-server and a Git server")
	}
}

// startNATS starts a server with the pair's stream and returns it and a client that reconnects
// by itself.
func startNATS(t *testing.T) (*testrig.NATS, jetstream.JetStream) {
	t.Helper()
	n := testrig.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := natsconn.Connect(ctx, natsconn.Options{URL: n.URL, Name: "heartbeat test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := event.EnsureStream(ctx, js, pairName); err != nil {
		t.Fatal(err)
	}
	return n, js
}

// run runs p until the test ends, and fails the test if Run returns before.
func run(t *testing.T, p *heartbeat.Publisher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		select {
		case err := <-done:
			t.Errorf("%s's publisher stopped early: %v", p.Cluster, err)
			return
		default:
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s's publisher: %v", p.Cluster, err)
		}
	})
}

// last returns cluster's last heartbeat in the stream, read by the package's own Reader.
func last(ctx context.Context, js jetstream.JetStream, cluster string) (heartbeat.Beat, error) {
	r, err := heartbeat.NewReader(js, pairName, heartbeat.ReaderOptions{})
	if err != nil {
		return heartbeat.Beat{}, err
	}
	return r.Last(ctx, cluster)
}

func expect(t *testing.T, js jetstream.JetStream, cluster, role string, epoch int64) {
	t.Helper()
	testrig.Eventually(t, fmt.Sprintf("%s's heartbeat as %s at epoch %d", cluster, role, epoch), 30*time.Second,
		func(ctx context.Context) error {
			b, err := last(ctx, js, cluster)
			if err != nil {
				return err
			}
			if hb := b.Heartbeat; hb.Cluster != cluster || hb.Role != role || hb.Epoch != epoch || hb.AgentVersion == "" {
				return fmt.Errorf("last heartbeat %+v", hb)
			}
			return nil
		})
}

// Both agents' heartbeats carry the roles and epoch of pair.yaml in Git; after a commit that
// makes west active at epoch 4, the roles flip once the cached pair.yaml is refreshed.
func TestHeartbeatFollowsPairYAML(t *testing.T) {
	integration(t)
	t.Parallel()
	_, js := startNATS(t)
	srv := testrig.StartGitServer(t)
	layout, err := gitops.NewLayout("mpha")
	if err != nil {
		t.Fatal(err)
	}
	srv.CreateRepo(t, repo, "main", map[string]string{layout.Pair(): pairYAML("east", 3)})
	auth, err := gitrepo.NewAuth(srv.URL(repo), srv.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	w, err := gitrepo.New(gitrepo.Options{URL: srv.URL(repo), Auth: auth, AllowHTTPCredentials: true,
		Author: git.Signature{Name: "heartbeat test", Email: "test@mpha.invalid"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, cluster := range []string{"east", "west"} {
		run(t, &heartbeat.Publisher{Cluster: cluster, Subjects: subjects(t), JS: js, Interval: 100 * time.Millisecond,
			Pair: heartbeat.NewGitPair(w, heartbeat.GitPairOptions{Layout: layout, Refresh: 500 * time.Millisecond}),
			Facts: func(context.Context) (event.Heartbeat, error) {
				return event.Heartbeat{Kids: map[string]string{"iam-signing-key": "kid-" + cluster}}, nil
			}})
	}
	expect(t, js, "east", heartbeat.RoleActive, 3)
	expect(t, js, "west", heartbeat.RoleStandby, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if b, err := last(ctx, js, "west"); err != nil || b.Heartbeat.Kids["iam-signing-key"] != "kid-west" {
		t.Errorf("west's facts: %+v, %v", b.Heartbeat, err)
	}

	if _, err := w.Apply(ctx, gitops.Change{Files: map[string][]byte{layout.Pair(): []byte(pairYAML("west", 4))},
		Message: "Fail over to west"}); err != nil {
		t.Fatal(err)
	}
	expect(t, js, "east", heartbeat.RoleStandby, 4)
	expect(t, js, "west", heartbeat.RoleActive, 4)
}

// A NATS outage fails heartbeats (logged) without stopping the publisher;
// after the restart they resume on their own.
func TestHeartbeatResumesAfterNATSRestart(t *testing.T) {
	integration(t)
	t.Parallel()
	n, js := startNATS(t)
	var logs testrig.LogBuffer
	run(t, &heartbeat.Publisher{Cluster: "east", Subjects: subjects(t), JS: js, Interval: 100 * time.Millisecond,
		Pair:   &staticPair{p: parsePair(t, "east", 3)},
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	expect(t, js, "east", heartbeat.RoleActive, 3)

	n.Stop()
	testrig.Eventually(t, "a failed heartbeat", 30*time.Second, func(context.Context) error {
		if !strings.Contains(logs.String(), "heartbeat not published") {
			return fmt.Errorf("no failure logged yet:\n%s", logs.String())
		}
		return nil
	})
	n.Restart(t)
	restarted := time.Now()
	testrig.Eventually(t, "a heartbeat after the restart", 60*time.Second, func(ctx context.Context) error {
		b, err := last(ctx, js, "east")
		if err != nil {
			return err
		}
		if !b.At.After(restarted) {
			return fmt.Errorf("last heartbeat at %s, before the restart at %s", b.At, restarted)
		}
		return nil
	})
	testrig.Eventually(t, "the resumption logged", 30*time.Second, func(context.Context) error {
		if !strings.Contains(logs.String(), "heartbeats resumed") {
			return fmt.Errorf("not logged:\n%s", logs.String())
		}
		return nil
	})
}
