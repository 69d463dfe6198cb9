// Package testrig starts the real components mpha's integration tests talk to — etcd and
// kube-apiserver ("clusters"), NATS with JetStream, PostgreSQL primaries and streaming replicas, a
// smart-HTTP Git server, the Gitea forge, Flux's source- and kustomize-controllers, the
// sealed-secrets controller, a DNS server (BIND 9's named) and external-dns — each on free loopback
// ports in a temporary directory, and stops them when the test ends, whether it passed, failed or
// panicked.
//
// Binaries come from bin/ (built by `make tools`; see tools/build.sh) or $MPHA_BIN; PostgreSQL and
// named from the machine's packages (`make deps`). A missing binary fails the test with the make target that
// provides it; under `go test -short` the callers skip before reaching the rig.
//
// Every child process carries MPHA_RIG_OWNER=<test binary pid> in its environment, runs in its own
// process group and gets SIGKILL if the test binary dies; Main checks after the run that none is
// left. Logs are kept under the test's temp directory and printed when the test fails.
//
// # DNS
//
// The floating name is published the way it would be in production: external-dns (StartExternalDNS,
// --source=crd --provider=rfc2136) reads the DNSEndpoint mpha commits as dns/floating.yaml, and
// sends RFC 2136 dynamic updates, signed with a TSIG key, to named (StartDNS), which answers real
// DNS queries. Nothing in between is written by us.
//
// BIND rather than CoreDNS: RFC 2136 with TSIG is what external-dns's rfc2136 provider speaks and
// what BIND implements natively (a key-restricted update-policy, and the signed zone transfer the
// provider reads the zone with); CoreDNS takes no dynamic updates, so external-dns would have to
// reach it through its coredns provider's SkyDNS records in etcd, a store between the two that no
// operator's DNS has; and named is a Debian package installed in seconds, where CoreDNS would be
// one more module to build. named runs unprivileged (as the bind user when the test runs as root:
// started as that user, not dropping root with -u), in the foreground, from a private directory
// holding its configuration, zone and journal, and reads nothing of /etc/bind's configuration.
//
// Ownership. Both clusters of a pair hold the same DNSEndpoint (each one's Flux applies
// dns/floating.yaml from Git), and each runs its own external-dns, under one --txt-owner-id
// (DefaultDNSOwner) for the pair:
//
//   - With an owner id per cluster, the name belongs to whichever external-dns created it first
//     (its TXT record, cname-<name>, says so) and the other never changes it: the name could not
//     move while the old active's cluster is down, the very case failover exists for.
//     TestExternalDNSTwoClustersOneName shows it.
//   - Running only the active's external-dns was rejected: nothing in Git says which cluster runs
//     it (role.yaml scales the MP, not external-dns), so the rig would be deciding for mpha, and an
//     old active back from an outage still believes it is active until its Flux applies the
//     commit, as it would with a shared id.
//   - The policy is upsert-only: external-dns never deletes, so a cluster that does not hold the
//     DNSEndpoint yet (rebuilt, or before Flux's first apply) cannot remove the name the other
//     publishes. Updates are atomic (the old CNAME out and the new one in, one message).
//
// The cost of a shared id: while one cluster's Flux lags behind the other's (a cluster back from
// an outage before its Flux applies the failover's commit), the two external-dns publish different
// targets and the name alternates between them at every sync (once a second here) until that
// Flux applies. A drill that restarts a cluster must expect it, or start that cluster's
// external-dns only after its Flux has applied.
//
// external-dns exits when a sync fails (its API server or named unreachable); the rig starts it
// again with a growing back-off, as a pod's restart policy would.
//
// # The MP and its clients
//
// TSB itself is not available here. StartMP stands in for one cluster's management plane as its
// clients see it through front-envoy, and enforces what mpha must copy for a failover to go
// unnoticed by them:
//
//   - it serves HTTPS on the cluster's own loopback address only while the tsb Deployment has
//     spec.replicas > 0 (the rig has no kubelet; the stand-in watches spec, as applied by Flux or
//     kubectl scale) and closes the listener, and every connection, at 0;
//   - its certificate is tsb-certs', re-read when the Secret changes; it has no other, so a
//     standby with a certificate of another CA fails its clients' handshakes;
//   - it accepts a bearer JWT only when the header's kid is iam-signing-key's kid and the
//     signature verifies with that Secret's private.key (RSA or ECDSA), re-read when the
//     sealed-secrets controller replaces it: a standby without the active's key answers 401;
//   - it reads a settings row from its own Postgres (WriteMPSetting), so a stale copy of the
//     database shows through the new active.
//
// It does not reproduce TSB's IAM token exchange, XCP's gRPC streams or the UI: tokens come from
// IssueToken (signed with the cluster's iam-signing-key, as IAM would), and the status and
// settings reads are the only API.
//
// Client is what the failover must not disturb: a control-plane-like or tctl-like HTTPS client
// configured once with the floating name, the root CA, a token and the rig's DNS server. It
// resolves the name at every attempt and opens a new connection each time (no keep-alive pins
// the old address; Go's resolver caches nothing, so a client sees a change as soon as named
// serves it, sooner than a TTL-honouring cache would), and records every attempt's outcome (DNS,
// connection refused, TLS, 401, other) for the test to ask which MP answered, when, and for how
// long none did.
//
// testrig is a leaf: it imports nothing of mpha, and only _test.go files import it.
package testrig
