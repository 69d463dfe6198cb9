// Package trailer formats and parses the Mpha-* git trailers every mpha commit ends with
// (docs/design.md §5, a contract), so that `mpha audit` can rebuild history from `git log`
// alone. It is pure: no Git, no I/O.
package trailer

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
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

// Trailer is one "Key: value" line.
type Trailer struct {
	Key, Value string
}

// ErrInvalid reports a trailer that cannot be written as one git trailer line.
var ErrInvalid = errors.New("invalid trailer")

var keyRE = regexp.MustCompile(`^Mpha-[A-Za-z0-9]+(-[A-Za-z0-9]+)*$`)

// Validate checks that t is an Mpha-* key with a one-line value that git keeps as written.
func (t Trailer) Validate() error {
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
		if err := t.Validate(); err != nil {
			return "", err
		}
		b.WriteString(t.Key + ": " + t.Value + "\n")
	}
	return b.String(), nil
}

// Parse returns the Mpha-* trailers of a commit message: the lines of its last paragraph that
// have the form "Mpha-Key: value". Other trailers (Signed-off-by) are ignored.
func Parse(message string) []Trailer {
	paras := strings.Split(strings.TrimRight(strings.ReplaceAll(message, "\r\n", "\n"), "\n"), "\n\n")
	if len(paras) < 2 {
		return nil
	}
	var out []Trailer
	for _, line := range strings.Split(paras[len(paras)-1], "\n") {
		k, v, ok := strings.Cut(line, ": ")
		t := Trailer{Key: k, Value: v}
		if ok && t.Validate() == nil {
			out = append(out, t)
		}
	}
	return out
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
