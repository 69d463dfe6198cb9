package testrig

import (
	"os"
	"testing"
)

// LogsEnv names a folder that receives every component's log (<name>.log), kept after the run.
// The demo sets it so that a person is told where the logs are instead of shown them; unset, logs
// go to the test's temporary directory and a failing test prints their last lines.
const LogsEnv = "MPHA_RIG_LOGS"

// logDir is the folder for a component's log: $MPHA_RIG_LOGS when set, else fallback (a folder of
// the test's).
func logDir(t testing.TB, fallback string) string {
	t.Helper()
	dir := os.Getenv(LogsEnv)
	if dir == "" {
		return fallback
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("%s: %v", LogsEnv, err)
	}
	return dir
}

// reportLog runs when a test that started a component has failed: it prints the log's last lines,
// or, when the logs are kept in $MPHA_RIG_LOGS, only where the log is.
func reportLog(t testing.TB, name, path string) {
	t.Helper()
	if os.Getenv(LogsEnv) != "" {
		t.Logf("%s's log: %s", name, path)
		return
	}
	t.Logf("--- last lines of %s (%s) ---\n%s", name, path, tail(path, logTailLines))
}
