// Package failback turns the old active of a failover into a proper standby again (docs/design.md
// §5, "Failback"). The failover left it demoted: tsb/iam at 0 and its restore
// job suspended, because until the new active re-seeds it — every secret sealed for it, its
// standby values rendered from the new active's release — restoring the new active's backups into
// it would pair a database with the wrong keys. Assess reads the GitOps repository and says
// whether that re-seeding has happened; Change is the commit that then re-enables the restore
// job. After it, the pair is ready to fail back: a planned failover in the other direction.
//
// It reads Git only, so it works from a workstation with nothing but the repository; what the
// demoted cluster's Flux and sealed-secrets did with those files is the readiness checks' part
// (`mpha doctor`, the agent's readiness ConfigMap).
package failback

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/audit"
	"github.com/mpha-dev/mpha/gitops/role"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/trailer"
)

// Kind is the Mpha-Kind trailer of the commit that re-enables the restore job.
const Kind = "failback-prepare"

// The checks of an assessment.
const (
	CheckSecrets = "secrets" // every exported secret sealed for the demoted cluster by the new active
	CheckValues  = "values"  // the demoted cluster's standby HelmRelease written by the new active
	CheckRestore = "restore" // the demoted cluster's restore job: suspended (to enable) or enabled
)

// Result of a check.
type Result string

// Results.
const (
	Pass Result = "pass"
	Fail Result = "fail"
)

// Check is one finding with the evidence behind it (paths, commits, fingerprints: nothing secret).
type Check struct {
	Name     string `json:"name"`
	Result   Result `json:"result"`
	Evidence string `json:"evidence"`
}

// Assessment says whether the demoted cluster is re-seeded.
type Assessment struct {
	// Active is the new active; Demoted the old active, now standby; Event the failover.
	Active, Demoted, Event string
	Epoch                  int64
	// Commit is the head the assessment read.
	Commit string
	Checks []Check
	// Restore is the demoted cluster's restore job (nil: it has none, as with an external
	// database); Suspended whether role.yaml keeps it suspended.
	Restore   *role.Restore
	Suspended bool
	// role is the demoted cluster's role.yaml as read.
	role     role.Role
	roleFile []byte
}

// Ready reports whether every check passed: the restore job may be enabled.
func (a Assessment) Ready() bool {
	for _, c := range a.Checks {
		if c.Result != Pass {
			return false
		}
	}
	return true
}

// Prepared reports whether nothing is left to do: re-seeded, and the restore job running (or none).
func (a Assessment) Prepared() bool { return a.Ready() && !a.Suspended }

// ErrNoFailover reports a pair.yaml with no failover recorded: there is nothing to fail back from.
var ErrNoFailover = errors.New("pair.yaml records no failover: there is no demoted cluster to prepare")

// Assess reads branch of repo (audit.Open opens a URL or a checkout) and assesses the cluster
// the last failover demoted.
func Assess(ctx context.Context, repo *gogit.Repository, branch string, l gitops.Layout) (Assessment, error) {
	head, err := tip(repo, branch)
	if err != nil {
		return Assessment{}, err
	}
	tree, err := head.Tree()
	if err != nil {
		return Assessment{}, fmt.Errorf("reading %s: %w", branch, err)
	}
	pairFile, ok, err := file(tree, l.Pair())
	if err != nil || !ok {
		return Assessment{}, errors.Join(fmt.Errorf("reading %s", l.Pair()), err)
	}
	pair, err := gitops.ParsePair(pairFile)
	if err != nil {
		return Assessment{}, err
	}
	if pair.LastFailover == nil {
		return Assessment{}, ErrNoFailover
	}
	a := Assessment{Active: pair.Active, Demoted: pair.LastFailover.From, Event: pair.LastFailover.Event, Epoch: pair.Epoch,
		Commit: head.Hash.String()}
	if a.Demoted == a.Active {
		return Assessment{}, fmt.Errorf("pair.yaml's last failover (%s) came from %s, which is active again", a.Event, a.Demoted)
	}
	entries, err := audit.Log(ctx, repo, audit.Options{Branch: branch})
	if err != nil {
		return Assessment{}, err
	}
	byCommit := map[string]audit.Entry{}
	for _, e := range entries {
		byCommit[e.Commit] = e
	}
	last := func(p string) (audit.Entry, bool, error) {
		h, err := lastChange(ctx, repo, head.Hash, p)
		if err != nil || h.IsZero() {
			return audit.Entry{}, false, err
		}
		e, ok := byCommit[h.String()]
		if !ok {
			e = audit.Entry{Commit: h.String()}
		}
		return e, true, nil
	}
	c, err := a.secrets(tree, l, last)
	if err != nil {
		return Assessment{}, err
	}
	a.Checks = append(a.Checks, c)
	if c, err = a.values(tree, l, last); err != nil {
		return Assessment{}, err
	}
	a.Checks = append(a.Checks, c)
	if c, err = a.restore(tree, l); err != nil {
		return Assessment{}, err
	}
	a.Checks = append(a.Checks, c)
	return a, nil
}

