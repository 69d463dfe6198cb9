package event

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"regexp"
	"slices"
	"strings"
	"unicode"

	ce "github.com/cloudevents/sdk-go/v2/event"
)

// MaxPayload is the largest event mpha decodes. A failover request is a few hundred bytes; the cap
// keeps a flood of large messages from costing more than a glance.
const MaxPayload = 64 << 10

// maxText caps reason and requestedBy, which become one-line commit trailers.
const maxText = 256

// Validation is what a failover request is checked against: the pair as pair.yaml says it now, and
// who may sign.
type Validation struct {
	// Clusters are the pair's clusters; the target must be one of them.
	Clusters []string
	// Epoch is pair.yaml's current epoch; an expectedEpoch below it is stale.
	Epoch int64
	// RequireSigned refuses requests that carry no signature.
	RequireSigned bool
	// TrustedKeys verify signatures. When some are given, a signature present is always checked,
	// required or not: a forged one is refused rather than ignored.
	TrustedKeys []TrustedKey
}

// Request is a failover request that passed DecodeRequest.
type Request struct {
	Event Event
	Data  FailoverRequest
	// SignedBy is the id of the trusted key whose signature was verified; empty when unsigned.
	SignedBy string
}

// DecodeRequest decodes and validates a failover.requested event (docs/design.md §6). Every error
// is a *RejectError naming what is wrong, in this order: size, JSON, CloudEvent, type, id,
// signature, then the data (required fields, their types, target, mode, reason and requestedBy,
// expectedEpoch, force). The signature is checked before the data is read, so unsigned data is
// never judged when signatures are required. Unknown data fields are ignored.
func DecodeRequest(payload []byte, v Validation) (Request, error) {
	e, rerr := decode(payload, TypeFailoverRequested)
	if rerr != nil {
		return Request{}, rerr
	}
	signedBy, rerr := verify(e, v)
	if rerr != nil {
		return Request{}, rerr
	}
	data, rerr := requestData(e.Data())
	if rerr != nil {
		return Request{}, rerr
	}
	if rerr := data.validate(v); rerr != nil {
		return Request{}, rerr
	}
	return Request{Event: e, Data: data, SignedBy: signedBy}, nil
}

// Decode decodes a CloudEvent of type typ (size, JSON, CloudEvents 1.0, type and id checks) and
// leaves its data to the caller (Event.DataAs). Every error is a *RejectError.
func Decode(payload []byte, typ string) (Event, error) {
	e, rerr := decode(payload, typ)
	if rerr != nil {
		return Event{}, rerr
	}
	return e, nil
}

func decode(payload []byte, typ string) (Event, *RejectError) {
	if len(payload) > MaxPayload {
		return Event{}, reject(ReasonOversized, "the payload is %d bytes, over the %d-byte limit", len(payload), MaxPayload)
	}
	if rerr := checkEnvelope(payload); rerr != nil {
		return Event{}, rerr
	}
	e, rerr := sdkDecode(payload)
	if rerr != nil {
		return Event{}, rerr
	}
	if err := e.Validate(); err != nil {
		return Event{}, reject(ReasonNotCloudEvent, "invalid CloudEvent: %s", scrub(err.Error(), maxDetail/2))
	}
	if e.Type() != typ {
		return Event{}, reject(ReasonWrongType, "type %s, want %q", quote(e.Type()), typ)
	}
	if err := ValidateID(e.ID()); err != nil {
		return Event{}, reject(ReasonBadID, "%s", err.Error())
	}
	return e, nil
}

// Attribute names of CloudEvents 1.0 in JSON, and what an extension's name may be.
var (
	requiredAttrs = []string{"id", "source", "type"}
	stringAttrs   = []string{"subject", "time", "datacontenttype", "dataschema", "data_base64"}
	extensionName = regexp.MustCompile(`^[a-z0-9]+$`)
)

