package event

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mpha-dev/mpha/internal/redact"
)

// Reason codes of a RejectError: machine-readable, stable, and what the rejected event's reason
// says.
const (
	ReasonOversized             = "oversized"               // payload over MaxPayload
	ReasonNotJSON               = "not-json"                // payload or data not JSON, or data not a JSON object
	ReasonNotCloudEvent         = "not-cloudevent"          // not a CloudEvents 1.0 JSON event
	ReasonWrongType             = "wrong-type"              // another event type on this subject
	ReasonBadID                 = "bad-id"                  // an id mpha cannot use (ValidateID)
	ReasonUnsigned              = "unsigned"                // signatures required, none present
	ReasonBadSignature          = "bad-signature"           // signature malformed, unknown key or not verified
	ReasonMissingField          = "missing-field"           // a required data field is absent or null
	ReasonBadField              = "bad-field"               // a data field of the wrong JSON type or form
	ReasonUnknownTarget         = "unknown-target"          // target is not a cluster of the pair
	ReasonBadMode               = "bad-mode"                // mode is not planned, emergency or drill
	ReasonStaleEpoch            = "stale-epoch"             // expectedEpoch below the current epoch
	ReasonForceWithoutEmergency = "force-without-emergency" // force given in another mode
	ReasonUnknownCheck          = "unknown-check"           // force names no check of CheckNames
)

// Reason codes of the handling agent's refusals, after a request decoded and validated: the
// pair's state or the preflight checks refuse it.
const (
	ReasonAlreadyActive    = "already-active"    // the target is the active cluster already
	ReasonPreflightFailed  = "preflight-failed"  // a check failed and was not forced
	ReasonPlanFailed       = "plan-failed"       // the repository's files do not make a failover commit
	ReasonRetriesExhausted = "retries-exhausted" // every delivery failed for a transient reason
	ReasonStepFailed       = "step-failed"       // a step before the commit (the database sync) failed
)

// HandlerReasons lists the handling agent's reason codes.
func HandlerReasons() []string {
	return []string{ReasonAlreadyActive, ReasonPreflightFailed, ReasonPlanFailed, ReasonRetriesExhausted, ReasonStepFailed}
}

// Reasons lists the reason codes.
func Reasons() []string {
	return []string{
		ReasonOversized, ReasonNotJSON, ReasonNotCloudEvent, ReasonWrongType, ReasonBadID,
		ReasonUnsigned, ReasonBadSignature, ReasonMissingField, ReasonBadField, ReasonUnknownTarget,
		ReasonBadMode, ReasonStaleEpoch, ReasonForceWithoutEmergency, ReasonUnknownCheck,
		ReasonAlreadyActive, ReasonPreflightFailed, ReasonPlanFailed, ReasonRetriesExhausted, ReasonStepFailed,
	}
}

// RejectError is why an event is refused for good: redelivering it cannot help, so the consumer
// publishes it to the DLQ (Reject) and terminates the message. Detail names the problem for a
// person; any value it quotes from the event is capped and scrubbed (quote).
type RejectError struct {
	// Reason is one of the Reason* codes.
	Reason string
	Detail string
}

func (e *RejectError) Error() string { return "event rejected (" + e.Reason + "): " + e.Detail }

func reject(reason, format string, args ...any) *RejectError {
	return &RejectError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Caps on what a rejection repeats of what it refuses.
const (
	maxQuote   = 64
	maxDetail  = 512
	maxSubject = 256
)

// What looks like a credential is withheld, never repeated: PEM armour, well-known token
// prefixes, JWTs and key=value credentials always; long runs of base64 or hex when they mix
// letters and digits, as keys and tokens do and no cluster, mode or check name does.
var (
	credential = regexp.MustCompile(`(?i)-----BEGIN[^-]*-----|\b(?:ghp|gho|ghs|ghu|github_pat|glpat|xox[abpr])[-_][A-Za-z0-9_-]+|\bAKIA[0-9A-Z]{12,}|\beyJ[A-Za-z0-9_-]{8,}|\b(?:password|passwd|secret|token|api[-_]?key|bearer)\s*[:=]\s*\S+`)
	longRun    = regexp.MustCompile(`[A-Za-z0-9+/=_]{24,}`)
	digit      = regexp.MustCompile(`[0-9]`)
	letter     = regexp.MustCompile(`[A-Za-z]`)
)

// withhold replaces URL credentials and secret-looking text in s.
func withhold(s string) string {
	mark := func(m string) string { return fmt.Sprintf("<%d bytes withheld>", len(m)) }
	s = redact.String(strings.ToValidUTF8(s, "\uFFFD"))
	s = credential.ReplaceAllStringFunc(s, mark)
	return longRun.ReplaceAllStringFunc(s, func(m string) string {
		if digit.MatchString(m) && letter.MatchString(m) {
			return mark(m)
		}
		return m
	})
}

// scrub makes text from or about an event safe to publish: secret-looking text withheld,
// non-printable characters escaped, at most limit bytes. Scrubbing scrubbed text changes nothing.
func scrub(s string, limit int) string {
	var b strings.Builder
	for _, r := range withhold(s) {
		if unicode.IsPrint(r) {
			b.WriteRune(r)
		} else {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return truncate(b.String(), limit)
}

// quote returns s for a Detail: secret-looking text withheld, at most maxQuote bytes of it, in Go
// double-quoted form.
func quote(s string) string { return strconv.Quote(truncate(withhold(s), maxQuote)) }

// truncate cuts s to at most limit bytes on a rune boundary, marking the cut.
func truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	const mark = "…"
	cut := max(limit-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
