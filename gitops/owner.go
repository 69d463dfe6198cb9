package gitops

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrNotOwned reports a file in the repository that mpha did not write: the agent never
// rewrites or deletes one (docs/design.md §3).
var ErrNotOwned = errors.New("not owned by mpha")

// CheckOwned allows writing path when it does not exist yet or was written by mpha (it starts with
// Header). It has the signature of the Git writer's per-file check.
func CheckOwned(path string, current []byte) error {
	if current == nil || bytes.HasPrefix(current, []byte(Header)) {
		return nil
	}
	return fmt.Errorf("%s: %w (it lacks mpha's header; move it aside or add the header to hand it over)", path, ErrNotOwned)
}
