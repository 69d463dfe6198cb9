package gitrepo

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// fileTree is what reading paths needs of a tree of files: a commit's tree, read from the object
// store (Writer.Read, History.Read). It reports an absent path or folder as fs.ErrNotExist.
type fileTree interface {
	readFile(p string) ([]byte, error)
	readDir(dir string) ([]entry, error)
}

type entry struct {
	name string
	dir  bool
}

// readInto reads p into into. A path ending in "/" reads every file directly inside the folder,
// one ending in "/**" every file below it; absent paths are left out.
func readInto(t fileTree, p string, into map[string][]byte) error {
	if dir, ok := strings.CutSuffix(p, "/**"); ok {
		return readDir(t, dir, true, into)
	}
	if dir, ok := strings.CutSuffix(p, "/"); ok {
		return readDir(t, dir, false, into)
	}
	b, err := t.readFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", p, err)
	}
	into[p] = b
	return nil
}

func readDir(t fileTree, dir string, below bool, into map[string][]byte) error {
	entries, err := t.readDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, e := range entries {
		sub := path.Join(dir, e.name)
		switch {
		case e.dir && below:
			sub += "/**"
		case e.dir:
			continue
		}
		if err := readInto(t, sub, into); err != nil {
			return err
		}
	}
	return nil
}

// commitTree is a commit's tree, read from the object store without a work tree.
type commitTree struct{ tree *object.Tree }

func (c commitTree) readFile(p string) ([]byte, error) {
	f, err := c.tree.File(p)
	if errors.Is(err, object.ErrFileNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, err
	}
	s, err := f.Contents()
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

func (c commitTree) readDir(dir string) ([]entry, error) {
	t, err := c.tree.Tree(dir)
	if errors.Is(err, object.ErrDirectoryNotFound) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, err
	}
	out := make([]entry, 0, len(t.Entries))
	for _, e := range t.Entries {
		// A submodule (a gitlink) is neither a file nor a folder of this repository.
		if e.Mode == filemode.Dir || e.Mode.IsFile() {
			out = append(out, entry{name: e.Name, dir: e.Mode == filemode.Dir})
		}
	}
	return out, nil
}
