package failover

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mpha-dev/mpha/agent/event"
)

// metrics are the handler's Prometheus series.
type metrics struct {
	phases   *prometheus.CounterVec
	refused  *prometheus.CounterVec
	duration *prometheus.HistogramVec

	mu    sync.Mutex
	begun map[string]time.Time // request id → when this agent accepted it
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		phases: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mpha_failover_status_total",
			Help: "failover.status events this agent published, by phase."}, []string{"phase"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mpha_failover_rejected_total",
			Help: "Requests this agent refused to the DLQ, by reason."}, []string{"reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "mpha_failover_phase_seconds",
			Help:    "Time from accepting a failover request to each later phase.",
			Buckets: []float64{1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 14400, 86400}}, []string{"phase"}),
		begun: map[string]time.Time{},
	}
	if reg != nil {
		reg.MustRegister(m.phases, m.refused, m.duration)
	}
	// Every series exists from the start, at 0: a rate() or an alert on the DLQ sees the first
	// refusal, and a dashboard shows the phases before the first failover.
	for _, p := range event.Phases() {
		m.phases.WithLabelValues(string(p))
		if p != event.PhaseAccepted {
			m.duration.WithLabelValues(string(p))
		}
	}
	for _, r := range event.Reasons() {
		m.refused.WithLabelValues(r)
	}
	return m
}

// status counts a published status and, past accepted, how long the request took to get there.
func (m *metrics) status(st event.FailoverStatus, now time.Time) {
	m.phases.WithLabelValues(string(st.Phase)).Inc()
	m.mu.Lock()
	defer m.mu.Unlock()
	if st.Phase == event.PhaseAccepted {
		m.begun[st.Event] = now
		return
	}
	if t, ok := m.begun[st.Event]; ok {
		m.duration.WithLabelValues(string(st.Phase)).Observe(now.Sub(t).Seconds())
	}
	switch st.Phase {
	case event.PhaseVerified, event.PhaseFailed, event.PhaseRejected:
		delete(m.begun, st.Event)
	}
}
