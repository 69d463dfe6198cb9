package testrig

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Main runs a package's tests and then fails the run if a process the rig started is still alive,
// killing it. Use it from TestMain: `func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }`.
func Main(m *testing.M) int {
	code := m.Run()
	leaked := waitNoProcesses(os.Getpid(), 5*time.Second)
	if len(leaked) == 0 {
		return code
	}
	fmt.Fprintf(os.Stderr, "testrig: %d process(es) left behind by the tests:\n", len(leaked))
	for _, p := range leaked {
		fmt.Fprintf(os.Stderr, "  pid %d: %s\n", p.Pid, p.Cmdline)
		_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	}
	return 1
}

// OwnedProcess is a live process started by a rig.
type OwnedProcess struct {
	Pid     int
	Cmdline string
}

// ProcessesOwnedBy lists the live processes whose environment says a rig in the test binary with
// pid owner started them (directly or as their children).
func ProcessesOwnedBy(owner int) []OwnedProcess {
	marker := []byte(OwnerEnv + "=" + strconv.Itoa(owner) + "\x00")
	entries, _ := os.ReadDir("/proc")
	var out []OwnedProcess
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(append([]byte{0}, env...), append([]byte{0}, marker...)) {
			continue
		}
		if isZombie(pid) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, OwnedProcess{Pid: pid, Cmdline: strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))})
	}
	return out
}

// waitNoProcesses gives exiting processes (a Postgres backend noticing its postmaster died) a
// moment, and returns those still alive after timeout.
func waitNoProcesses(owner int, timeout time.Duration) []OwnedProcess {
	deadline := time.Now().Add(timeout)
	for {
		left := ProcessesOwnedBy(owner)
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true // gone
	}
	// The state follows the command name in parentheses, which may itself hold spaces.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}
