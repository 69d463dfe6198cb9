package gitrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	extgogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/storage"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
)

// DefaultStoreUses is how many calls a store serves before it is rebuilt from a fresh fetch:
// every write leaves its replaced blobs and trees behind, and rebuilding is what bounds them.
const DefaultStoreUses = 200

// store is the repository a Writer keeps between calls, so that a write costs what it changes
// and not what the repository holds: a bare, shallow repository (in memory, or on disk under
// Options.CacheDir) that each call brings up to date with a depth-1 fetch of the branches it
// needs. A commit is built from the trees and blobs of the paths it changes, and pushed as a
// compare-and-swap of the branch, so the server itself refuses it when another writer moved the
// branch first. Writer drops the store after DefaultStoreUses calls and after any failure that
// may have left it inconsistent; the next call starts from an empty one.
type store struct {
	repo *extgogit.Repository
	st   storage.Storer
	dir  string   // "" in memory
	lock *os.File // held while the on-disk store is in use
	uses int
}

// openStore makes an empty store with origin pointing at the writer's URL.
func (w *Writer) openStore() (*store, error) {
	s := &store{}
	if w.opts.CacheDir == "" {
		s.st = memory.NewStorage()
	} else {
		if err := os.MkdirAll(w.opts.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("git cache: %w", err)
		}
		dir, err := os.MkdirTemp(w.opts.CacheDir, "repo-")
		if err != nil {
			return nil, fmt.Errorf("git cache: %w", err)
		}
		s.dir = dir
		if s.lock, err = lockDir(dir); err != nil {
			s.close()
			return nil, fmt.Errorf("git cache: %w", err)
		}
		pruneStores(w.opts.CacheDir, dir, w.log)
		// A small object cache: a write reads a handful of trees, never the whole pack.
		s.st = filesystem.NewStorage(osfs.New(dir), cache.NewObjectLRU(4*cache.MiByte))
	}
	repo, err := extgogit.Init(s.st, nil)
	if err != nil {
		s.close()
		return nil, fmt.Errorf("git cache: %w", err)
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: extgogit.DefaultRemoteName, URLs: []string{w.opts.URL}}); err != nil {
		s.close()
		return nil, fmt.Errorf("git cache: %w", err)
	}
	s.repo = repo
	return s, nil
}

func (s *store) close() {
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
	}
	if s.lock != nil {
		_ = s.lock.Close()
	}
}

// lockDir holds an exclusive lock on dir's lock file for as long as the file stays open: a store
// nobody holds is a leftover of a process that ended without Close (a restarted container).
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, storeLock), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", dir, err)
	}
	return f, nil
}

const storeLock = "mpha.lock"

// pruneStores removes the stores under cacheDir that no process holds, except own. A folder
// without a lock file is left alone for a minute: its writer may be about to take it.
func pruneStores(cacheDir, own string, log *slog.Logger) {
	dirs, _ := filepath.Glob(filepath.Join(cacheDir, "repo-*"))
	for _, d := range dirs {
		if d == own {
			continue
		}
		f, err := os.OpenFile(filepath.Join(d, storeLock), os.O_RDWR, 0)
		if err != nil {
			if fi, serr := os.Stat(d); serr == nil && time.Since(fi.ModTime()) > time.Minute {
				_ = os.RemoveAll(d)
			}
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			if err := os.RemoveAll(d); err == nil {
				log.Info("removed a Git store no process holds", "dir", d)
			}
		}
		f.Close()
	}
}

// withStore runs fn on the writer's store, one call at a time. The store is rebuilt when it has
// served its share of calls, and dropped when fn fails for any reason but a push that lost its
// race (which leaves it as sound as before).
func (w *Writer) withStore(fn func(s *store) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.store != nil && w.store.uses >= DefaultStoreUses {
		w.store.close()
		w.store = nil
	}
	if w.store == nil {
		s, err := w.openStore()
		if err != nil {
			return &permanentError{err}
		}
		w.store = s
	}
	w.store.uses++
	err := fn(w.store)
	var lost *lostRaceError
	var ce *ConflictError
	if err != nil && !errors.As(err, &lost) && !errors.As(err, &ce) && !branchMissing(err) {
		w.store.close()
		w.store = nil
	}
	return err
}

// Close removes the writer's on-disk store, if any. A Writer may be used again after Close.
func (w *Writer) Close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.store != nil {
		w.store.close()
		w.store = nil
	}
}