// secrets: the secrets the pair exports are those sealed for either cluster; each must be in the
// demoted cluster's folder, sealed for its current certificate, last written by the new active.
func (a *Assessment) secrets(tree *object.Tree, l gitops.Layout, last func(string) (audit.Entry, bool, error)) (Check, error) {
	c := Check{Name: CheckSecrets, Result: Fail}
	certPEM, ok, err := file(tree, l.SealingCert(a.Demoted))
	if err != nil {
		return c, err
	}
	if !ok {
		c.Evidence = fmt.Sprintf("%s is missing: %s's agent has not published its sealing certificate", l.SealingCert(a.Demoted), a.Demoted)
		return c, nil
	}
	cert, err := seal.ParseCert(certPEM)
	if err != nil {
		c.Evidence = fmt.Sprintf("%s: %v", l.SealingCert(a.Demoted), err)
		return c, nil
	}
	names := map[string]bool{}
	for _, cl := range []string{a.Active, a.Demoted} {
		for _, n := range list(tree, l.SecretsDir(cl)) {
			names[n] = true
		}
	}
	if len(names) == 0 {
		c.Evidence = "no secret is sealed for either cluster yet"
		return c, nil
	}
	var problems []string
	sorted := slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	})
	for _, n := range sorted {
		p := path.Join(l.SecretsDir(a.Demoted), n)
		b, ok, err := file(tree, p)
		if err != nil {
			return c, err
		}
		if !ok {
			problems = append(problems, strings.TrimSuffix(n, ".yaml")+": not sealed for "+a.Demoted)
			continue
		}
		st, err := seal.ReadStamp(b)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", n, err))
			continue
		}
		if st.CertFingerprint != cert.Fingerprint {
			problems = append(problems, fmt.Sprintf("%s: sealed for certificate %.16s…, %s's is %.16s…", n, st.CertFingerprint, a.Demoted, cert.Fingerprint))
			continue
		}
		e, ok, err := last(p)
		if err != nil {
			return c, err
		}
		if !ok || e.Kind != "secrets" || e.Cluster != a.Active {
			problems = append(problems, fmt.Sprintf("%s: last written by %s, not by the new active %s's export", n, who(e, ok), a.Active))
		}
	}
	if len(problems) > 0 {
		c.Evidence = strings.Join(problems, "; ")
		return c, nil
	}
	c.Result, c.Evidence = Pass, fmt.Sprintf("%d secrets sealed for %s (certificate %.16s…) by %s", len(names), a.Demoted, cert.Fingerprint, a.Active)
	return c, nil
}

// values: the demoted cluster's HelmRelease, last written by the new active's standby loop.
func (a *Assessment) values(tree *object.Tree, l gitops.Layout, last func(string) (audit.Entry, bool, error)) (Check, error) {
	c := Check{Name: CheckValues, Result: Fail}
	p := l.HelmRelease(a.Demoted)
	if _, ok, err := file(tree, p); err != nil || !ok {
		c.Evidence = p + " is missing: " + a.Active + "'s agent has not rendered " + a.Demoted + "'s standby values yet"
		return c, err
	}
	e, ok, err := last(p)
	if err != nil {
		return c, err
	}
	if !ok || e.Kind != "values" || e.Cluster != a.Active {
		c.Evidence = fmt.Sprintf("%s was last written by %s, not rendered from %s's release", p, who(e, ok), a.Active)
		return c, nil
	}
	c.Result, c.Evidence = Pass, fmt.Sprintf("%s rendered by %s in %.12s", p, a.Active, e.Commit)
	return c, nil
}

// restore reads the demoted cluster's role.yaml: the job to enable, if any.
func (a *Assessment) restore(tree *object.Tree, l gitops.Layout) (Check, error) {
	c := Check{Name: CheckRestore, Result: Pass}
	p := l.Role(a.Demoted)
	b, ok, err := file(tree, p)
	if err != nil {
		return c, err
	}
	if !ok {
		c.Evidence = p + " is absent: no restore job to enable"
		return c, nil
	}
	r, err := role.Parse(b)
	if err != nil {
		c.Result, c.Evidence = Fail, fmt.Sprintf("%s: %v", p, err)
		return c, nil
	}
	a.role, a.roleFile, a.Restore, a.Suspended = r, b, r.Restore, r.RestoreSuspended
	switch {
	case r.Replicas != 0:
		c.Result, c.Evidence = Fail, fmt.Sprintf("%s scales the MP to %d: %s is not a standby in Git", p, r.Replicas, a.Demoted)
	case r.Restore == nil:
		c.Evidence = p + " has no restore job: nothing to enable"
	case r.RestoreSuspended:
		c.Evidence = fmt.Sprintf("%s keeps %s suspended since the failover", p, r.Restore.Name)
	default:
		c.Evidence = fmt.Sprintf("%s runs %s already", p, r.Restore.Name)
	}
	return c, nil
}

