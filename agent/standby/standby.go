// Package standby is the active agent's values loop (docs/design.md §2, §3, §5): it reads the
// active management plane's Helm release, renders the standby's values, and commits the standby's
// Flux objects (HelmRepository + HelmRelease), both clusters' role.yaml and the mp/
// kustomization.yaml files. Like the exporter, a run recomputes every file from the cluster and
// Git; an unchanged release and unchanged Deployments commit nothing.
package standby

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mpha-dev/mpha/agent/release"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/role"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/gitops/values"
	"github.com/mpha-dev/mpha/internal/canonyaml"
	"github.com/mpha-dev/mpha/internal/runloop"
)

// Errors that mean "not yet": the loop waits for them quietly.
var (
	// ErrNoPair: pair.yaml is not in the repository yet.
	ErrNoPair = errors.New("pair.yaml is not in the repository")
	// ErrNoRelease: the management plane's Helm release has no deployed revision.
	ErrNoRelease = errors.New("the management plane's Helm release is not deployed")
)

// Role modes: where the standby's tsb/iam replicas live.
const (
	RoleModeManifest = "manifest" // role.yaml scales the Deployments
	RoleModeValues   = "values"   // the HelmRelease values set replicaCount 0
)

// Options configure a Publisher.
type Options struct {
	// Self is this cluster. The peer and the roles come from pair.yaml.
	Self string
	// Namespace and Release locate the MP's Helm release (default tsb, mp).
	Namespace, Release string
	Layout             gitops.Layout
	// ChartRepository (default values.DefaultChartRepository) and its credentials Secret.
	ChartRepository, ChartRepositorySecret string
	Overrides                              values.Overrides
	// SecretValues and NotSecret: what becomes of the credentials among the values (values.Options).
	SecretValues string
	NotSecret    []string
	// RoleMode is RoleModeManifest (default) or RoleModeValues.
	RoleMode string
	// Deployments a role scales (default tsb, iam); RestoreCronJob is the restore job (default
	// tsb-restore), written only where it exists.
	Deployments    []string
	RestoreCronJob string
	// Debounce and Resync as in runloop (defaults 2s, 1m).
	Debounce, Resync time.Duration
	// Wake, if set, subscribes to what may change this cluster's role (its Flux applying a
	// revision: a failover merged): a render then runs at once instead of at the next resync.
	Wake func() (<-chan struct{}, func())
	// Poll is how often Run looks at the release's newest revision (default 10s): the agent's
	// Role grants get on the revision Secrets by name, not the list and watch an informer needs.
	Poll   time.Duration
	Logger *slog.Logger
}

func (o Options) renderOptions() values.Options {
	return values.Options{Overrides: o.Overrides, SecretValues: o.SecretValues, NotSecret: o.NotSecret}
}

// Publisher writes the standby's management plane into Git while this cluster is active.
type Publisher struct {
	opts Options
	cs   kubernetes.Interface
	repo gitrepo.Repository
	log  *slog.Logger
	loop *runloop.Loop
	// releases remembers the newest revision between runs.
	releases *release.Reader
}

