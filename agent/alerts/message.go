// Package alerts bridges Alertmanager to mpha (docs/design.md §6, "The alert bridge"): an
// http.Handler for Alertmanager's webhook receiver that maps each firing alert, by rules, to a
// failover suggestion or a failover request. It never fails over by itself:
// a request goes through the target agent's preflight and a reviewed pull request like any other.
//
// It imports agent/event, agent/health (for the suggestion event), gitops and internal/*, never
// cmd.
package alerts

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// MaxPayload is the largest webhook body read (1 MiB). Alertmanager's max_alerts caps a
// notification's alerts; a body past this is refused with 413, not read to its end.
const MaxPayload = 1 << 20

// Version is the webhook payload version Alertmanager sends (notify/webhook).
const Version = "4"

// The statuses of a notification and of an alert.
const (
	StatusFiring   = "firing"
	StatusResolved = "resolved"
)

// Decode errors: ErrTooLarge for a body over MaxPayload (413), ErrMalformed for the rest (400).
var (
	ErrTooLarge  = errors.New("payload too large")
	ErrMalformed = errors.New("malformed payload")
)

// Message is Alertmanager's webhook payload, version 4, as its documentation and
// notify/webhook.Message (which embeds template.Data) define it. The struct is copied here rather
// than imported: github.com/prometheus/alertmanager would be a new module requiring newer
// client_golang and common than go.mod has, and notify/webhook alone pulls about 300 packages
// (grpc, OpenTelemetry, memberlist, a Kafka client) for eleven fields. Unknown fields are ignored,
// so payloads of newer Alertmanagers (routeLabels, notification_reason) still decode.
type Message struct {
	Version string `json:"version"`
	// GroupKey identifies the alert group (for logs).
	GroupKey string `json:"groupKey"`
	// TruncatedAlerts is how many alerts max_alerts left out.
	TruncatedAlerts uint64 `json:"truncatedAlerts"`
	// Status is firing when at least one alert fires, else resolved.
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	// ExternalURL is the Alertmanager's own URL.
	ExternalURL string  `json:"externalURL"`
	Alerts      []Alert `json:"alerts"`
}

// Alert is one alert of a Message.
type Alert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	// EndsAt is zero (0001-01-01T00:00:00Z) for an alert that has not ended.
	EndsAt       time.Time `json:"endsAt"`
	GeneratorURL string    `json:"generatorURL"`
	// Fingerprint identifies the alert's label set (16 hex digits).
	Fingerprint string `json:"fingerprint"`
}

// Name is the alert's alertname label.
func (a Alert) Name() string { return a.Labels["alertname"] }

// Decode reads a webhook payload: at most MaxPayload bytes of one JSON object, version 4, with
// at least one alert and known statuses. An error wraps ErrTooLarge or ErrMalformed and quotes
// nothing of the payload.
func Decode(b []byte) (Message, error) {
	if len(b) > MaxPayload {
		return Message{}, fmt.Errorf("%w: %d bytes, over %d", ErrTooLarge, len(b), MaxPayload)
	}
	var m Message
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return Message{}, fmt.Errorf("%w: %s", ErrMalformed, jsonError(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return Message{}, fmt.Errorf("%w: data after the JSON object", ErrMalformed)
	}
	if err := m.validate(); err != nil {
		return Message{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return m, nil
}

func (m Message) validate() error {
	if m.Version != Version {
		return fmt.Errorf("version %.20q, want %q", m.Version, Version)
	}
	if m.Status != StatusFiring && m.Status != StatusResolved {
		return fmt.Errorf("status %.20q, want firing or resolved", m.Status)
	}
	if len(m.Alerts) == 0 {
		return errors.New("no alerts")
	}
	for i, a := range m.Alerts {
		if a.Status != StatusFiring && a.Status != StatusResolved {
			return fmt.Errorf("alerts[%d].status %.20q, want firing or resolved", i, a.Status)
		}
	}
	return nil
}

// jsonError says what is wrong with the JSON without quoting it.
func jsonError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("invalid JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("%.60s must not be a JSON %s", typ.Field, typ.Value)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends early"
	}
	return "not a webhook payload"
}