// Change is the commit that re-enables the demoted cluster's restore job, checked against the
// role.yaml the assessment read (a role that changed since is a conflict, not overwritten).
func Change(a Assessment, l gitops.Layout) (gitops.Change, error) {
	if !a.Ready() {
		return gitops.Change{}, fmt.Errorf("%s is not re-seeded yet: %s", a.Demoted, a.failing())
	}
	if !a.Suspended {
		return gitops.Change{}, fmt.Errorf("%s's restore job is not suspended: nothing to prepare", a.Demoted)
	}
	r := a.role
	r.RestoreSuspended = false
	b, err := r.Marshal()
	if err != nil {
		return gitops.Change{}, fmt.Errorf("rendering %s: %w", l.Role(a.Demoted), err)
	}
	p := l.Role(a.Demoted)
	ch := gitops.Change{
		Files: map[string][]byte{p: b},
		Message: fmt.Sprintf("failback prepare: %s is re-seeded by %s; resume its %s\n\n%s became standby in failover %s (epoch %d). "+
			"Its secrets and values now come from %s:\n%s\nWith its restore job running again it is a proper standby, and failing back "+
			"is a planned failover to %s.", a.Demoted, a.Active, a.Restore.Name, a.Demoted, a.Event, a.Epoch, a.Active, a.table(), a.Demoted),
		Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: Kind}, {Key: trailer.Cluster, Value: a.Demoted},
			{Key: trailer.Event, Value: a.Event}, {Key: trailer.Epoch, Value: fmt.Sprint(a.Epoch)}},
	}
	ch.Check = gitops.Since(map[string][]byte{p: a.roleFile}, ch, gitops.CheckOwned)
	return ch, nil
}

func (a Assessment) table() string {
	var b strings.Builder
	for _, c := range a.Checks {
		fmt.Fprintf(&b, "- %s: %s — %s\n", c.Name, c.Result, c.Evidence)
	}
	return b.String()
}

func (a Assessment) failing() string {
	var out []string
	for _, c := range a.Checks {
		if c.Result != Pass {
			out = append(out, c.Name+" ("+c.Evidence+")")
		}
	}
	return strings.Join(out, "; ")
}

func who(e audit.Entry, ok bool) string {
	switch {
	case !ok:
		return "no commit"
	case e.Kind == "":
		return fmt.Sprintf("commit %.12s (no mpha trailers)", e.Commit)
	case e.Cluster == "":
		return fmt.Sprintf("a %s commit %.12s", e.Kind, e.Commit)
	}
	return fmt.Sprintf("%s's %s commit %.12s", e.Cluster, e.Kind, e.Commit)
}

func tip(repo *gogit.Repository, branch string) (*object.Commit, error) {
	if branch == "" {
		branch = audit.DefaultBranch
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName(branch), true)
	if err != nil {
		// A clone by audit.Open has the branch as a remote-tracking or local ref; a checkout's HEAD.
		if ref, err = repo.Reference(plumbing.NewRemoteReferenceName("origin", branch), true); err != nil {
			return nil, fmt.Errorf("branch %s: %w", branch, err)
		}
	}
	c, err := repo.CommitObject(ref.Hash())
	if err != nil {
		return nil, fmt.Errorf("branch %s: %w", branch, err)
	}
	return c, nil
}

func file(tree *object.Tree, p string) ([]byte, bool, error) {
	f, err := tree.File(p)
	if errors.Is(err, object.ErrFileNotFound) || errors.Is(err, object.ErrDirectoryNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", p, err)
	}
	s, err := f.Contents()
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", p, err)
	}
	return []byte(s), true, nil
}

// list names the files directly in dir.
func list(tree *object.Tree, dir string) []string {
	t, err := tree.Tree(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range t.Entries {
		if e.Mode.IsFile() {
			out = append(out, e.Name)
		}
	}
	return out
}

// lastChange is the newest commit from head whose change touches p (zero hash: none).
func lastChange(ctx context.Context, repo *gogit.Repository, head plumbing.Hash, p string) (plumbing.Hash, error) {
	it, err := repo.Log(&gogit.LogOptions{From: head, FileName: &p})
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("history of %s: %w", p, err)
	}
	defer it.Close()
	c, err := it.Next()
	if err != nil {
		if ctx.Err() != nil {
			return plumbing.ZeroHash, ctx.Err()
		}
		return plumbing.ZeroHash, nil
	}
	return c.Hash, nil
}
