package gitrepo

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	fdiff "github.com/go-git/go-git/v5/plumbing/format/diff"
	"github.com/go-git/go-git/v5/utils/diff"
	"github.com/sergi/go-diff/diffmatchpatch"

	"github.com/mpha-dev/mpha/gitops"
)

// DiffContext is the number of unchanged lines around each change, as git's default.
const DiffContext = fdiff.DefaultContextLines

// Diff is ch as `git diff` shows it against base, the files ch was planned from (paths → content;
// a path absent from base did not exist): per file, hunks of changed lines with DiffContext lines
// around them, a new file as added, a deleted one as removed, in path order. Files ch writes
// unchanged are left out. The blob ids on the index lines are real, so `git apply` takes it.
func Diff(base map[string][]byte, ch gitops.Change) (string, error) {
	var patch filePatches
	for p := range ch.Files {
		from, existed := base[p]
		to := ch.Files[p]
		switch {
		case !existed:
			patch = append(patch, newFilePatch(p, nil, to))
		case string(from) != string(to):
			patch = append(patch, newFilePatch(p, from, to))
		}
	}
	for _, p := range slices.Compact(slices.Sorted(slices.Values(ch.Delete))) {
		if from, ok := base[p]; ok {
			if _, written := ch.Files[p]; !written {
				patch = append(patch, newFilePatch(p, from, nil))
			}
		}
	}
	slices.SortFunc(patch, func(a, b *filePatch) int { return strings.Compare(a.path(), b.path()) })
	var b strings.Builder
	if err := fdiff.NewUnifiedEncoder(&b, DiffContext).Encode(patch); err != nil {
		return "", fmt.Errorf("rendering the diff: %w", err)
	}
	return b.String(), nil
}

// filePatches, filePatch, file and chunk give go-git's unified encoder the files in memory, as
// go-git's object.Patch gives it the files of two commits.
type filePatches []*filePatch

func (p filePatches) FilePatches() []fdiff.FilePatch {
	out := make([]fdiff.FilePatch, len(p))
	for i, fp := range p {
		out[i] = fp
	}
	return out
}

func (filePatches) Message() string { return "" }

type filePatch struct {
	from, to *file // nil: absent
	binary   bool
	chunks   []fdiff.Chunk
}

// newFilePatch is the patch from from to to (nil: absent), line by line.
func newFilePatch(path string, from, to []byte) *filePatch {
	fp := &filePatch{}
	if from != nil {
		fp.from = &file{p: path, hash: plumbing.ComputeHash(plumbing.BlobObject, from)}
	}
	if to != nil {
		fp.to = &file{p: path, hash: plumbing.ComputeHash(plumbing.BlobObject, to)}
	}
	// As git: content that is not text is named, not shown.
	if !utf8.Valid(from) || !utf8.Valid(to) || strings.ContainsRune(string(from)+string(to), 0) {
		fp.binary = true
		return fp
	}
	for _, d := range diff.Do(string(from), string(to)) {
		op := fdiff.Equal
		switch d.Type {
		case diffmatchpatch.DiffInsert:
			op = fdiff.Add
		case diffmatchpatch.DiffDelete:
			op = fdiff.Delete
		}
		fp.chunks = append(fp.chunks, chunk{d.Text, op})
	}
	return fp
}

func (fp *filePatch) path() string {
	if fp.to != nil {
		return fp.to.p
	}
	return fp.from.p
}

func (fp *filePatch) IsBinary() bool { return fp.binary }

// Files returns the two sides, an absent one as a nil interface (not a nil *file): the encoder
// tells an added or deleted file by that.
func (fp *filePatch) Files() (fdiff.File, fdiff.File) {
	var from, to fdiff.File
	if fp.from != nil {
		from = fp.from
	}
	if fp.to != nil {
		to = fp.to
	}
	return from, to
}

func (fp *filePatch) Chunks() []fdiff.Chunk { return fp.chunks }

type file struct {
	p    string
	hash plumbing.Hash
}

func (f *file) Hash() plumbing.Hash     { return f.hash }
func (f *file) Mode() filemode.FileMode { return filemode.Regular }
func (f *file) Path() string            { return f.p }

type chunk struct {
	content string
	op      fdiff.Operation
}

func (c chunk) Content() string       { return c.content }
func (c chunk) Type() fdiff.Operation { return c.op }
