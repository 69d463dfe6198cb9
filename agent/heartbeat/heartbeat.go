// Package heartbeat publishes an agent's heartbeat (docs/design.md §2 and §6): every Interval a
// dev.mpha.heartbeat.v1 event on mpha.<pair>.heartbeat.<cluster> with the cluster's role and the
// epoch as pair.yaml says them, the agent's version, and whatever a Facts hook adds (kids, CA
// fingerprints, MP health, Postgres). pair.yaml comes from a PairSource; GitPair reads it from the
// repository at most once per refresh period. A heartbeat that cannot be published (NATS down, Git
// never read) is logged and tried again at the next tick: heartbeats never stop the agent.
//
// Reader reads them back: a cluster's last heartbeat from the pair's stream, decoded and dated by
// the stream, for every part of mpha that listens to a peer (health, failover, database, status).
//
// It imports agent/event, gitops and internal/version, never cmd.
package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/internal/version"
)

// DefaultInterval is the time between two heartbeats (docs/design.md §10's heartbeatInterval).
const DefaultInterval = 10 * time.Second

// The roles a heartbeat reports.
const (
	RoleActive  = "active"
	RoleStandby = "standby"
)

// Role is cluster's role in p: active when p says so, standby when it is the other cluster.
func Role(p *gitops.Pair, cluster string) (string, error) {
	if _, err := p.Peer(cluster); err != nil {
		return "", err
	}
	if p.Active == cluster {
		return RoleActive, nil
	}
	return RoleStandby, nil
}

// Source is the CloudEvent source of cluster's agent.
func Source(cluster string) string { return "mpha://agent/" + cluster }

// jetStream is what a Publisher needs of a jetstream.JetStream.
type jetStream interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Publisher publishes Cluster's heartbeats. Cluster, Subjects, Pair and JS are required.
type Publisher struct {
	// Cluster is this agent's cluster, a member of the pair.
	Cluster string
	// Subjects are the pair's (event.NewSubjects of the configured pair).
	Subjects event.Subjects
	Pair     PairSource
	JS       jetStream
	// Facts, if set, gives the optional fields (MP, Kids, CAFingerprints, Postgres, ...); its
	// Cluster, Role, Epoch and AgentVersion are ignored. When it fails, the heartbeat goes out
	// without them (logged): that the agent lives matters more.
	Facts func(ctx context.Context) (event.Heartbeat, error)
	// Wake, if set, subscribes to what makes a heartbeat worth sending before the next
	// interval (Flux applied a new revision: the peer's follow-through waits on that report).
	// It returns the channel and the function that ends the subscription.
	Wake func() (<-chan struct{}, func())
	// Interval defaults to DefaultInterval; each heartbeat must be published within it.
	Interval time.Duration
	// Now defaults to time.Now; it stamps the event and makes its id.
	Now    func() time.Time
	Logger *slog.Logger
}

// Beat publishes one heartbeat and returns its data.
func (p *Publisher) Beat(ctx context.Context) (event.Heartbeat, error) {
	hb, err := p.heartbeat(ctx)
	if err != nil {
		return event.Heartbeat{}, err
	}
	subject, err := p.Subjects.Heartbeat(p.Cluster)
	if err != nil {
		return event.Heartbeat{}, err
	}
	now := p.now()
	// The id only has to be unique: the cluster and the time in nanoseconds.
	e, err := event.NewHeartbeat(Source(p.Cluster), fmt.Sprintf("%s-%d", p.Cluster, now.UnixNano()), hb)
	if err != nil {
		return event.Heartbeat{}, err
	}
	e.SetTime(now)
	if _, err := event.Publish(ctx, p.JS, subject, e); err != nil {
		return event.Heartbeat{}, fmt.Errorf("heartbeat: %w", err)
	}
	return hb, nil
}

// heartbeat gathers the data: the facts, then the role and epoch from pair.yaml.
func (p *Publisher) heartbeat(ctx context.Context) (event.Heartbeat, error) {
	var hb event.Heartbeat
	if p.Facts != nil {
		facts, err := p.Facts(ctx)
		if err != nil {
			p.logger().Warn("heartbeat facts not gathered; sending without them", "cluster", p.Cluster, "error", err)
		} else {
			hb = facts
		}
	}
	pair, err := p.Pair.Pair(ctx)
	if err != nil {
		return event.Heartbeat{}, fmt.Errorf("heartbeat: pair.yaml: %w", err)
	}
	role, err := Role(pair, p.Cluster)
	if err != nil {
		return event.Heartbeat{}, fmt.Errorf("heartbeat: %w", err)
	}
	hb.Cluster, hb.Role, hb.Epoch, hb.AgentVersion = p.Cluster, role, pair.Epoch, version.Get().Version
	return hb, nil
}

// Run publishes a heartbeat at once and then every Interval until ctx ends, and returns nil then.
// A heartbeat that fails is logged (a warning when heartbeats stop, info when they resume,
// debug in between) and the next tick tries again; only a Publisher missing a required field
// makes Run return an error.
func (p *Publisher) Run(ctx context.Context) error {
	if err := p.validate(); err != nil {
		return err
	}
	interval := p.interval()
	t := time.NewTicker(interval)
	defer t.Stop()
	var wake <-chan struct{}
	if p.Wake != nil {
		ch, stop := p.Wake()
		defer stop()
		wake = ch
	}
	failing := false
	for {
		bctx, cancel := context.WithTimeout(ctx, interval)
		hb, err := p.Beat(bctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			p.logger().Warn("heartbeat not published; retrying every interval", "cluster", p.Cluster, "error", err, "interval", interval)
		case err != nil:
			p.logger().Debug("heartbeat not published", "cluster", p.Cluster, "error", err)
		case failing:
			p.logger().Info("heartbeats resumed", "cluster", p.Cluster, "role", hb.Role, "epoch", hb.Epoch)
		default:
			p.logger().Debug("heartbeat published", "cluster", p.Cluster, "role", hb.Role, "epoch", hb.Epoch)
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-wake:
		}
	}
}

func (p *Publisher) validate() error {
	var errs []error
	if err := gitops.ValidateClusterName(p.Cluster); err != nil {
		errs = append(errs, fmt.Errorf("cluster: %w", err))
	}
	if p.Subjects.Pair() == "" {
		errs = append(errs, errors.New("the pair's subjects are required"))
	}
	if p.Pair == nil || p.JS == nil {
		errs = append(errs, errors.New("a pair source and a JetStream client are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("heartbeat publisher: %w", err)
	}
	return nil
}

func (p *Publisher) interval() time.Duration {
	if p.Interval > 0 {
		return p.Interval
	}
	return DefaultInterval
}

func (p *Publisher) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Publisher) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}
