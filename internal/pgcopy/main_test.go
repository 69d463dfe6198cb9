package pgcopy_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/internal/pgcopy"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// killedSyncEnv, set to "FROM TO", makes the test binary the sync that TestSyncDropsItsLeftovers
// kills: it syncs and SIGKILLs itself in the middle of copying.
const killedSyncEnv = "MPHA_TEST_KILLED_SYNC"

func TestMain(m *testing.M) {
	if v := os.Getenv(killedSyncEnv); v != "" {
		from, to, _ := strings.Cut(v, " ")
		_, err := pgcopy.Sync(context.Background(), from, to, pgcopy.Options{Jobs: 2, ChunkSize: 1 << 20, ProgressInterval: time.Millisecond,
			Progress: func(p pgcopy.Progress) {
				if p.Phase == "data" && p.Bytes > 1<<20 {
					_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				}
			}})
		fmt.Fprintf(os.Stderr, "the sync was not killed: %v\n", err)
		os.Exit(2)
	}
	os.Exit(testrig.Main(m))
}
