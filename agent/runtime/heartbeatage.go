package runtime

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mpha-dev/mpha/agent/heartbeat"
)

// heartbeatAges exposes mpha_heartbeat_age_seconds{cluster}: how old each cluster's last
// heartbeat in the stream is, read at scrape time, so the series ages even while nothing arrives
// (a dead peer's age grows; a cluster with no heartbeat has no series, for absent() alerts).
type heartbeatAges struct {
	desc    *prometheus.Desc
	beats   *heartbeat.Reader
	pairs   heartbeat.PairSource
	now     func() time.Time
	timeout time.Duration
}

func (h *heartbeatAges) Describe(ch chan<- *prometheus.Desc) { ch <- h.desc }

func (h *heartbeatAges) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	p, err := h.pairs.Pair(ctx)
	if err != nil {
		return
	}
	for _, c := range p.Clusters {
		b, err := h.beats.Last(ctx, c.Name)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(h.desc, prometheus.GaugeValue, h.now().Sub(b.At).Seconds(), c.Name)
	}
}