// checkEnvelope checks the JSON object's CloudEvents attributes with encoding/json before the SDK
// reads it: precise reasons, and none of the SDK's parser errors (which quote the payload) or
// panics (v2.16.2 panics on a data_base64 that is not a string).
func checkEnvelope(payload []byte) *RejectError {
	var attrs map[string]json.RawMessage
	if err := json.Unmarshal(payload, &attrs); err != nil {
		if syn := (*json.SyntaxError)(nil); errors.As(err, &syn) {
			return reject(ReasonNotJSON, "invalid JSON at byte %d: %s", syn.Offset, syn.Error())
		}
		return reject(ReasonNotCloudEvent, "a CloudEvent is a JSON object, got %s", jsonKind(payload))
	}
	if attrs == nil {
		return reject(ReasonNotCloudEvent, "a CloudEvent is a JSON object, got null")
	}
	sv, rerr := stringAttr(attrs, "specversion", true)
	if rerr != nil {
		return rerr
	}
	if sv != ce.CloudEventsVersionV1 {
		return reject(ReasonNotCloudEvent, "specversion %s, want %q", quote(sv), ce.CloudEventsVersionV1)
	}
	for _, name := range requiredAttrs {
		if _, rerr := stringAttr(attrs, name, true); rerr != nil {
			return rerr
		}
	}
	for _, name := range stringAttrs {
		if _, rerr := stringAttr(attrs, name, false); rerr != nil {
			return rerr
		}
	}
	_, hasData := attrs["data"]
	if _, hasBase64 := attrs["data_base64"]; hasData && hasBase64 {
		return reject(ReasonNotCloudEvent, "data and data_base64 are both present")
	}
	if rerr := checkContentType(attrs); rerr != nil {
		return rerr
	}
	return checkExtensions(attrs)
}

