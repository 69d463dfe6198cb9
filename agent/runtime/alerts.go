package runtime

import (
	"net/http"

	"github.com/mpha-dev/mpha/agent/alerts"
	"github.com/mpha-dev/mpha/agent/event"
)

// alertBridge builds the Alertmanager webhook receiver (alerts.*); nil when disabled.
func (d *deps) alertBridge(o Options) (*alerts.Handler, error) {
	a := o.Config.Alerts
	if !a.Enabled {
		return nil, nil
	}
	opts := alerts.Options{Cluster: o.Config.Cluster, Pair: o.Config.Pair, Remember: a.Remember.Duration, SigningKey: d.signer,
		Auth: d.alertAuth, Registerer: o.Registry, Logger: o.Logger.With("loop", "alerts")}
	for _, r := range a.Rules {
		opts.Rules = append(opts.Rules, alerts.Rule{Alert: r.Alert, Labels: r.Labels, Action: alerts.Action(r.Action),
			Target: r.Target, Mode: event.Mode(r.Mode)})
	}
	return alerts.New(d.js, opts)
}

// bridge serves the alert bridge of the leader; a follower (or a leader still setting up)
// answers 503, which Alertmanager retries.
func (m *metrics) bridge(w http.ResponseWriter, r *http.Request) {
	h := m.alerts.Load()
	if h == nil {
		w.Header().Set("Retry-After", "5")
		http.Error(w, "this replica is not the acting agent; retry", http.StatusServiceUnavailable)
		return
	}
	h.ServeHTTP(w, r)
}
