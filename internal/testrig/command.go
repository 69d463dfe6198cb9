package testrig

import (
	"testing"
	"time"
)

// Command is a program a test runs as a child process the way the rig runs its components: its
// own process group, killed if the test binary dies, marked with OwnerEnv, its output in a log
// under the test's temp directory (printed when the test fails).
type Command struct {
	// Name labels the process and its log file (<Name>.log).
	Name string
	Path string
	Args []string
	// Env is added to the test's environment.
	Env []string
	// Dir is the working directory ("" = the test's).
	Dir string
	// StopGrace bounds a graceful stop (SIGTERM) before the group is killed (default 15s).
	StopGrace time.Duration
}

// StartCommand starts c and stops it when t ends. Process.Stop, Kill and Restart make outages.
func StartCommand(t testing.TB, c Command) *Process {
	t.Helper()
	return startProcess(t, procSpec{name: c.Name, path: c.Path, args: c.Args, env: c.Env, dir: c.Dir,
		logDir: logDir(t, t.TempDir()), stopGrace: c.StopGrace})
}
