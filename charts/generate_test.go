package charts

import (
	"testing"

	"github.com/mpha-dev/mpha/internal/golden"
)

// The generated files are what the generator makes of agent.Config now: after a change to the
// configuration, run `make generate` (MPHA_UPDATE_GOLDEN=1 on this test) and commit the result.
func TestGeneratedFilesAreCurrent(t *testing.T) {
	files, err := Generate("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range sortedKeys(files) {
		golden.Assert(t, "../"+path, files[path])
	}
}
