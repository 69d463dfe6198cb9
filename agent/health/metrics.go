package health

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the monitor's Prometheus series. mpha_failover_suggested == 1 is the alert to route
// to a person; mpha_active_mp_up == 0 with mpha_active_mp_reachable == 0 is "down", and
// mpha_active_mp_up == 1 with mpha_active_mp_reachable == 0 is "I cannot reach it".
type metrics struct {
	up        *prometheus.GaugeVec
	self      prometheus.Gauge
	reachable *prometheus.GaugeVec
	suggested *prometheus.GaugeVec
	failures  *prometheus.CounterVec
	errors    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mpha_active_mp_up",
			Help: "1 when the active management plane (label active) is up as far as the standby knows: its probes pass, or they fail but the active agent's fresh heartbeat reports its MP healthy; 0 when it is down.",
		}, []string{"active"}),
		self: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mpha_own_mp_up",
			Help: "While this cluster is the active one: 1 when its own management plane passes every probe (what its heartbeat tells the standby), 0 when not.",
		}),
		reachable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mpha_active_mp_reachable",
			Help: "1 when the standby's probes of the active management plane pass on at least one target, 0 when none does.",
		}, []string{"active"}),
		suggested: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mpha_failover_suggested",
			Help: "1 while this agent suggests failing over to its cluster (label cluster) because the active management plane is down; 0 otherwise.",
		}, []string{"cluster"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mpha_active_mp_probe_failures_total",
			Help: "Probes of the active management plane that failed, by target (floating, instance, url) and probe.",
		}, []string{"target", "probe"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mpha_health_round_errors_total",
			Help: "Health rounds that could not read pair.yaml or publish their suggestion or request.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.up, m.self, m.reachable, m.suggested, m.failures, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering health metrics: %w", err)
		}
	}
	return m, nil
}

// round records a round's verdict on active's MP.
func (m *metrics) round(active string, r Round) {
	m.up.Reset()
	m.reachable.Reset()
	if r.Verdict == VerdictSkipped {
		if r.Self != nil {
			m.self.Set(boolValue(r.Self.Healthy))
		}
		return
	}
	m.self.Set(0)
	m.up.WithLabelValues(active).Set(boolValue(r.Verdict != VerdictDown))
	m.reachable.WithLabelValues(active).Set(boolValue(r.Verdict == VerdictHealthy))
	for _, res := range r.Results {
		if !res.OK() {
			m.failures.WithLabelValues(res.Target, res.Probe).Inc()
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
