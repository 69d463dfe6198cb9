package event

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	ce "github.com/cloudevents/sdk-go/v2/event"
)

// Event is a CloudEvent, the CloudEvents Go SDK's type; the alias spares callers a second import
// named event.
type Event = ce.Event

// ContentType is the NATS header value of a CloudEvent in JSON structured mode.
const ContentType = "application/cloudevents+json"

// MaxIDLength caps an event id.
const MaxIDLength = 128

// idRE is what mpha accepts as an event id. CloudEvents allows any string, but a request's id
// names its branch (mpha/failover/<id>), its Mpha-Event trailer and its Nats-Msg-Id: so one
// path segment that Git accepts in a ref, that needs no quoting anywhere, and that a UUID fits.
var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidateID checks an event id: 1 to MaxIDLength letters, digits, '.', '_' or '-', starting
// with a letter or digit, without ".." and not ending in '.' or ".lock" (Git's ref rules).
func ValidateID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("event id is empty")
	case len(id) > MaxIDLength:
		return fmt.Errorf("event id is %d bytes, over %d", len(id), MaxIDLength)
	case !idRE.MatchString(id):
		return fmt.Errorf("event id %s: only letters, digits, '.', '_' and '-', starting with a letter or digit", quote(id))
	case strings.Contains(id, ".."), strings.HasSuffix(id, "."), strings.HasSuffix(id, ".lock"):
		return fmt.Errorf("event id %s: no \"..\", and no '.' or \".lock\" at the end (it names a Git branch)", quote(id))
	}
	return nil
}

// NewFailoverRequest returns a failover.requested event from source (who asks: the CLI, an alert
// bridge) with id, the idempotency key. It has no time; set one with SetTime if wanted.
func NewFailoverRequest(source, id string, data FailoverRequest) (Event, error) {
	return newEvent(source, id, TypeFailoverRequested, data)
}

// NewFailoverStatus returns a failover.status event.
func NewFailoverStatus(source, id string, data FailoverStatus) (Event, error) {
	return newEvent(source, id, TypeFailoverStatus, data)
}

// NewHeartbeat returns a heartbeat event.
func NewHeartbeat(source, id string, data Heartbeat) (Event, error) {
	return newEvent(source, id, TypeHeartbeat, data)
}

// NewRejected returns a rejected event for the DLQ; data is capped and scrubbed first, so a
// rejection never repeats a large or secret-looking part of what it refuses.
func NewRejected(source, id string, data Rejected) (Event, error) {
	return newEvent(source, id, TypeRejected, data.scrubbed())
}

func newEvent(source, id, typ string, data any) (Event, error) {
	if err := ValidateID(id); err != nil {
		return Event{}, fmt.Errorf("new %s event: %w", typ, err)
	}
	e := ce.New(ce.CloudEventsVersionV1)
	e.SetID(id)
	e.SetSource(source)
	e.SetType(typ)
	if err := e.SetData(ce.ApplicationJSON, data); err != nil {
		return Event{}, fmt.Errorf("new %s event %s: data: %w", typ, id, err)
	}
	if err := e.Validate(); err != nil {
		return Event{}, fmt.Errorf("new %s event %s: %w", typ, id, err)
	}
	return e, nil
}

// Encode returns e in CloudEvents JSON structured mode, the bytes a NATS message carries.
func Encode(e Event) ([]byte, error) {
	if e.Context == nil {
		return nil, errors.New("encode event: the event has no context (use a New* constructor)")
	}
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID(), err)
	}
	b, err := e.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", e.ID(), err)
	}
	return b, nil
}

// scrubbed returns r with every text capped and scrubbed (see Rejected).
func (r Rejected) scrubbed() Rejected {
	if ValidateID(r.Event) != nil {
		r.Event = scrub(r.Event, MaxIDLength)
	}
	return Rejected{
		Event:   r.Event,
		Subject: scrub(r.Subject, maxSubject),
		Reason:  scrub(r.Reason, maxQuote),
		Detail:  scrub(r.Detail, maxDetail),
	}
}
