package gitops

import (
	"bytes"
	"errors"
	"fmt"
)

// Change is one commit as the packages that plan it describe it: gitops/gitrepo applies it, and
// the pure packages (plan, failback) return one without importing Git.
type Change struct {
	// Branch receives the commit ("" = the writer's branch). A branch that does not exist yet
	// starts from the writer's branch.
	Branch string
	// Files maps repository paths to the content they must have.
	Files map[string][]byte
	// Delete lists paths to remove (absent ones are ignored).
	Delete []string
	// Message is the subject and body; Trailers follow it.
	Message  string
	Trailers []Trailer
	// Check, if set, sees the current content of every path the change writes or deletes (nil
	// when absent) on the head it is about to commit onto; an error aborts the change with a
	// conflict naming the file, and is not retried.
	Check func(path string, current []byte) error
	// Pinned maps paths the change does not write to the content they must still hold (nil:
	// absent) on the head it commits onto, or it aborts with a conflict (ErrChanged): a writer
	// whose right to write comes from a file (pair.yaml's active) is fenced by it.
	Pinned map[string][]byte
}

// Trailer is one "Key: value" line that ends a commit message. gitops/trailer holds the keys of
// the contract, formats and parses them; the type is here because a Change carries them and this
// package imports none of its subpackages.
type Trailer struct {
	Key, Value string
}

// Commit is a commit of the branch's history as the pure packages weigh it (who last wrote a
// file); gitops/gitrepo reads it.
type Commit struct {
	Hash string
	// Merge is true for a commit with more than one parent: it brings others' changes in and
	// writes none of its own.
	Merge bool
	// Trailers are the message's well-formed Mpha-* trailers, in order.
	Trailers []Trailer
}

// ErrChanged reports a file another writer changed after the change was planned.
var ErrChanged = errors.New("changed by another writer")

// Since returns a Check for a change planned from base (paths → content as read; a path absent
// from base was absent). It refuses, naming the file, a path whose content changed since it was
// read — another writer got there first — unless it already holds what the change writes; then
// it applies next (CheckOwned, say), if any.
func Since(base map[string][]byte, ch Change, next func(path string, current []byte) error) func(string, []byte) error {
	return func(p string, current []byte) error {
		want, writes := ch.Files[p]
		was, existed := base[p]
		switch {
		case writes && bytes.Equal(current, want):
		case existed && current != nil && bytes.Equal(current, was):
		case !existed && current == nil:
		default:
			return fmt.Errorf("%w: it changed since it was read", ErrChanged)
		}
		if next != nil {
			return next(p, current)
		}
		return nil
	}
}
