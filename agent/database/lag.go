package database

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseLSN reads a WAL position as Postgres prints it (16/B374D848).
func ParseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("LSN %q: want X/Y", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("LSN %q: %w", s, err)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("LSN %q: %w", s, err)
	}
	return h<<32 | l, nil
}

// Lag is how far a replica's replay is behind the active's WAL.
type Lag struct {
	// Bytes of WAL the active wrote that the replica has not replayed.
	Bytes int64
	// Seconds since the last transaction the replica replayed committed on the active; 0 when
	// nothing is left to replay (an idle primary is not lag).
	Seconds float64
	// ActiveLSN and ReplayLSN are the two positions compared.
	ActiveLSN, ReplayLSN string
}

// MeasureLag compares the replica's replay position with the active's WAL position activeLSN.
func MeasureLag(replica *Server, activeLSN string) (Lag, error) {
	l := Lag{ActiveLSN: activeLSN, ReplayLSN: replica.LSN}
	a, err := ParseLSN(activeLSN)
	if err != nil {
		return l, fmt.Errorf("the active's position: %w", err)
	}
	r, err := ParseLSN(replica.LSN)
	if err != nil {
		return l, fmt.Errorf("the replica's position: %w", err)
	}
	if a <= r {
		return l, nil
	}
	l.Bytes = int64(a - r)
	if replica.ReplayedAt != nil {
		l.Seconds = max(0, replica.Now.Sub(*replica.ReplayedAt).Seconds())
	} else {
		l.Seconds = -1 // nothing replayed yet: unknown
	}
	return l, nil
}

// String is the lag for evidence: "1.5 MiB (3.2 s) behind 0/3000060".
func (l Lag) String() string {
	secs := fmt.Sprintf("%.1f s", l.Seconds)
	if l.Seconds < 0 {
		secs = "no transaction replayed yet"
	}
	return fmt.Sprintf("%s (%s): replayed %s of %s", FormatBytes(l.Bytes), secs, l.ReplayLSN, l.ActiveLSN)
}

// FormatBytes prints a size in B, KiB, MiB or GiB, as the evidence and the status show it.
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func ago(d time.Duration) string { return d.Round(time.Second).String() + " ago" }
