package readiness

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/gitops"
)

// ConfigMapName is the readiness status object in the agent's namespace; ReportKey its data key
// holding the Report as JSON.
const (
	ConfigMapName = "mpha-readiness"
	ReportKey     = "report.json"
)

// Event reasons, on the ConfigMap, when a check's status changes.
const (
	ReasonFailed  = "ReadinessCheckFailed"
	ReasonWarning = "ReadinessCheckWarning"
	ReasonPassed  = "ReadinessCheckPassed"
)

// maxEventMessage is what client-go's recorder keeps of a message, too.
const maxEventMessage = 1024

// metrics are the monitor's Prometheus series. A check is one series per status, 1 for the current
// one and 0 for the others (mpha_readiness_check{check="root-ca",status="fail"} == 1 is the alert):
// no magic 0.5, and a sum over checks counts them by status.
type metrics struct {
	check   *prometheus.GaugeVec
	lastRun prometheus.Gauge
	errors  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		check: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mpha_readiness_check",
			Help: "Readiness check status: 1 on the series of the current status (pass, warn or fail), 0 on the others.",
		}, []string{"check", "status"}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mpha_readiness_last_run_timestamp_seconds",
			Help: "When the last readiness round that evaluated the checks ran (Unix seconds).",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mpha_readiness_run_errors_total",
			Help: "Readiness rounds that could not gather their facts or publish their results.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.check, m.lastRun, m.errors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering readiness metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) set(rep Report) {
	for _, r := range rep.Checks {
		for _, s := range Statuses() {
			v := 0.0
			if s == r.Status {
				v = 1
			}
			m.check.WithLabelValues(r.Check, string(s)).Set(v)
		}
	}
	if rep.At != nil {
		m.lastRun.Set(float64(rep.At.UnixNano()) / 1e9)
	}
}

// publish writes the ConfigMap and emits an Event for each check whose status differs from the
// one the ConfigMap held: the ConfigMap is the memory, so a restarted agent does not repeat them.
func (m *Monitor) publish(ctx context.Context, rep Report) error {
	body, err := rep.Marshal()
	if err != nil {
		return err
	}
	cms := m.cs.CoreV1().ConfigMaps(m.opts.StatusNamespace)
	cm, err := cms.Get(ctx, ConfigMapName, metav1.GetOptions{})
	var prev map[string]Status
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: m.opts.StatusNamespace,
			Labels: map[string]string{gitops.ManagedByLabel: gitops.ManagedByValue}}}
		cm.Data = map[string]string{ReportKey: string(body)}
		if cm, err = cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating ConfigMap %s/%s: %w", m.opts.StatusNamespace, ConfigMapName, err)
		}
	case err != nil:
		return fmt.Errorf("reading ConfigMap %s/%s: %w", m.opts.StatusNamespace, ConfigMapName, err)
	default:
		prev = statuses(cm.Data[ReportKey])
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[ReportKey] = string(body)
		if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("updating ConfigMap %s/%s: %w", m.opts.StatusNamespace, ConfigMapName, err)
		}
	}
	m.events(ctx, cm, prev, rep)
	return nil
}

// statuses reads the check statuses of a stored report; an unreadable one counts as none.
func statuses(body string) map[string]Status {
	var r Report
	if json.Unmarshal([]byte(body), &r) != nil {
		return nil
	}
	out := map[string]Status{}
	for _, c := range r.Checks {
		out[c.Check] = c.Status
	}
	return out
}

// events emits one Event per changed check. A check seen for the first time counts as a change
// only when it does not pass: a starting agent announces problems, not a row of passes. Events
// are created directly (not through client-go's asynchronous recorder) so a round's Events exist
// when RunOnce returns; an Event that cannot be created is logged, the round still counts.
func (m *Monitor) events(ctx context.Context, cm *corev1.ConfigMap, prev map[string]Status, rep Report) {
	for _, r := range rep.Checks {
		was, seen := prev[r.Check]
		if was == r.Status || (!seen && r.Status == Pass) {
			continue
		}
		if !seen {
			was = "unknown"
		}
		m.log.Info("readiness check changed", "check", r.Check, "from", was, "to", r.Status, "evidence", r.Evidence)
		if err := m.emit(ctx, cm, r, was); err != nil {
			m.log.Warn("emitting readiness event", "check", r.Check, "error", err)
		}
	}
}

func (m *Monitor) emit(ctx context.Context, cm *corev1.ConfigMap, r Result, was Status) error {
	reason, typ := ReasonPassed, corev1.EventTypeNormal
	switch r.Status {
	case Fail:
		reason, typ = ReasonFailed, corev1.EventTypeWarning
	case Warn:
		reason, typ = ReasonWarning, corev1.EventTypeWarning
	}
	msg := fmt.Sprintf("%s: %s (was %s): %s", r.Check, r.Status, was, r.Evidence)
	if len(msg) > maxEventMessage {
		msg = strings.ToValidUTF8(msg[:maxEventMessage-3], "") + "..."
	}
	now := metav1.NewTime(m.opts.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: ConfigMapName + ".", Namespace: cm.Namespace,
			Labels: map[string]string{gitops.ManagedByLabel: gitops.ManagedByValue}},
		InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "ConfigMap", Name: cm.Name, Namespace: cm.Namespace,
			UID: cm.UID, ResourceVersion: cm.ResourceVersion},
		Reason: reason, Message: msg, Type: typ, Count: 1,
		FirstTimestamp: now, LastTimestamp: now,
		Source: corev1.EventSource{Component: "mpha-agent", Host: m.opts.Self},
	}
	if _, err := m.cs.CoreV1().Events(cm.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating event %s for %s: %w", reason, r.Check, err)
	}
	return nil
}
