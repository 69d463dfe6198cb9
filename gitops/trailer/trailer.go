// Package trailer formats and parses the Mpha-* git trailers every mpha commit ends with
// (docs/design.md §5, a contract), so that `mpha audit` can rebuild history from `git log`
// alone. It is pure: no Git, no I/O.
package trailer

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/mpha-dev/mpha/gitops"
)

// Prefix starts every trailer key mpha writes.
const Prefix = "Mpha-"

// Keys of the contract. Kind is on every commit; the others on failover commits.
const (
	Kind        = "Mpha-Kind"
	Event       = "Mpha-Event"
	Epoch       = "Mpha-Epoch"
	From        = "Mpha-From"
	To          = "Mpha-To"
	Mode        = "Mpha-Mode"
	RequestedBy = "Mpha-Requested-By"
	Reason      = "Mpha-Reason"
	Preflight   = "Mpha-Preflight"
	// Forced names the checks an emergency failover overrode, comma-separated.
	Forced  = "Mpha-Forced"
	Cluster = "Mpha-Cluster"
)

// Trailer is one "Key: value" line. It is gitops.Trailer, so that a gitops.Change carries trailers
// without gitops importing this package.
type Trailer = gitops.Trailer

// ErrInvalid reports a trailer that cannot be written as one git trailer line.
var ErrInvalid = errors.New("invalid trailer")

var keyRE = regexp.MustCompile(`^Mpha-[A-Za-z0-9]+(-[A-Za-z0-9]+)*$`)

// Validate checks that t is an Mpha-* key with a one-line value that git keeps as written.
func Validate(t Trailer) error {
	if !keyRE.MatchString(t.Key) {
		return fmt.Errorf("%w: key %q is not Mpha-Word(-Word)*", ErrInvalid, t.Key)
	}
	if t.Value == "" || strings.TrimSpace(t.Value) != t.Value || strings.ContainsAny(t.Value, "\r\n") {
		return fmt.Errorf("%w: %s: the value must be one non-empty line without surrounding spaces", ErrInvalid, t.Key)
	}
	return nil
}

// Format returns message (subject, blank line, body) followed by a blank line and the trailers,
// one per line, in the order given.
func Format(message string, trailers []Trailer) (string, error) {
	var b strings.Builder
	b.WriteString(strings.TrimRight(message, "\n"))
	b.WriteString("\n\n")
	for _, t := range trailers {
		if err := Validate(t); err != nil {
			return "", err
		}
		b.WriteString(t.Key + ": " + t.Value + "\n")
	}
	return b.String(), nil
}

// Parse returns the Mpha-* trailers of a commit message: the lines of its last paragraph that
// have the form "Mpha-Key: value". Other trailers (Signed-off-by) are ignored, and so are lines
// that look like Mpha-* trailers but are not valid ones (ParseAll reports those).
func Parse(message string) []Trailer {
	ts, _ := ParseAll(message)
	return ts
}

// ParseAll is Parse that also returns the malformed lines of the trailer block: those that start
// like an Mpha-* key (any case) but are not a valid "Mpha-Key: value" trailer, each as an error
// wrapping ErrInvalid that quotes the line.
func ParseAll(message string) ([]Trailer, []error) {
	paras := strings.Split(strings.TrimRight(strings.ReplaceAll(message, "\r\n", "\n"), "\n"), "\n\n")
	if len(paras) < 2 {
		return nil, nil
	}
	var out []Trailer
	var bad []error
	for _, line := range strings.Split(paras[len(paras)-1], "\n") {
		k, v, ok := strings.Cut(line, ": ")
		t := Trailer{Key: k, Value: v}
		err := Validate(t)
		switch {
		case ok && err == nil:
			out = append(out, t)
		case !strings.HasPrefix(strings.ToLower(line), strings.ToLower(Prefix)):
			// Another trailer (Signed-off-by) or text: not mpha's.
		case !ok:
			bad = append(bad, fmt.Errorf("%w: %s is not \"Mpha-Key: value\"", ErrInvalid, gitops.Quote(line)))
		default:
			bad = append(bad, fmt.Errorf("%s: %w", gitops.Quote(line), err))
		}
	}
	return out, bad
}

// The values the contract allows for Mpha-Mode and Mpha-Preflight (architecture.md §5).
var (
	modes      = []string{"planned", "emergency", "drill"}
	preflights = []string{"pass", "warn", "forced"}
)

// Check checks the value of a trailer whose key the contract defines (architecture.md §5): a
// kind or a cluster is a DNS-1123 label (gitops.ValidateName), an epoch a non-negative integer,
// a mode and a preflight one of their words. Other keys (Event, Reason, Requested-By, Forced)
// are free text past Validate. The error wraps ErrInvalid and quotes the value, cut.
func Check(t Trailer) error {
	var err error
	switch t.Key {
	case Kind:
		err = gitops.ValidateName("kind", t.Value)
	case From, To, Cluster:
		err = gitops.ValidateClusterName(t.Value)
	case Epoch:
		if n, perr := strconv.ParseInt(t.Value, 10, 64); perr != nil || n < 0 {
			err = fmt.Errorf("%s is not a non-negative integer", gitops.Quote(t.Value))
		}
	case Mode:
		err = oneOf(t.Value, modes)
	case Preflight:
		err = oneOf(t.Value, preflights)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalid, t.Key, err)
	}
	return nil
}

func oneOf(v string, allowed []string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return fmt.Errorf("%s: want %s", gitops.Quote(v), strings.Join(allowed, ", "))
}

// Get returns the value of the first trailer with key, and whether there was one.
func Get(trailers []Trailer, key string) (string, bool) {
	for _, t := range trailers {
		if t.Key == key {
			return t.Value, true
		}
	}
	return "", false
}
