package alerts

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the bridge's Prometheus series.
type metrics struct {
	received *prometheus.CounterVec
	rejected *prometheus.CounterVec
	events   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mpha_alerts_received_total",
			Help: "Alerts received from Alertmanager in accepted notifications, by status (firing, resolved).",
		}, []string{"status"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mpha_alerts_rejected_total",
			Help: "Webhook notifications refused, by reason (method, unauthorized, too_large, malformed).",
		}, []string{"reason"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mpha_alerts_events_total",
			Help: "Events published for firing alerts, by action (suggest, request); re-sent alerts are not counted again.",
		}, []string{"action"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.received, m.rejected, m.events} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering alert bridge metrics: %w", err)
		}
	}
	return m, nil
}