// New validates opts and returns a Publisher reading the cluster through cs.
func New(cs kubernetes.Interface, repo gitrepo.Repository, opts Options) (*Publisher, error) {
	var errs []error
	if err := gitops.ValidateClusterName(opts.Self); err != nil {
		errs = append(errs, err)
	}
	if opts.Layout == (gitops.Layout{}) {
		errs = append(errs, errors.New("a repository layout is required"))
	}
	if err := opts.renderOptions().Validate(); err != nil {
		errs = append(errs, err)
	}
	if opts.RoleMode == "" {
		opts.RoleMode = RoleModeManifest
	}
	if opts.RoleMode != RoleModeManifest && opts.RoleMode != RoleModeValues {
		errs = append(errs, fmt.Errorf("role mode %q: want %q or %q", opts.RoleMode, RoleModeManifest, RoleModeValues))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("standby publisher: %w", err)
	}
	if opts.Namespace == "" {
		opts.Namespace = "tsb"
	}
	if opts.Release == "" {
		opts.Release = "mp"
	}
	if opts.ChartRepository == "" {
		opts.ChartRepository = values.DefaultChartRepository
	}
	if len(opts.Deployments) == 0 {
		opts.Deployments = []string{"tsb", "iam"}
	}
	if opts.RestoreCronJob == "" {
		opts.RestoreCronJob = "tsb-restore"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("cluster", opts.Self)
	if opts.Poll <= 0 {
		opts.Poll = 10 * time.Second
	}
	loop := runloop.New(runloop.Options{Name: "standby values", Debounce: opts.Debounce, Resync: opts.Resync, Logger: log,
		Waiting: func(err error) bool { return errors.Is(err, ErrNoPair) || errors.Is(err, ErrNoRelease) }})
	return &Publisher{opts: opts, cs: cs, repo: repo, log: log, loop: loop,
		releases: release.NewReader(cs, opts.Namespace, opts.Release)}, nil
}

// Report says what one run did.
type Report struct {
	// Standby is false when this cluster is not the active one: nothing was written.
	Active bool
	Peer   string
	// Revision is the Helm release revision the values were rendered from.
	Revision int
	// Changed lists the files committed; Commit is the commit, "" when nothing changed.
	Changed []string
	Commit  string
	// Warnings are problems a person should look at (a Deployment with no known selector...).
	Warnings []string
	// Stripped are the paths of the credentials removed from the values (never the values).
	Stripped []string
}

// RunOnce renders and commits once.
func (p *Publisher) RunOnce(ctx context.Context) (Report, error) {
	l := p.opts.Layout
	// One clone per run: pair.yaml and every cluster's mp/ folder (the peer comes from pair.yaml).
	snap, err := p.repo.Read(ctx, l.Pair(), path(l.Root(), "clusters/**"))
	if err != nil {
		return Report{}, err
	}
	raw, ok := snap.Files[l.Pair()]
	if !ok {
		return Report{}, fmt.Errorf("%w: %s", ErrNoPair, l.Pair())
	}
	pair, err := gitops.ParsePair(raw)
	if err != nil {
		return Report{}, fmt.Errorf("%s: %w", l.Pair(), err)
	}
	peer, err := pair.Peer(p.opts.Self)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Peer: peer, Active: pair.Active == p.opts.Self}
	if !rep.Active {
		p.log.Debug("standby values: this cluster is the standby; the active writes them")
		return rep, nil
	}
	rel, err := p.releases.Latest(ctx)
	if errors.Is(err, release.ErrNotFound) {
		return Report{}, fmt.Errorf("%w: %v", ErrNoRelease, err)
	}
	if err != nil {
		return Report{}, err
	}
	rep.Revision = rel.Revision
	files, r, err := p.render(ctx, pair, peer, rel, snap.Files)
	if err != nil {
		return Report{}, err
	}
	rep.Warnings, rep.Stripped = r.warnings, r.stripped
	ch := gitops.Change{Files: map[string][]byte{}}
	for _, path := range slices.Sorted(maps.Keys(files)) {
		if string(snap.Files[path]) != string(files[path]) {
			ch.Files[path] = files[path]
			rep.Changed = append(rep.Changed, path)
		}
	}
	for _, w := range rep.Warnings {
		p.log.Warn("standby values: "+w, "peer", peer)
	}
	if len(rep.Stripped) > 0 {
		p.log.Warn("standby values: credentials stripped from the values (give them to the chart through Secrets)",
			"peer", peer, "revision", rel.Revision, "paths", rep.Stripped)
	}
	if len(ch.Files) == 0 {
		p.log.Debug("standby values: nothing changed", "revision", rel.Revision)
		return rep, nil
	}
	ch.Check = gitops.Since(snap.Files, ch, gitops.CheckOwned)
	ch.Pinned = map[string][]byte{l.Pair(): raw} // rendered as the active of this pair.yaml
	ch.Message = fmt.Sprintf("Render %s's management plane from %s's Helm release %s/%s v%d\n\nChart %s %s.\n%s",
		peer, p.opts.Self, rel.Namespace, rel.Name, rel.Revision, rel.Chart, rel.Version, bullets(rep.Changed))
	if len(rep.Stripped) > 0 {
		ch.Message += "\nCredentials stripped from the values (they belong in Secrets):\n" + bullets(rep.Stripped)
	}
	ch.Trailers = []trailer.Trailer{{Key: trailer.Kind, Value: "values"}, {Key: trailer.Cluster, Value: p.opts.Self}, {Key: trailer.To, Value: peer}}
	res, err := p.repo.Apply(ctx, ch)
	if err != nil {
		return Report{}, fmt.Errorf("committing standby values for %s: %w", peer, err)
	}
	if !res.NoChange {
		rep.Commit = res.Commit
	}
	p.log.Info("standby values committed", "peer", peer, "revision", rel.Revision, "commit", rep.Commit, "files", len(rep.Changed))
	return rep, nil
}

