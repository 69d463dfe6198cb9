package testrig_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// With MPHA_RIG_LOGS set, a component's log lands in that folder, and a failing test names the
// log instead of printing its lines (what `make demo` relies on to stay readable).
func TestLogsEnv(t *testing.T) {
	if os.Getenv("MPHA_LOGS_CHILD") != "" {
		testrig.StartCommand(t, testrig.Command{Name: "greeter", Path: "/bin/sh", Args: []string{"-c", "echo hello from the rig; sleep 60"}})
		time.Sleep(200 * time.Millisecond)
		t.Fatal("deliberate failure")
	}
	if testing.Short() {
		t.Skip("re-runs the test binary")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLogsEnv$", "-test.v")
	cmd.Env = append(os.Environ(), "MPHA_LOGS_CHILD=1", testrig.LogsEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("the child test should fail: %v\n%s", err, out)
	}
	log := filepath.Join(dir, "greeter.log")
	if !strings.Contains(string(out), "greeter's log: "+log) {
		t.Errorf("the failing child does not name %s:\n%s", log, out)
	}
	if strings.Contains(string(out), "last lines") || strings.Contains(string(out), "hello from the rig") {
		t.Errorf("the failing child printed the log's lines:\n%s", out)
	}
	testrig.Eventually(t, "the log in "+dir, 10*time.Second, func(context.Context) error {
		b, err := os.ReadFile(log)
		if err != nil || !strings.Contains(string(b), "hello from the rig") {
			return errors.New("no greeting in " + log)
		}
		return nil
	})
}
