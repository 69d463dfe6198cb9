// Package health is the standby agent's watch on the active management plane (docs/design.md §2:
// "watch the active MP and suggest, never perform, a failover when it is down").
//
// Each round (Monitor.RunOnce) sends the probes of tsb-mp-ha.md §6 through front-envoy on two
// targets, the pair's floating FQDN and the active cluster's own MP FQDN (pair.yaml), plus any
// configured URL. The management plane is reachable when every probe passes on at least one
// target. When none passes, the active agent's last heartbeat decides between two verdicts: fresh
// and reporting its MP healthy means "I cannot reach it" (VerdictUnreachable), anything else means
// the MP is down (VerdictDown).
//
// After Failures down rounds in a row the monitor publishes one failover suggestion
// (TypeFailoverSuggested on SuggestedSubject) and, with AutoPropose, one failover.requested event
// for this cluster, mode planned, with an id fixed by the outage; it raises
// mpha_failover_suggested. The outage ends, and a new one may be suggested, only after Recoveries
// healthy rounds in a row: a flapping MP never gets a second suggestion.
//
// It imports agent/event, agent/heartbeat (whose Reader is the usual Heartbeats), gitops and
// internal/*, never cmd.
package health
