package export

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the exporter's series. They outlive an Exporter: the runtime makes a new one each
// time its cluster becomes the active one, and registers the series once.
type Metrics struct {
	lastSynced *prometheus.GaugeVec
	lastChange *prometheus.GaugeVec
	runs       *prometheus.CounterVec
}

// NewMetrics registers the exporter's series on reg (nil: nowhere).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		lastSynced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mpha_export_last_sync_timestamp_seconds",
			Help: "When a run last found the secret's sealed copy in Git current (committed by it or already there), by secret; an alert on its age catches an export that stopped.",
		}, []string{"secret", "peer"}),
		lastChange: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mpha_export_last_commit_timestamp_seconds",
			Help: "When the secret was last sealed (or resealed) and committed for the peer, by secret.",
		}, []string{"secret", "peer"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mpha_export_runs_total",
			Help: "Export runs by result (ok, error, waiting: the peer's sealing certificate is not in Git yet).",
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.lastSynced, m.lastChange, m.runs} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering export metrics: %w", err)
		}
	}
	for _, r := range []string{"ok", "error", "waiting"} {
		m.runs.WithLabelValues(r)
	}
	return m, nil
}

// record counts a run and stamps the secrets it left current in Git.
func (m *Metrics) record(peer string, rep Report, err error, now time.Time) {
	if m == nil || rep.NotActive != "" { // the standby's runs export nothing
		return
	}
	switch {
	case err == nil:
		m.runs.WithLabelValues("ok").Inc()
	case isWaiting(err):
		m.runs.WithLabelValues("waiting").Inc()
		return
	default:
		m.runs.WithLabelValues("error").Inc()
		return
	}
	ts := float64(now.Unix())
	for name, out := range rep.Secrets {
		switch out {
		case Sealed, Resealed:
			m.lastChange.WithLabelValues(name, peer).Set(ts)
			m.lastSynced.WithLabelValues(name, peer).Set(ts)
		case Unchanged:
			m.lastSynced.WithLabelValues(name, peer).Set(ts)
		}
	}
}
