package testrig_test

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// leakChild is TestNoProcessLeftBehind's child half, run in a re-executed test binary: it starts a
// cluster and Postgres with a replica, then ends the way how says.
func leakChild(t *testing.T, how string) {
	testrig.StartCluster(t, "leak")
	testrig.StartPostgres(t).StartReplica(t)
	os.Stdout.WriteString("RIG-READY\n")
	switch how {
	case "fail":
		t.Fatal("deliberate failure")
	case "panic":
		panic("deliberate panic")
	case "killed":
		time.Sleep(time.Minute) // the parent kills the test binary with SIGKILL
	}
}

// A test that fails, panics, or whose binary is killed leaves no rig process behind.
func TestNoProcessLeftBehind(t *testing.T) {
	if how := os.Getenv("MPHA_LEAK_CHILD"); how != "" {
		leakChild(t, how)
		return
	}
	integration(t)
	for _, how := range []string{"fail", "panic", "killed"} {
		t.Run(how, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestNoProcessLeftBehind$", "-test.v")
			cmd.Env = append(os.Environ(), "MPHA_LEAK_CHILD="+how)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = cmd.Stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var log strings.Builder
			sc := bufio.NewScanner(out)
			ready := false
			for sc.Scan() {
				log.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "RIG-READY") {
					ready = true
					if how == "killed" {
						if n := len(testrig.ProcessesOwnedBy(cmd.Process.Pid)); n < 3 {
							t.Errorf("expected the child's etcd, apiserver and postgres to be running, found %d", n)
						}
						_ = cmd.Process.Signal(syscall.SIGKILL)
					}
				}
			}
			err = cmd.Wait()
			if !ready {
				t.Fatalf("the child never started its rig:\n%s", log.String())
			}
			if err == nil {
				t.Fatalf("the child (%s) exited 0; want a failure:\n%s", how, log.String())
			}
			deadline := time.Now().Add(10 * time.Second)
			left := testrig.ProcessesOwnedBy(cmd.Process.Pid)
			for len(left) > 0 && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
				left = testrig.ProcessesOwnedBy(cmd.Process.Pid)
			}
			for _, p := range left {
				t.Errorf("left behind after %s: pid %d %s", how, p.Pid, p.Cmdline)
				_ = syscall.Kill(p.Pid, syscall.SIGKILL)
			}
		})
	}
}