func remoteRef(branch string) plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName(extgogit.DefaultRemoteName, branch)
}

func fetchSpec(branch string) config.RefSpec {
	return config.RefSpec("+" + plumbing.NewBranchReferenceName(branch).String() + ":" + remoteRef(branch).String())
}

// fetch brings the named branches up to date, at depth 1: only the objects the store lacks
// travel. A branch that does not exist makes it fail with branchMissing.
func (w *Writer) fetch(ctx context.Context, s *store, branches ...string) error {
	specs := make([]config.RefSpec, 0, len(branches))
	for _, b := range branches {
		specs = append(specs, fetchSpec(b))
	}
	a := w.opts.Auth
	err := s.repo.FetchContext(ctx, &extgogit.FetchOptions{
		RemoteName: extgogit.DefaultRemoteName, RefSpecs: specs, Depth: 1, Tags: extgogit.NoTags,
		Auth: w.auth, CABundle: a.CAFile, ClientCert: a.ClientCert, ClientKey: a.ClientKey,
	})
	if errors.Is(err, extgogit.NoErrAlreadyUpToDate) {
		return nil
	}
	return err
}

// head is the commit branch's remote-tracking ref holds after a fetch.
func (s *store) head(branch string) (*object.Commit, error) {
	ref, err := s.repo.Reference(remoteRef(branch), true)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", branch, err)
	}
	c, err := s.repo.CommitObject(ref.Hash())
	if err != nil {
		return nil, fmt.Errorf("reading %s's head %s: %w", branch, ref.Hash(), err)
	}
	return c, nil
}

// edit is what a change does to one path.
type edit struct {
	data   []byte
	delete bool
}

func editsOf(files map[string][]byte, del []string) map[string]edit {
	edits := make(map[string]edit, len(files)+len(del))
	for p, b := range files {
		edits[p] = edit{data: b}
	}
	for _, p := range del {
		edits[p] = edit{delete: true}
	}
	return edits
}

// writeTree stores the tree that t (nil: none) becomes with edits applied (paths relative to
// it), and returns its hash, or the zero hash when nothing is left in it. Only the trees on the
// edited paths are read and written; the hashes of new objects are appended to added.
func writeTree(st storer.EncodedObjectStorer, t *object.Tree, edits map[string]edit, added *[]plumbing.Hash) (plumbing.Hash, error) {
	var entries []object.TreeEntry
	if t != nil {
		entries = slices.Clone(t.Entries)
	}
	here := map[string]edit{}
	below := map[string]map[string]edit{}
	for p, e := range edits {
		first, rest, nested := strings.Cut(p, "/")
		if !nested {
			here[first] = e
			continue
		}
		if below[first] == nil {
			below[first] = map[string]edit{}
		}
		below[first][rest] = e
	}
	find := func(name string) int {
		return slices.IndexFunc(entries, func(e object.TreeEntry) bool { return e.Name == name })
	}
	for name, e := range here {
		i := find(name)
		if i >= 0 && entries[i].Mode == filemode.Dir {
			return plumbing.ZeroHash, fmt.Errorf("%s is a folder", name)
		}
		if e.delete {
			if i >= 0 {
				entries = slices.Delete(entries, i, i+1)
			}
			continue
		}
		h, err := writeBlob(st, e.data)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("writing %s: %w", name, err)
		}
		if i >= 0 && entries[i].Hash == h && entries[i].Mode.IsFile() {
			continue
		}
		*added = append(*added, h)
		if i >= 0 {
			entries[i] = object.TreeEntry{Name: name, Mode: filemode.Regular, Hash: h}
		} else {
			entries = append(entries, object.TreeEntry{Name: name, Mode: filemode.Regular, Hash: h})
		}
	}
	for name, sub := range below {
		i := find(name)
		var subTree *object.Tree
		if i >= 0 {
			if entries[i].Mode != filemode.Dir {
				return plumbing.ZeroHash, fmt.Errorf("%s is a file", name)
			}
			var err error
			if subTree, err = object.GetTree(st, entries[i].Hash); err != nil {
				return plumbing.ZeroHash, fmt.Errorf("reading %s: %w", name, err)
			}
		}
		h, err := writeTree(st, subTree, sub, added)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("%s/%w", name, err)
		}
		switch {
		case h.IsZero() && i >= 0:
			entries = slices.Delete(entries, i, i+1)
		case h.IsZero():
		case i >= 0:
			entries[i].Hash = h
		default:
			entries = append(entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
		}
	}
	if len(entries) == 0 {
		return plumbing.ZeroHash, nil
	}
	// Git orders a tree's entries by name, a folder's name compared as if it ended in "/".
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	slices.SortFunc(entries, func(a, b object.TreeEntry) int { return strings.Compare(key(a), key(b)) })
	out := &object.Tree{Entries: entries}
	obj := st.NewEncodedObject()
	if err := out.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	h, err := st.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if t == nil || h != t.Hash {
		*added = append(*added, h)
	}
	return h, nil
}