// stringAttr returns the attribute name, which must be a JSON string, and non-empty if required.
func stringAttr(attrs map[string]json.RawMessage, name string, required bool) (string, *RejectError) {
	raw, ok := attrs[name]
	if !ok || string(raw) == "null" {
		if required {
			return "", reject(ReasonNotCloudEvent, "attribute %q is required", name)
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", reject(ReasonNotCloudEvent, "attribute %q must be a string, got %s", name, jsonKind(raw))
	}
	if required && strings.TrimSpace(s) == "" {
		return "", reject(ReasonNotCloudEvent, "attribute %q is required and empty", name)
	}
	return s, nil
}

// checkContentType refuses data that is not JSON: every mpha event carries a JSON object.
func checkContentType(attrs map[string]json.RawMessage) *RejectError {
	var ct string
	if raw, ok := attrs["datacontenttype"]; !ok || json.Unmarshal(raw, &ct) != nil || ct == "" {
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != ce.ApplicationJSON {
		return reject(ReasonNotJSON, "datacontenttype %s: mpha events carry %s data", quote(ct), ce.ApplicationJSON)
	}
	return nil
}

// checkExtensions checks the other attributes: CloudEvents names (lower-case letters and digits)
// with a string, number or boolean value.
func checkExtensions(attrs map[string]json.RawMessage) *RejectError {
	for name, raw := range attrs {
		if name == "specversion" || name == "data" || slices.Contains(requiredAttrs, name) || slices.Contains(stringAttrs, name) {
			continue
		}
		if !extensionName.MatchString(name) {
			return reject(ReasonNotCloudEvent, "attribute name %s: lower-case letters and digits only", quote(name))
		}
		if k := jsonKind(raw); k == "an object" || k == "an array" {
			return reject(ReasonNotCloudEvent, "extension %q must be a string, number or boolean, got %s", name, k)
		}
	}
	return nil
}

// jsonKind names the kind of a JSON value for a Detail, without quoting it.
func jsonKind(raw []byte) string {
	s := strings.TrimLeftFunc(string(raw), unicode.IsSpace)
	switch {
	case s == "":
		return "nothing"
	case s[0] == '{':
		return "an object"
	case s[0] == '[':
		return "an array"
	case s[0] == '"':
		return "a string"
	case strings.HasPrefix(s, "null"):
		return "null"
	case strings.HasPrefix(s, "true"), strings.HasPrefix(s, "false"):
		return "a boolean"
	}
	return "a number"
}

// sdkDecode reads the event with the SDK. The envelope is checked already; the recover is for
// what the check does not foresee: a bad event must never take the agent down.
func sdkDecode(payload []byte) (e Event, rerr *RejectError) {
	defer func() {
		if r := recover(); r != nil {
			e, rerr = Event{}, reject(ReasonNotCloudEvent, "the CloudEvents decoder failed on it")
		}
	}()
	if err := e.UnmarshalJSON(payload); err != nil {
		return Event{}, reject(ReasonNotCloudEvent, "invalid CloudEvent: %s", sdkError(err))
	}
	return e, nil
}

// sdkError is the SDK's error without the payload excerpt its JSON parser appends.
func sdkError(err error) string {
	msg, _, _ := strings.Cut(err.Error(), ", error found in #")
	return scrub(msg, maxDetail/2)
}

// requestData decodes a request's data field by field: exact (case-sensitive) names, unknown
// fields ignored, a wrong JSON type named.
func requestData(raw []byte) (FailoverRequest, *RejectError) {
	var r FailoverRequest
	if len(raw) == 0 {
		return r, reject(ReasonMissingField, "the event has no data")
	}
	var f map[string]json.RawMessage
	if err := json.Unmarshal(raw, &f); err != nil || f == nil {
		return r, reject(ReasonNotJSON, "data must be a JSON object, got %s", dataKind(raw, err))
	}
	var mode string
	fields := []struct {
		key, want string
		into      any
		required  bool
	}{
		{"target", "a string", &r.Target, true},
		{"mode", "a string", &mode, true},
		{"reason", "a string", &r.Reason, true},
		{"requestedBy", "a string", &r.RequestedBy, true},
		{"expectedEpoch", "an integer", &r.ExpectedEpoch, false},
		{"dryRun", "a boolean", &r.DryRun, false},
		{"force", "a list of check names", &r.Force, false},
	}
	for _, fd := range fields {
		v, ok := f[fd.key]
		if !ok || string(v) == "null" {
			if fd.required {
				return r, reject(ReasonMissingField, "data.%s is required", fd.key)
			}
			continue
		}
		if err := json.Unmarshal(v, fd.into); err != nil {
			return r, reject(ReasonBadField, "data.%s must be %s, got %s", fd.key, fd.want, jsonKind(v))
		}
	}
	r.Mode = Mode(mode)
	return r, nil
}

func dataKind(raw []byte, err error) string {
	if syn := (*json.SyntaxError)(nil); errors.As(err, &syn) {
		return fmt.Sprintf("invalid JSON at byte %d (%s)", syn.Offset, syn.Error())
	}
	return jsonKind(raw)
}

// validate checks a decoded request against the pair.
func (r FailoverRequest) validate(v Validation) *RejectError {
	if !slices.Contains(v.Clusters, r.Target) {
		return reject(ReasonUnknownTarget, "target %s is not a cluster of the pair (%s)", quote(r.Target), strings.Join(v.Clusters, ", "))
	}
	if !slices.Contains(Modes(), r.Mode) {
		return reject(ReasonBadMode, "mode %s: want planned, emergency or drill", quote(string(r.Mode)))
	}
	for _, t := range []struct{ key, value string }{{"reason", r.Reason}, {"requestedBy", r.RequestedBy}} {
		if !oneLine(t.value) {
			return reject(ReasonBadField, "data.%s must be one printable line without surrounding spaces, at most %d bytes", t.key, maxText)
		}
	}
	if r.ExpectedEpoch != nil && *r.ExpectedEpoch < v.Epoch {
		return reject(ReasonStaleEpoch, "expectedEpoch %d is stale: the pair is at epoch %d", *r.ExpectedEpoch, v.Epoch)
	}
	if len(r.Force) > 0 && r.Mode != ModeEmergency {
		return reject(ReasonForceWithoutEmergency, "force (%d checks) needs mode emergency; mode is %s", len(r.Force), r.Mode)
	}
	for _, c := range r.Force {
		if !slices.Contains(CheckNames(), c) {
			return reject(ReasonUnknownCheck, "force names %s, which is not a check (%s)", quote(c), strings.Join(CheckNames(), ", "))
		}
	}
	return nil
}

// oneLine says whether s fits a commit trailer's value (gitops/trailer) and a PR body line.
func oneLine(s string) bool {
	return s != "" && len(s) <= maxText && strings.TrimSpace(s) == s &&
		strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) < 0
}
