// Package golden compares test output with files under testdata/. Run the tests with
// MPHA_UPDATE_GOLDEN=1 to rewrite the files from the output, then review the diff. It imports
// nothing of mpha, and only tests import it.
package golden

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// UpdateEnv, set to 1, makes Assert write the golden files instead of comparing.
const UpdateEnv = "MPHA_UPDATE_GOLDEN"

// Assert fails t when got differs from the file at path (relative to the test's package).
func Assert(t testing.TB, path string, got []byte) {
	t.Helper()
	if os.Getenv(UpdateEnv) == "1" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading golden file: %v (run with %s=1 to create it)", err, UpdateEnv)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-golden +got); run with %s=1 to update:\n%s", path, UpdateEnv, diff)
	}
}