func writeBlob(st storer.EncodedObjectStorer, data []byte) (plumbing.Hash, error) {
	obj := st.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	obj.SetSize(int64(len(data)))
	wr, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := wr.Write(data); err != nil {
		return plumbing.ZeroHash, err
	}
	if err := wr.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return st.SetEncodedObject(obj)
}

// commit stores a commit of tree onto parent, signed when the writer has a signer.
func (w *Writer) commit(st storer.EncodedObjectStorer, tree, parent plumbing.Hash, msg string) (plumbing.Hash, error) {
	sig := object.Signature{Name: w.opts.Author.Name, Email: w.opts.Author.Email, When: w.opts.Author.When}
	if sig.When.IsZero() {
		sig.When = time.Now()
	}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: tree, ParentHashes: []plumbing.Hash{parent}}
	if w.opts.Signer != nil {
		unsigned := &plumbing.MemoryObject{}
		if err := c.EncodeWithoutSignature(unsigned); err != nil {
			return plumbing.ZeroHash, err
		}
		r, err := unsigned.Reader()
		if err != nil {
			return plumbing.ZeroHash, err
		}
		s, err := w.opts.Signer.Sign(r)
		if err != nil {
			return plumbing.ZeroHash, &permanentError{fmt.Errorf("signing the commit: %w", err)}
		}
		c.PGPSignature = string(s)
	}
	obj := st.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return st.SetEncodedObject(obj)
}

// lostRaceError is a push the server refused because the branch is no longer where the commit
// was built on: another writer got there first.
type lostRaceError struct{ err error }

func (e *lostRaceError) Error() string { return e.err.Error() }
func (e *lostRaceError) Unwrap() error { return e.err }

// push sends objs and moves branch from old (zero: the branch must not exist) to new, in one
// receive-pack request: the server applies the update only while the branch is at old. This is
// what go-git's Remote.Push does after it has computed the objects to send, which it does by
// walking everything the remote's head reaches; here the objects are known, so nothing is walked.
func (w *Writer) push(ctx context.Context, s *store, branch string, old, new plumbing.Hash, objs []plumbing.Hash) error {
	ep, err := transport.NewEndpoint(w.opts.URL)
	if err != nil {
		return &permanentError{fmt.Errorf("git URL: %w", err)}
	}
	a := w.opts.Auth
	ep.CaBundle, ep.ClientCert, ep.ClientKey = a.CAFile, a.ClientCert, a.ClientKey
	cl, err := client.NewClient(ep)
	if err != nil {
		return &permanentError{fmt.Errorf("git transport: %w", err)}
	}
	sess, err := cl.NewReceivePackSession(ep, w.auth)
	if err != nil {
		return err
	}
	defer sess.Close()
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		return err
	}
	req := packp.NewReferenceUpdateRequestFromCapabilities(ar.Capabilities)
	req.Commands = []*packp.Command{{Name: plumbing.NewBranchReferenceName(branch), Old: old, New: new}}
	var pack bytes.Buffer
	if _, err := packfile.NewEncoder(&pack, s.st, false).Encode(objs, 0); err != nil {
		return fmt.Errorf("packing the commit: %w", err)
	}
	req.Packfile = io.NopCloser(&pack)
	rs, err := sess.ReceivePack(ctx, req)
	if err != nil {
		return err
	}
	if rs != nil {
		if err := rs.Error(); err != nil {
			return &lostRaceError{fmt.Errorf("the server refused the update of %s: %w", branch, err)}
		}
	}
	// The store now knows where the branch is without another fetch.
	return s.st.SetReference(plumbing.NewHashReference(remoteRef(branch), new))
}
