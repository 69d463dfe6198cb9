// Package failback turns the old active of a failover into a proper standby again (docs/design.md
// §5, "Failback"). The failover left it demoted: tsb/iam at 0 and its restore
// job suspended, because until the new active re-seeds it — every secret sealed for it, its
// standby values rendered from the new active's release — restoring the new active's backups into
// it would pair a database with the wrong keys. Assess weighs the GitOps repository's files and
// who last wrote them, and says whether that re-seeding has happened; Change is the commit that
// then re-enables the restore job. After it, the pair is ready to fail back: a planned failover in
// the other direction.
//
// It is pure: the caller reads the files (Inputs) and the last commit of those Authored names
// (gitops/gitrepo's History), so it works from a workstation with nothing but the repository;
// what the demoted cluster's Flux and sealed-secrets did with those files is the readiness
// checks' part (`mpha doctor`, the agent's readiness ConfigMap). It imports no Git.
package failback

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/mpha-dev/mpha/gitops"
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

// Input is the repository as Assess weighs it.
type Input struct {
	// Commit is the commit Files were read at.
	Commit string
	// Files are what Inputs names, as read at Commit (absent paths left out).
	Files map[string][]byte
	// Last maps each path Authored names to the newest commit that changed it (absent: none).
	Last map[string]gitops.Commit
}

// Inputs are the paths Assess reads, for gitrepo's Read: pair.yaml and the clusters' folders.
func Inputs(l gitops.Layout) []string {
	return []string{l.Pair(), l.Root() + "/clusters/**"}
}

// Authored names the files of files (read from Inputs) whose last commit Assess weighs: the
// demoted cluster's sealed secrets and its HelmRelease, as far as they exist.
func Authored(files map[string][]byte, l gitops.Layout) ([]string, error) {
	pair, err := lastFailover(files, l)
	if err != nil {
		return nil, err
	}
	demoted := pair.LastFailover.From
	var out []string
	for _, n := range list(files, l.SecretsDir(demoted)) {
		out = append(out, path.Join(l.SecretsDir(demoted), n))
	}
	if _, ok := files[l.HelmRelease(demoted)]; ok {
		out = append(out, l.HelmRelease(demoted))
	}
	return out, nil
}

// Assess assesses the cluster the last failover demoted.
func Assess(in Input, l gitops.Layout) (Assessment, error) {
	pair, err := lastFailover(in.Files, l)
	if err != nil {
		return Assessment{}, err
	}
	a := Assessment{Active: pair.Active, Demoted: pair.LastFailover.From, Event: pair.LastFailover.Event, Epoch: pair.Epoch,
		Commit: in.Commit}
	if a.Demoted == a.Active {
		return Assessment{}, fmt.Errorf("pair.yaml's last failover (%s) came from %s, which is active again", a.Event, a.Demoted)
	}
	a.Checks = append(a.Checks, a.secrets(in, l), a.values(in, l), a.restore(in.Files, l))
	return a, nil
}

// lastFailover is pair.yaml, which must record a failover.
func lastFailover(files map[string][]byte, l gitops.Layout) (*gitops.Pair, error) {
	raw, ok := files[l.Pair()]
	if !ok {
		return nil, fmt.Errorf("reading %s: it is not in the repository", l.Pair())
	}
	pair, err := gitops.ParsePair(raw)
	if err != nil {
		return nil, err
	}
	if pair.LastFailover == nil {
		return nil, ErrNoFailover
	}
	return pair, nil
}