func bullets(paths []string) string {
	var b strings.Builder
	for _, p := range paths {
		b.WriteString("- " + p + "\n")
	}
	return b.String()
}

func dir(p string) string { return p[:strings.LastIndex(p, "/")] }

// rendering is what render found besides the files.
type rendering struct {
	warnings, stripped []string
}

// render computes every file the active writes: the peer's helmrelease.yaml, role.yaml and
// kustomization.yaml, and its own role.yaml and kustomization.yaml.
func (p *Publisher) render(ctx context.Context, pair *gitops.Pair, peer string, rel *release.Release, current map[string][]byte) (map[string][]byte, rendering, error) {
	l := p.opts.Layout
	rv, err := values.Render(rel.Values, p.opts.renderOptions())
	if err != nil {
		return nil, rendering{}, fmt.Errorf("rendering values of Helm release %s/%s v%d: %w", rel.Namespace, rel.Name, rel.Revision, err)
	}
	vals := rv.Values
	if p.opts.RoleMode == RoleModeValues {
		if err := values.SetReplicas(vals, 0); err != nil {
			return nil, rendering{}, fmt.Errorf("values of Helm release %s/%s v%d: %w", rel.Namespace, rel.Name, rel.Revision, err)
		}
	}
	hr, err := values.Release{
		Name: rel.Name, Namespace: rel.Namespace, Chart: rel.Chart, Version: rel.Version,
		RepositoryURL: p.opts.ChartRepository, RepositorySecret: p.opts.ChartRepositorySecret, Values: vals,
	}.Marshal()
	if err != nil {
		return nil, rendering{}, fmt.Errorf("standby HelmRelease: %w", err)
	}
	files := map[string][]byte{l.HelmRelease(peer): hr}

	live, warnings, err := p.liveShape(ctx)
	if err != nil {
		return nil, rendering{}, err
	}
	peerOld, _ := parseRole(current[l.Role(peer)])
	selfOld, _ := parseRole(current[l.Role(p.opts.Self)])
	deps := func(old *role.Role, who string) []role.Workload {
		if p.opts.RoleMode == RoleModeValues {
			return nil
		}
		var out []role.Workload
		for _, name := range p.opts.Deployments {
			if w, ok := live.deployments[name]; ok {
				out = append(out, w)
			} else if w, ok := oldWorkload(old, name); ok {
				out = append(out, w)
			} else {
				warnings = append(warnings, fmt.Sprintf("Deployment %s/%s: no live object or earlier role to take its selector from; %s's role.yaml leaves it out", p.opts.Namespace, name, who))
			}
		}
		return out
	}
	// The restore job is written where its shape is known: this cluster's live CronJob for the
	// active's role; for the peer only its earlier role.yaml. Never guess it from this cluster: a
	// role naming a CronJob the peer lacks makes Flux create a partial one, which fails the
	// peer's whole Kustomization (measured).
	selfRestore := live.restore
	var peerRestore *role.Restore
	if peerOld != nil {
		peerRestore = peerOld.Restore
	}
	// A standby demoted by the last failover keeps its restore job suspended until it is
	// re-seeded (docs/design.md §5): the continuous loop must not undo that.
	demoted := peerOld != nil && peerOld.RestoreSuspended && pair.LastFailover != nil && pair.LastFailover.From == peer
	if demoted {
		warnings = append(warnings, fmt.Sprintf("%s was demoted by failover %s: its restore job stays suspended until it is re-seeded", peer, pair.LastFailover.Event))
	}
	roles := map[string]role.Role{
		peer:        role.Standby(p.opts.Namespace, deps(peerOld, peer), peerRestore, demoted),
		p.opts.Self: role.Active(p.opts.Namespace, live.replicas, deps(selfOld, p.opts.Self), selfRestore),
	}
	for cluster, r := range roles {
		entries := []string{}
		b, err := r.Marshal()
		switch {
		case errors.Is(err, role.ErrEmpty):
			// nothing to scale or suspend: no role.yaml (a stale one stays, owned and harmless)
		case err != nil:
			return nil, rendering{}, fmt.Errorf("role of %s: %w", cluster, err)
		default:
			files[l.Role(cluster)] = b
			entries = append(entries, "role.yaml")
		}
		if _, ok := files[l.HelmRelease(cluster)]; ok {
			entries = append(entries, "helmrelease.yaml")
		} else if _, ok := current[l.HelmRelease(cluster)]; ok {
			entries = append(entries, "helmrelease.yaml") // the MP Flux installed before a failover
		}
		if len(entries) > 0 {
			files[path(dir(l.Role(cluster)), "kustomization.yaml")], err = kustomization(entries)
			if err != nil {
				return nil, rendering{}, err
			}
		}
	}
	return files, rendering{warnings: warnings, stripped: rv.Stripped}, nil
}

