package testrig

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// Etcd is an etcd server on loopback. Several clusters can share one, each under its own prefix.
type Etcd struct {
	// URL is the client URL (http://127.0.0.1:PORT).
	URL  string
	proc *Process
}

// StartEtcd starts etcd in a temporary directory; it stops when t ends.
func StartEtcd(t testing.TB) *Etcd {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 2)
	client, peer := ports[0], ports[1]
	url := fmt.Sprintf("http://127.0.0.1:%d", client)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peer)
	p := startProcess(t, procSpec{
		name: "etcd",
		path: Bin(t, "etcd"),
		args: []string{
			"--name", "rig", "--data-dir", filepath.Join(dir, "data"),
			"--listen-client-urls", url, "--advertise-client-urls", url,
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			// etcd refuses to start unless the initial cluster names the peer URL in use.
			"--initial-cluster", "rig=" + peerURL,
			"--unsafe-no-fsync", "--log-level", "warn",
		},
		logDir: logDir(t, dir),
	})
	waitFor(t, "etcd /health", 30*time.Second, p, func(ctx context.Context) error { return HTTPOK(ctx, url+"/health") })
	return &Etcd{URL: url, proc: p}
}

// Process is etcd's process, for fault tests.
func (e *Etcd) Process() *Process { return e.proc }
