package testrig

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// OwnerEnv marks every process the rig starts with the pid of the test binary that started it.
const OwnerEnv = "MPHA_RIG_OWNER"

// stopTimeout bounds a graceful stop before the process group is killed.
const stopTimeout = 15 * time.Second

// logTailLines is how much of a component's log a failing test prints.
const logTailLines = 60

// procSpec describes one child process.
type procSpec struct {
	name       string   // short label, also the log file's name
	path       string   // the binary
	args       []string // its arguments
	env        []string // added to the test's environment
	dir        string   // working directory ("" = the test's)
	logDir     string   // where <name>.log goes
	stopSignal syscall.Signal
	// stopGrace bounds a graceful stop before the group is killed (default stopTimeout).
	stopGrace time.Duration
	cred      *syscall.Credential // run as another user (Postgres refuses root)
}

// Process is a running child of the test. Its log accumulates across restarts.
type Process struct {
	spec procSpec

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProcess starts spec and registers its stop (and, on failure, its log) with t.Cleanup.
func startProcess(t testing.TB, spec procSpec) *Process {
	t.Helper()
	p := &Process{spec: spec}
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stopping %s: %v", spec.name, err)
		}
		if t.Failed() {
			reportLog(t, spec.name, p.LogPath())
		}
	})
	return p
}

func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !p.exited() {
		return fmt.Errorf("starting %s: already running", p.spec.name)
	}
	if err := os.MkdirAll(p.spec.logDir, 0o755); err != nil {
		return fmt.Errorf("starting %s: %w", p.spec.name, err)
	}
	logf, err := os.OpenFile(p.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("starting %s: %w", p.spec.name, err)
	}
	fmt.Fprintf(logf, "=== %s %s %s\n", time.Now().Format(time.RFC3339Nano), p.spec.path, strings.Join(p.spec.args, " "))
	cmd := exec.Command(p.spec.path, p.spec.args...)
	cmd.Dir = p.spec.dir
	cmd.Env = append(os.Environ(), OwnerEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.Env = append(cmd.Env, p.spec.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: a stop reaches the children too. Pdeathsig: if the test binary dies (a
	// timeout, a kill), the kernel kills the child; Go sets it after switching credentials.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: p.spec.cred}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", p.spec.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err = cmd, done, nil
	go func() {
		err := cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Pid is the process id of the running child (0 before the first start).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// LogPath is the file holding the process's stdout and stderr.
func (p *Process) LogPath() string { return filepath.Join(p.spec.logDir, p.spec.name+".log") }

// Done is closed when the current run of the process has exited.
func (p *Process) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Restart starts the process again with the same arguments; it must have been stopped.
func (p *Process) Restart() error { return p.start() }

// Stop asks the process group to stop with the spec's signal (SIGTERM by default), waits up to
// stopTimeout, then kills the group. Stopping a stopped process is a no-op.
func (p *Process) Stop() error {
	sig := p.spec.stopSignal
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	grace := p.spec.stopGrace
	if grace == 0 {
		grace = stopTimeout
	}
	return p.signalAndWait(sig, grace)
}

// Kill sends SIGKILL to the process group and waits for the process to exit (a crash, for fault tests).
func (p *Process) Kill() error { return p.signalAndWait(syscall.SIGKILL, stopTimeout) }

func (p *Process) signalAndWait(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	pgid := cmd.Process.Pid
	select {
	case <-done:
	default:
		if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signalling %s: %w", p.spec.name, err)
		}
		select {
		case <-done:
		case <-time.After(timeout):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
		}
	}
	// Children that outlived their parent (a backend, a git helper) die with the group.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return nil
}

// tail returns the last n lines of a file, or a note saying why it cannot.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// GroupRSS returns the resident memory, in bytes, of the process and every process in its group
// (a postmaster and its backends), as the kernel reports it now.
func (p *Process) GroupRSS() (int64, error) {
	pgid := p.Pid()
	if pgid == 0 {
		return 0, fmt.Errorf("%s is not running", p.spec.name)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("reading /proc: %w", err)
	}
	var total int64
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, err := syscall.Getpgid(pid); err != nil || g != pgid {
			continue
		}
		total += vmRSS(pid)
	}
	return total, nil
}

// vmRSS reads VmRSS from /proc/PID/status, in bytes (0 if the process is gone).
func vmRSS(pid int) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}
