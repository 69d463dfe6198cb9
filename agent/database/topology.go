package database

import "fmt"

// Topology is how the two sites' databases relate (docs/design.md §8).
type Topology string

// The topologies; Auto in configuration means Detect.
const (
	Auto        Topology = "auto"
	Shared      Topology = "shared"
	Streaming   Topology = "streaming"
	Independent Topology = "independent"
	Embedded    Topology = "embedded"
)

// Detect tells the topology from the active's and the standby's servers. The active may be nil
// (unreachable): then a standby in recovery is taken as streaming from it, a primary as
// independent. Embedded is never detected (kubegres runs in each cluster, as independent
// primaries do): it is configured.
//
//	active       standby         same system id  same start   → topology
//	primary      primary         yes             yes          shared (one server)
//	any          in recovery     yes             -            streaming
//	any          in recovery     no              -            error: replicates another server
//	primary      primary         -               no           independent
func Detect(active, standby *Server) (Topology, error) {
	switch {
	case active == nil && standby.InRecovery:
		return Streaming, nil
	case active == nil:
		return Independent, nil
	case standby.InRecovery && standby.SystemID != active.SystemID:
		return "", fmt.Errorf("%s replicates a server other than the active's %s (system id %s, not %s)",
			standby.Name, active.Name, standby.SystemID, active.SystemID)
	case standby.InRecovery:
		return Streaming, nil
	case active.SystemID == standby.SystemID && active.StartedAt.Equal(standby.StartedAt) && !active.InRecovery:
		if active.Database != standby.Database {
			return "", fmt.Errorf("both MPs use server %s but different databases (%s and %s)", active.SystemID, active.Database, standby.Database)
		}
		return Shared, nil
	default:
		return Independent, nil
	}
}
