// Package testrig starts the real components mpha's integration tests talk to — etcd and
// kube-apiserver ("clusters"), NATS with JetStream, PostgreSQL primaries and streaming replicas, a
// smart-HTTP Git server, the Gitea forge, Flux's source- and kustomize-controllers and the
// sealed-secrets controller — each on free loopback ports in a temporary directory, and stops them
// when the test ends, whether it passed, failed or panicked.
//
// Binaries come from bin/ (built by `make tools`; see tools/build.sh) or $MPHA_BIN; PostgreSQL from
// the machine's packages (`make deps`). A missing binary fails the test with the make target that
// provides it; under `go test -short` the callers skip before reaching the rig.
//
// Every child process carries MPHA_RIG_OWNER=<test binary pid> in its environment, runs in its own
// process group and gets SIGKILL if the test binary dies; Main checks after the run that none is
// left. Logs are kept under the test's temp directory and printed when the test fails.
//
// testrig is a leaf: it imports nothing of mpha, and only _test.go files import it.
package testrig
