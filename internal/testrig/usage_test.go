package testrig_test

import (
	"os"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// ReadUsage of the test binary itself: it holds memory and, after a busy loop, has used CPU.
func TestReadUsage(t *testing.T) {
	t.Parallel()
	before, err := testrig.ReadUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := testrig.ReadUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after.RSS <= 0 || after.HWM < after.RSS {
		t.Errorf("RSS %d, HWM %d: want RSS > 0 and HWM >= RSS", after.RSS, after.HWM)
	}
	if after.CPU <= before.CPU || testrig.CPUPercent(before, after) <= 0 {
		t.Errorf("CPU %s → %s after a 300ms busy loop: want it to grow", before.CPU, after.CPU)
	}
	if _, err := testrig.ReadUsage(1 << 30); err == nil {
		t.Error("ReadUsage of a pid that cannot exist: no error")
	}
}
