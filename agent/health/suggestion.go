package health

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	ce "github.com/cloudevents/sdk-go/v2/event"

	"github.com/mpha-dev/mpha/agent/event"
)

// TypeFailoverSuggested is the CloudEvent type of a failover suggestion: someone should consider
// a failover; nothing acts on it by itself (a failover.requested does that). It belongs next to
// docs/design.md §6's types in agent/event, where it should move.
const TypeFailoverSuggested = "dev.mpha.failover.suggested.v1"

// SuggestedSubject carries pair's suggestions: mpha.<pair>.failover.suggested, inside the pair's
// stream (mpha.<pair>.>) and outside the failover consumer's filter (failover.requested).
func SuggestedSubject(s event.Subjects) string { return "mpha." + s.Pair() + ".failover.suggested" }

// MaxText caps a suggestion's and a request's reason: one printable line, as the Mpha-Reason
// trailer wants it (agent/event refuses a longer request reason).
const MaxText = 256

// Suggestion is the data of a failover.suggested event.
type Suggestion struct {
	// Target is the cluster that should become active.
	Target string `json:"target"`
	// From is the active cluster whose MP failed, when known.
	From string `json:"from,omitempty"`
	// Epoch is pair.yaml's epoch the suggestion was made at, when known.
	Epoch *int64 `json:"epoch,omitempty"`
	// Reason is one line (MaxText) saying why; SuggestedBy who suggests.
	Reason      string `json:"reason"`
	SuggestedBy string `json:"suggestedBy"`
	// Since is when the outage began: the first failing round, or the alert's start.
	Since time.Time `json:"since"`
	// Evidence lists what failed, one short line each.
	Evidence []string `json:"evidence,omitempty"`
	// Request is the id of the failover.requested event published with the suggestion, if any.
	Request string `json:"request,omitempty"`
}

// NewSuggestion returns a failover.suggested event from source with id (the idempotency key, sent
// as Nats-Msg-Id by event.Publish).
func NewSuggestion(source, id string, data Suggestion) (event.Event, error) {
	if err := event.ValidateID(id); err != nil {
		return event.Event{}, fmt.Errorf("new suggestion: %w", err)
	}
	e := ce.New(ce.CloudEventsVersionV1)
	e.SetID(id)
	e.SetSource(source)
	e.SetType(TypeFailoverSuggested)
	if err := e.SetData(ce.ApplicationJSON, data); err != nil {
		return event.Event{}, fmt.Errorf("new suggestion %s: data: %w", id, err)
	}
	if err := e.Validate(); err != nil {
		return event.Event{}, fmt.Errorf("new suggestion %s: %w", id, err)
	}
	return e, nil
}

// DecodeSuggestion decodes a failover.suggested event (agent/event's checks of size, JSON,
// CloudEvent, type and id) and its data.
func DecodeSuggestion(payload []byte) (event.Event, Suggestion, error) {
	e, err := event.Decode(payload, TypeFailoverSuggested)
	if err != nil {
		return event.Event{}, Suggestion{}, err
	}
	var s Suggestion
	if err := e.DataAs(&s); err != nil {
		return event.Event{}, Suggestion{}, fmt.Errorf("suggestion %s: data: %w", e.ID(), err)
	}
	if len(s.Evidence) == 0 {
		s.Evidence = nil // "evidence": [] says no more than its absence
	}
	return e, s, nil
}

// OneLine makes s one printable line of at most limit bytes: other characters become spaces, runs
// of spaces one, and a longer text is cut at a character boundary and ends in "…".
func OneLine(s string, limit int) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || !unicode.IsPrint(r)
	}), " ")
	if len(s) <= limit {
		return s
	}
	const ellipsis = "…"
	cut := max(limit-len(ellipsis), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.TrimSpace(s[:cut]) + ellipsis
}
