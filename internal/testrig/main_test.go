package testrig_test

import (
	"os"
	"testing"

	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// integration skips under -short: everything here starts real servers.
func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real components; skipped with -short")
	}
}
