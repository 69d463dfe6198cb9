package runtime

import (
	"context"
	"slices"
	"strings"

	"k8s.io/client-go/kubernetes"

	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/health"
	"github.com/mpha-dev/mpha/agent/readiness"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/values"
	"github.com/mpha-dev/mpha/internal/redact"
)

// healthMonitor builds the watch on the active MP (docs/design.md §2) from health.*; nil, and a
// warning, when neither an organization (configured, or read from a committed HelmRelease) nor
// probes say what to ask the MP.
func (d *deps) healthMonitor(ctx context.Context, o Options) (*health.Monitor, error) {
	h := o.Config.Health
	org := h.Organization
	if org == "" && len(h.Probes) == 0 {
		var from string
		org, from = d.committedOrganization(ctx)
		if org == "" {
			o.Logger.Warn("health monitoring is off: set health.organization (the MP's spec.organization) or health.probes; no committed HelmRelease names it yet")
			return nil, nil
		}
		o.Logger.Info("health monitoring probes the organization of the committed HelmRelease (health.organization is not set)", "organization", org, "file", from)
	}
	opts := health.Options{
		Cluster: o.Config.Cluster, Pair: o.Config.Pair, Organization: org, Port: h.Port, SelfURL: h.SelfURL,
		Credentials: d.probeCreds, CABundle: d.probeCA,
		Timeout: h.Timeout.Duration, Interval: h.Interval.Duration, Failures: h.Failures, Recoveries: h.Recoveries,
		HeartbeatMaxAge: 3 * o.Config.HeartbeatInterval.Duration, AutoPropose: h.AutoPropose, SigningKey: d.signer,
		Registerer: o.Registry, Logger: o.Logger.With("loop", "health"),
	}
	for _, p := range h.Probes {
		opts.Probes = append(opts.Probes, health.Probe{Name: p.Name, Path: p.Path})
	}
	if h.ProbeURL != "" {
		opts.URLs = []string{h.ProbeURL}
	}
	return health.New(d.js, d.pairs, d.beats, opts)
}

// committedOrganization reads spec.organization from the HelmReleases the active rendered into
// Git (the standby's, or this cluster's own from its standby days): both MPs serve the same
// organization. "" when there is none yet or Git cannot be read; the watch is then off until the
// agent restarts or health.organization is set.
func (d *deps) committedOrganization(ctx context.Context) (org, file string) {
	l := d.layout
	snap, err := d.repo.Read(ctx, l.Pair())
	if err != nil {
		return "", ""
	}
	p, err := gitops.ParsePair(snap.Files[l.Pair()])
	if err != nil {
		return "", ""
	}
	var paths []string
	for _, c := range p.Clusters {
		paths = append(paths, l.HelmRelease(c.Name))
	}
	if snap, err = d.repo.Read(ctx, paths...); err != nil {
		return "", ""
	}
	for _, path := range paths {
		b, ok := snap.Files[path]
		if !ok {
			continue
		}
		r, err := values.ParseRelease(b)
		if err != nil {
			continue
		}
		if v, ok := values.Get(r.Values, "spec.organization"); ok {
			if s, ok := v.(string); ok && s != "" {
				return s, path
			}
		}
	}
	return "", ""
}

// facts are the heartbeat's optional fields (docs/design.md §6): what this cluster's Flux applied,
// its own MP's health while it is the active one, and the public facts of its TSB secrets (the
// signing keys' kids, the root CAs' fingerprints). A fact that cannot be read is left out; the
// heartbeat still goes.
// replication is the logical replication's last pass; nil without it.
func (d *deps) replication() *database.ReplicationState {
	if d.repl == nil {
		return nil
	}
	return d.repl.State()
}

func (d *deps) facts(cs kubernetes.Interface) func(ctx context.Context) (event.Heartbeat, error) {
	cfg := d.o.Config
	rev := d.flux.Revision
	log := d.o.Logger.With("loop", "heartbeat")
	return func(ctx context.Context) (event.Heartbeat, error) {
		var hb event.Heartbeat
		r, err := rev(ctx)
		if err != nil {
			log.Debug("heartbeat without the Flux revision", "error", err)
		}
		hb.FluxRevision = r
		if d.watch != nil {
			hb.MP = d.watch.Self()
		}
		if d.selfDSN != "" {
			if hb.Postgres, err = database.Status(ctx, d.selfDSN, database.Topology(cfg.Postgres.Topology)); err != nil {
				log.Debug("heartbeat without the database's status", "error", redact.String(err.Error()))
			}
			if st := d.replication(); hb.Postgres != nil && st != nil && st.Role != database.RoleReplica {
				hb.Postgres.Replication = st.Role
				if st.Lag != nil {
					b, s := st.Lag.Bytes, st.Lag.Seconds
					hb.Postgres.LagBytes, hb.Postgres.LagSeconds = &b, &s
				}
			}
		}
		facts, err := readiness.Gather(ctx, cs, cfg.Kubernetes.Namespace, readiness.CheckedSecrets(), d.key)
		if err != nil {
			log.Debug("heartbeat without the secrets' facts", "error", err)
			return hb, nil
		}
		var cas []string
		for name, f := range facts {
			if len(f.Kids) > 0 {
				if hb.Kids == nil {
					hb.Kids = map[string]string{}
				}
				hb.Kids[name] = strings.Join(f.Kids, ",")
			}
			if f.CA != "" {
				cas = append(cas, f.CA)
			}
		}
		slices.Sort(cas)
		hb.CAFingerprints = slices.Compact(cas)
		return hb, nil
	}
}
