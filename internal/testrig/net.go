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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
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

// httpOK returns nil when GET url answers 200.
func httpOK(ctx context.Context, url string) error {
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
