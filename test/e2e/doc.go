// Package e2e holds the two-cluster drill (`make e2e`) and the local demo (`make demo`): two rig
// clusters, east and west, each with Flux's source- and kustomize-controllers and a sealed-secrets
// controller; Gitea holding the GitOps repository and its pull requests; NATS JetStream; and the
// real `mpha` binary running one agent per cluster, configured as a user would configure it: a
// values file rendered through charts/mpha, run as the chart's ServiceAccount under its Roles.
// Fixtures stand in for TSB (namespace tsb: its secrets with random data, the tsb and iam
// Deployments, the tsb-restore CronJob, a Helm release of a chart shaped like managementplane).
//
// Its tests carry the build tag e2e (the demo also demo), so `make test` never starts this rig;
// under `go test -short` they skip, and otherwise a missing tool fails naming `make tools`.
package e2e
