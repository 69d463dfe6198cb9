package testrig_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// fatalRecorder is a testing.TB whose Fatal ends only the goroutine and keeps the message.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (r *fatalRecorder) Helper() {}
func (r *fatalRecorder) Fatal(args ...any) {
	r.msg = fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// Without -short, a missing tool binary fails the test with the make target that builds it.
func TestMissingBinaryNamesMakeTarget(t *testing.T) {
	t.Setenv("MPHA_BIN", t.TempDir())
	for _, start := range []struct {
		name string
		run  func(testing.TB)
	}{
		{"cluster", func(tb testing.TB) { testrig.StartCluster(tb, "x") }},
		{"gitea", func(tb testing.TB) { testrig.StartGitea(tb) }},
		{"bin", func(tb testing.TB) { testrig.Bin(tb, "source-controller") }},
	} {
		t.Run(start.name, func(t *testing.T) {
			r := &fatalRecorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				start.run(r)
			}()
			<-done
			if !strings.Contains(r.msg, "run `make tools`") {
				t.Errorf("message %q does not name `make tools`", r.msg)
			}
		})
	}
}