func path(dir, name string) string { return dir + "/" + name }

// shape is what the roles copy from the live objects of this cluster: both MPs run the same
// operator, so the standby's Deployments have the same selectors.
type shape struct {
	deployments map[string]role.Workload
	replicas    int32
	restore     *role.Restore
}

func (p *Publisher) liveShape(ctx context.Context) (shape, []string, error) {
	s := shape{deployments: map[string]role.Workload{}}
	var warnings []string
	for _, name := range p.opts.Deployments {
		d, err := p.cs.AppsV1().Deployments(p.opts.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return shape{}, nil, fmt.Errorf("reading Deployment %s/%s: %w", p.opts.Namespace, name, err)
		}
		s.deployments[name] = role.WorkloadOf(d)
		s.replicas = max(s.replicas, replicas(d))
	}
	cj, err := p.cs.BatchV1().CronJobs(p.opts.Namespace).Get(ctx, p.opts.RestoreCronJob, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return shape{}, nil, fmt.Errorf("reading CronJob %s/%s: %w", p.opts.Namespace, p.opts.RestoreCronJob, err)
	default:
		s.restore = role.RestoreOf(cj)
	}
	return s, warnings, nil
}

func replicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// parseRole reads an existing role.yaml; nil when there is none or it does not parse (it is
// then rewritten from the live objects).
func parseRole(b []byte) (*role.Role, error) {
	if b == nil {
		return nil, nil
	}
	r, err := role.Parse(b)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// oldWorkload finds Deployment name in an earlier role.yaml.
func oldWorkload(old *role.Role, name string) (role.Workload, bool) {
	if old == nil {
		return role.Workload{}, false
	}
	for _, w := range old.Deployments {
		if w.Name == name {
			return w, true
		}
	}
	return role.Workload{}, false
}

// kustomization is the kustomization.yaml of an mp/ folder.
func kustomization(resources []string) ([]byte, error) {
	slices.Sort(resources)
	b, err := canonyaml.Marshal(map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
		"resources":  resources,
	})
	if err != nil {
		return nil, fmt.Errorf("encoding kustomization.yaml: %w", err)
	}
	return append([]byte(gitops.Header), b...), nil
}

// Run renders when the Helm release's newest revision changes (looked at every Poll) and at every
// resync, until ctx ends.
func (p *Publisher) Run(ctx context.Context) error {
	go p.watch(ctx)
	if p.opts.Wake != nil {
		go p.loop.SignalOn(ctx, p.opts.Wake)
	}
	return p.loop.Run(ctx, func(ctx context.Context) error {
		_, err := p.RunOnce(ctx)
		return err
	})
}

// watch signals the loop when the release's head (revision, status) changes. Errors are the
// run's to report: the resync renders regardless.
func (p *Publisher) watch(ctx context.Context) {
	last, _ := p.releases.Head(ctx) // what the loop's first run sees
	t := time.NewTicker(p.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h, err := p.releases.Head(ctx)
		if err != nil {
			p.log.Debug("looking at the Helm release", "error", err)
			continue
		}
		if h != last {
			last = h
			p.loop.Signal()
		}
	}
}
