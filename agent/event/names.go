package event

import (
	"fmt"
	"strings"

	"github.com/mpha-dev/mpha/gitops"
)

// The CloudEvent types of docs/design.md §6, one per subject.
const (
	TypeFailoverRequested = "dev.mpha.failover.requested.v1"
	TypeFailoverStatus    = "dev.mpha.failover.status.v1"
	TypeHeartbeat         = "dev.mpha.heartbeat.v1"
	TypeRejected          = "dev.mpha.rejected.v1"
)

// subjectPrefix starts every subject of every pair.
const subjectPrefix = "mpha"

// Subjects names the stream and subjects of one pair (docs/design.md §6, a contract). Build it with
// NewSubjects, which validates the pair's name, so its methods cannot fail.
type Subjects struct {
	pair string
}

// NewSubjects returns the names of pair's stream and subjects. A pair's name is a DNS-1123 label,
// like a cluster's: that keeps it one NATS subject token and a valid stream name.
func NewSubjects(pair string) (Subjects, error) {
	if err := gitops.ValidateClusterName(pair); err != nil {
		return Subjects{}, fmt.Errorf("pair: %w", err)
	}
	return Subjects{pair: pair}, nil
}

// Pair is the pair's name.
func (s Subjects) Pair() string { return s.pair }

// Stream is the JetStream stream: MPHA_<PAIR>, upper-cased, '-' → '_'.
func (s Subjects) Stream() string {
	return "MPHA_" + strings.ReplaceAll(strings.ToUpper(s.pair), "-", "_")
}

// All is the wildcard the stream captures: mpha.<pair>.>.
func (s Subjects) All() string { return s.prefix() + ">" }

// Requested carries failover.requested events.
func (s Subjects) Requested() string { return s.prefix() + "failover.requested" }

// Status carries failover.status events.
func (s Subjects) Status() string { return s.prefix() + "failover.status" }

// DLQ carries the rejected events an agent publishes for what it refused.
func (s Subjects) DLQ() string { return s.prefix() + "dlq" }

// Heartbeats matches every cluster's heartbeat subject.
func (s Subjects) Heartbeats() string { return s.prefix() + "heartbeat.*" }

// Heartbeat carries cluster's heartbeats; cluster must be a DNS-1123 label (one subject token).
func (s Subjects) Heartbeat(cluster string) (string, error) {
	if err := gitops.ValidateClusterName(cluster); err != nil {
		return "", fmt.Errorf("heartbeat subject: %w", err)
	}
	return s.prefix() + "heartbeat." + cluster, nil
}

func (s Subjects) prefix() string { return subjectPrefix + "." + s.pair + "." }
