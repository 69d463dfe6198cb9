package testrig

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// ToolsTarget is what a developer runs to get the binaries the rig needs.
const ToolsTarget = "make tools"

// BinDir returns the directory holding the tool binaries: $MPHA_BIN, or bin/ at the repository root.
func BinDir() (string, error) {
	if d := os.Getenv("MPHA_BIN"); d != "" {
		return d, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "bin"), nil
}

// repoRoot walks up from the working directory (a test runs in its package's directory) to the
// directory holding tools/build.sh.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "tools", "build.sh")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("finding the repository root: no tools/build.sh above the working directory; set MPHA_BIN")
		}
		dir = parent
	}
}

// Bin returns the path of the tool binary name, or fails t naming the make target that builds it.
func Bin(t testing.TB, name string) string {
	t.Helper()
	dir, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing (%v): run `%s` to build it", name, err, ToolsTarget)
	}
	return p
}

// binFile returns a data file shipped next to the binaries (CRDs, Gitea's options), or fails t.
func binFile(t testing.TB, rel string) string {
	t.Helper()
	dir, err := BinDir()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, rel)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing (%v): run `%s`", rel, err, ToolsTarget)
	}
	return p
}

// systemBin finds a binary installed from the machine's packages, or fails t naming the make target.
func systemBin(t testing.TB, name string, dirs ...string) string {
	t.Helper()
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	t.Fatalf("%s is not installed: run `make deps` (it installs the Debian packages the tests use)", name)
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}