// secrets: the secrets the pair exports are those sealed for either cluster; each must be in the
// demoted cluster's folder, sealed for its current certificate, last written by the new active.
func (a *Assessment) secrets(in Input, l gitops.Layout) Check {
	c := Check{Name: CheckSecrets, Result: Fail}
	certPEM, ok := in.Files[l.SealingCert(a.Demoted)]
	if !ok {
		c.Evidence = fmt.Sprintf("%s is missing: %s's agent has not published its sealing certificate", l.SealingCert(a.Demoted), a.Demoted)
		return c
	}
	cert, err := seal.ParseCert(certPEM)
	if err != nil {
		c.Evidence = fmt.Sprintf("%s: %v", l.SealingCert(a.Demoted), err)
		return c
	}
	var names []string
	for _, cl := range []string{a.Active, a.Demoted} {
		names = append(names, list(in.Files, l.SecretsDir(cl))...)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	if len(names) == 0 {
		c.Evidence = "no secret is sealed for either cluster yet"
		return c
	}
	var problems []string
	for _, n := range names {
		if p := a.secret(in, l, n, cert); p != "" {
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		c.Evidence = strings.Join(problems, "; ")
		return c
	}
	c.Result, c.Evidence = Pass, fmt.Sprintf("%d secrets sealed for %s (certificate %.16s…) by %s", len(names), a.Demoted, cert.Fingerprint, a.Active)
	return c
}

// secret is the problem with the demoted cluster's copy of secret file n, or "".
func (a *Assessment) secret(in Input, l gitops.Layout, n string, cert seal.Cert) string {
	p := path.Join(l.SecretsDir(a.Demoted), n)
	b, ok := in.Files[p]
	if !ok {
		return strings.TrimSuffix(n, ".yaml") + ": not sealed for " + a.Demoted
	}
	st, err := seal.ReadStamp(b)
	if err != nil {
		return fmt.Sprintf("%s: %v", n, err)
	}
	if st.CertFingerprint != cert.Fingerprint {
		return fmt.Sprintf("%s: sealed for certificate %.16s…, %s's is %.16s…", n, st.CertFingerprint, a.Demoted, cert.Fingerprint)
	}
	if kind, cluster, w := in.author(p); kind != "secrets" || cluster != a.Active {
		return fmt.Sprintf("%s: last written by %s, not by the new active %s's export", n, w, a.Active)
	}
	return ""
}

// values: the demoted cluster's HelmRelease, last written by the new active's standby loop.
func (a *Assessment) values(in Input, l gitops.Layout) Check {
	c := Check{Name: CheckValues, Result: Fail}
	p := l.HelmRelease(a.Demoted)
	if _, ok := in.Files[p]; !ok {
		c.Evidence = p + " is missing: " + a.Active + "'s agent has not rendered " + a.Demoted + "'s standby values yet"
		return c
	}
	if kind, cluster, w := in.author(p); kind != "values" || cluster != a.Active {
		c.Evidence = fmt.Sprintf("%s was last written by %s, not rendered from %s's release", p, w, a.Active)
		return c
	}
	c.Result, c.Evidence = Pass, fmt.Sprintf("%s rendered by %s in %.12s", p, a.Active, in.Last[p].Hash)
	return c
}

// restore reads the demoted cluster's role.yaml: the job to enable, if any.
func (a *Assessment) restore(files map[string][]byte, l gitops.Layout) Check {
	c := Check{Name: CheckRestore, Result: Pass}
	p := l.Role(a.Demoted)
	b, ok := files[p]
	if !ok {
		c.Evidence = p + " is absent: no restore job to enable"
		return c
	}
	r, err := role.Parse(b)
	if err != nil {
		c.Result, c.Evidence = Fail, fmt.Sprintf("%s: %v", p, err)
		return c
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
	return c
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

// author is who last wrote p, as that commit's trailers say: its Mpha-Kind and Mpha-Cluster
// (empty when absent or malformed; a merge writes nothing of its own), and a phrase naming it.
func (in Input) author(p string) (kind, cluster, who string) {
	c, ok := in.Last[p]
	if !ok {
		return "", "", "no commit"
	}
	if !c.Merge {
		kind, cluster = value(c.Trailers, trailer.Kind), value(c.Trailers, trailer.Cluster)
	}
	switch {
	case kind == "":
		return kind, cluster, fmt.Sprintf("commit %.12s (no mpha trailers)", c.Hash)
	case cluster == "":
		return kind, cluster, fmt.Sprintf("a %s commit %.12s", kind, c.Hash)
	}
	return kind, cluster, fmt.Sprintf("%s's %s commit %.12s", cluster, kind, c.Hash)
}

// value is the first trailer of key, if the contract accepts it (as `mpha audit` reads it).
func value(ts []trailer.Trailer, key string) string {
	v, ok := trailer.Get(ts, key)
	if !ok || trailer.Check(trailer.Trailer{Key: key, Value: v}) != nil {
		return ""
	}
	return v
}

// list names the files directly in dir.
func list(files map[string][]byte, dir string) []string {
	var out []string
	for p := range files {
		if name, ok := strings.CutPrefix(p, dir+"/"); ok && !strings.Contains(name, "/") {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
