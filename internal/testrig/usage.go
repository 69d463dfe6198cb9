package testrig

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHz is the unit of /proc/PID/stat's CPU times: USER_HZ, 100 on every Linux ABI Go targets.
const userHz = 100

// Usage is what the kernel reports of one process: resident memory now and at its peak, and the
// CPU time it has used (user + system) since it started.
type Usage struct {
	RSS, HWM int64 // bytes (VmRSS, VmHWM)
	// Anon and File split RSS: the process's own memory (heap, stacks) and the pages of files
	// it maps (its binary's text and read-only data, shared with the page cache).
	Anon, File int64
	CPU        time.Duration
	At         time.Time
}

// Usage reads p's process (not its group: benchmarks compare one program) from /proc.
func (p *Process) Usage() (Usage, error) {
	pid := p.Pid()
	if pid == 0 {
		return Usage{}, fmt.Errorf("%s is not running", p.spec.name)
	}
	return ReadUsage(pid)
}

// ReadUsage reads pid's Usage from /proc/PID/status and /proc/PID/stat.
func ReadUsage(pid int) (Usage, error) {
	u := Usage{At: time.Now()}
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return u, fmt.Errorf("reading process %d's status: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		into := map[string]*int64{"VmRSS:": &u.RSS, "VmHWM:": &u.HWM, "RssAnon:": &u.Anon, "RssFile:": &u.File}[f[0]]
		if into == nil {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return u, fmt.Errorf("process %d: %s %q: %w", pid, f[0], f[1], err)
		}
		*into = kb << 10
	}
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return u, fmt.Errorf("reading process %d's stat: %w", pid, err)
	}
	// The command name (field 2) may hold spaces and parentheses: count fields after its last ")".
	// Then field 3 (state) is f[0], utime (14) f[11] and stime (15) f[12].
	i := strings.LastIndexByte(string(stat), ')')
	f := strings.Fields(string(stat[i+1:]))
	if i < 0 || len(f) < 13 {
		return u, fmt.Errorf("process %d: /proc stat has %d fields after the name", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return u, fmt.Errorf("process %d: CPU time %q: %w", pid, s, err)
		}
		ticks += n
	}
	u.CPU = time.Duration(ticks) * time.Second / userHz
	return u, nil
}

// CPUPercent is the CPU time used between two readings of one process, as a percentage of one
// core over the wall-clock time between them.
func CPUPercent(from, to Usage) float64 {
	wall := to.At.Sub(from.At)
	if wall <= 0 {
		return 0
	}
	return 100 * float64(to.CPU-from.CPU) / float64(wall)
}
