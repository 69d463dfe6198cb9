package testrig

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS is a nats-server with JetStream, embedded in the test binary, on a fixed loopback port and
// a file store that survive Restart.
type NATS struct {
	// URL is the client URL (nats://127.0.0.1:PORT).
	URL string
	// StoreDir holds JetStream's file storage.
	StoreDir string

	opts server.Options
	mu   sync.Mutex
	srv  *server.Server
}

// StartNATS starts the server; it shuts down when t ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	n := &NATS{
		URL:      fmt.Sprintf("nats://127.0.0.1:%d", port),
		StoreDir: filepath.Join(dir, "jetstream"),
		opts: server.Options{
			ServerName: "rig", Host: "127.0.0.1", Port: port,
			JetStream: true, StoreDir: filepath.Join(dir, "jetstream"),
			NoSigs: true, LogFile: filepath.Join(dir, "nats.log"), Logtime: true,
		},
	}
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("--- last lines of nats (%s) ---\n%s", n.opts.LogFile, tail(n.opts.LogFile, logTailLines))
		}
	})
	return n
}

func (n *NATS) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	opts := n.opts // the server keeps and mutates its options
	s, err := server.NewServer(&opts)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	s.ConfigureLogger()
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("nats: not ready on %s after 15s (see %s)", n.URL, n.opts.LogFile)
	}
	n.srv = s
	return nil
}

// Stop shuts the server down (a NATS outage); it is a no-op when already stopped.
func (n *NATS) Stop() {
	n.mu.Lock()
	s := n.srv
	n.srv = nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart stops the server if it runs and starts it again on the same port and store.
func (n *NATS) Restart(t testing.TB) {
	t.Helper()
	n.Stop()
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
}
