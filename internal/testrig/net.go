package testrig

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// freePort asks the kernel for an unused loopback TCP port.
func freePort(t testing.TB) int {
	t.Helper()
	return freePorts(t, 1)[0]
}

// freePorts returns n distinct unused loopback ports: the listeners stay open until all n are
// found, so the kernel cannot hand out one port twice.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// Eventually polls cond every 100ms until it returns nil, and fails t with cond's last error once
// timeout passes. Tests use it for whatever converges asynchronously (replication, a controller).
func Eventually(t testing.TB, what string, timeout time.Duration, cond func(context.Context) error) {
	t.Helper()
	waitFor(t, what, timeout, nil, cond)
}

// waitFor polls cond every 100ms until it returns nil, the process exits or timeout passes, and
// fails t with the last error.
func waitFor(t testing.TB, what string, timeout time.Duration, p *Process, cond func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		last = cond(cctx)
		ccancel()
		if last == nil {
			return
		}
		var exited <-chan struct{}
		if p != nil {
			exited = p.Done()
		}
		select {
		case <-exited:
			t.Fatalf("waiting for %s: the process exited (see %s): last error: %v", what, p.LogPath(), last)
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v: last error: %v", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// HTTPOK returns nil when GET url answers 200: the readiness probe the rig and the drill wait on.
func HTTPOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
