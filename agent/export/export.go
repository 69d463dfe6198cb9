// Package export is the active agent's secret exporter (docs/design.md §4): it watches the named
// TSB Secrets, seals each for the peer cluster with the certificate the peer published in Git,
// and commits what changed. Informer handlers only signal; a run recomputes the desired files from
// the cluster and Git, so a burst of changes lands as one commit and a failed run loses nothing
// (the next one does the same work). It imports gitops, never cmd.
package export

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/runloop"
)

// ErrNoPeerCert means the peer has not published its sealing certificate yet: nothing can be
// sealed for it, and the exporter waits.
var ErrNoPeerCert = errors.New("the peer has not published its sealing certificate")

// Options configure an Exporter.
type Options struct {
	// Self is this cluster; Peer the cluster the secrets are sealed for.
	Self, Peer string
	// Namespace holds the Secrets (the MP namespace, default tsb).
	Namespace string
	// Names are the Secrets to export.
	Names []string
	// Facts are the Secrets whose public facts (kids, CA fingerprint, SANs) are published in
	// Layout.Facts(Self) for the standby's readiness checks, exported or not (the runtime passes
	// the checked secrets). The exported ones' facts also travel as their files' annotations.
	Facts []string
	// Key is the HMAC key of the change digests (at least seal.MinKeyLen bytes).
	Key    []byte
	Layout gitops.Layout
	// DeleteRemoved deletes a secret's file when the Secret is deleted; by default it stays.
	DeleteRemoved bool
	// Debounce is how long a run waits after the first change, to batch a burst (default
	// 300ms: a rotation rewrites iam-signing-key and tsb-iam-jwks within milliseconds of each
	// other; a longer wait only delays the standby's copy).
	Debounce time.Duration
	// Wake, if set, subscribes to what may change this cluster's role (its Flux applying a
	// revision: a failover merged): an export then runs at once instead of at the next resync.
	Wake func() (<-chan struct{}, func())
	// Resync runs the export even without a change: it picks up a new peer certificate in Git
	// and retries after failures (default 1m).
	Resync time.Duration
	// Metrics, if set, record each run (NewMetrics).
	Metrics *Metrics
	Logger  *slog.Logger
	// Now is the clock a certificate's validity is judged by (default time.Now).
	Now func() time.Time
}

// Exporter exports the configured Secrets of one cluster for its peer.
type Exporter struct {
	opts Options
	cs   kubernetes.Interface
	repo gitrepo.Repository
	log  *slog.Logger
	loop *runloop.Loop
}

// New validates opts and returns an Exporter reading Secrets through cs and writing through repo.
func New(cs kubernetes.Interface, repo gitrepo.Repository, opts Options) (*Exporter, error) {
	var errs []error
	for _, c := range []string{opts.Self, opts.Peer} {
		if err := gitops.ValidateClusterName(c); err != nil {
			errs = append(errs, err)
		}
	}
	if opts.Self == opts.Peer {
		errs = append(errs, fmt.Errorf("self and peer are both %q", opts.Self))
	}
	for _, n := range opts.Names {
		if err := gitops.ValidateSecretName(n); err != nil {
			errs = append(errs, err)
		}
	}
	if len(opts.Key) < seal.MinKeyLen {
		errs = append(errs, seal.ErrShortKey)
	}
	if opts.Layout == (gitops.Layout{}) {
		errs = append(errs, errors.New("a repository layout is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("secret exporter: %w", err)
	}
	if opts.Namespace == "" {
		opts.Namespace = "tsb"
	}
	if opts.Debounce <= 0 {
		opts.Debounce = 300 * time.Millisecond
	}
	if opts.Resync <= 0 {
		opts.Resync = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("cluster", opts.Self, "peer", opts.Peer)
	loop := runloop.New(runloop.Options{Name: "secrets export", Debounce: opts.Debounce, Resync: opts.Resync, Logger: log,
		Waiting: isWaiting})
	return &Exporter{opts: opts, cs: cs, repo: repo, log: log, loop: loop}, nil
}

// Outcome is what a run did with one secret.
type Outcome string

// Outcomes of a run, per secret.
const (
	Sealed    Outcome = "sealed"    // new or changed data: sealed and committed
	Resealed  Outcome = "resealed"  // same data, sealed again for the peer's new certificate
	Unchanged Outcome = "unchanged" // nothing to do
	Removed   Outcome = "removed"   // deleted in the cluster; its sealed copy stays in Git
	Deleted   Outcome = "deleted"   // deleted in the cluster and, as configured, from Git
	Absent    Outcome = "absent"    // never present in the cluster (reported, not an error)
)

// Report says what one run did.
type Report struct {
	// Secrets maps each configured name to its outcome.
	Secrets map[string]Outcome
	// Own maps the secrets that have a SealedSecret in this cluster's own folder (left there by the
	// peer's export while this cluster was the standby) to what the run did with that copy.
	Own map[string]Outcome
	// Commit is the pushed commit, "" when nothing was committed.
	Commit string
	// CertFingerprint names the peer certificate the secrets are sealed for.
	CertFingerprint string
	// NotActive names the active cluster when pair.yaml says it is not this one: nothing was
	// exported.
	NotActive string
	// FactsUpdated: the facts file (Layout.Facts) changed and was committed with the run.
	FactsUpdated bool
}

// Count returns how many secrets had outcome o.
func (r Report) Count(o Outcome) int {
	n := 0
	for _, got := range r.Secrets {
		if got == o {
			n++
		}
	}
	return n
}

// getter returns a Secret, found=false when it does not exist.
type getter func(ctx context.Context, name string) (s *corev1.Secret, found bool, err error)

// RunOnce exports every configured Secret once, reading them from the API server.
func (e *Exporter) RunOnce(ctx context.Context) (Report, error) {
	rep, err := e.run(ctx, func(ctx context.Context, name string) (*corev1.Secret, bool, error) {
		s, err := e.cs.CoreV1().Secrets(e.opts.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading secret %s/%s: %w", e.opts.Namespace, name, err)
		}
		return s, true, nil
	})
	e.opts.Metrics.record(e.opts.Peer, rep, err, time.Now())
	return rep, err
}

func isWaiting(err error) bool { return errors.Is(err, ErrNoPeerCert) }

func (e *Exporter) run(ctx context.Context, get getter) (Report, error) {
	l := e.opts.Layout
	certPath := l.SealingCert(e.opts.Peer)
	snap, err := e.repo.Read(ctx, l.Pair(), certPath, l.SecretsDir(e.opts.Peer)+"/", l.SealingCert(e.opts.Self), l.SecretsDir(e.opts.Self)+"/",
		l.Facts(e.opts.Self))
	if err != nil {
		return Report{}, err
	}
	// Only the active exports. The runtime stops the exporter when pair.yaml's active changes,
	// but it reads pair.yaml through a cache: in between, a demoted cluster would seal its old
	// secrets over what the new active wrote for itself. So the run checks the pair.yaml it read,
	// and the commit is pinned to it (a failover merged meanwhile makes it a conflict).
	pairFile := snap.Files[l.Pair()]
	if pairFile != nil {
		p, err := gitops.ParsePair(pairFile)
		if err != nil {
			return Report{}, fmt.Errorf("%s: %w", l.Pair(), err)
		}
		if p.Active != e.opts.Self {
			e.log.Debug("secrets export: not the active cluster in pair.yaml; nothing exported", "active", p.Active, "epoch", p.Epoch)
			return Report{NotActive: p.Active}, nil
		}
	}
	certPEM, ok := snap.Files[certPath]
	if !ok {
		return Report{}, fmt.Errorf("%w: %s is missing", ErrNoPeerCert, certPath)
	}
	cert, err := seal.ParseCert(certPEM)
	if err != nil {
		return Report{}, fmt.Errorf("%s: %w", certPath, err)
	}
	rep := Report{Secrets: map[string]Outcome{}, CertFingerprint: cert.Fingerprint}
	ch := gitops.Change{Files: map[string][]byte{}}
	facts := map[string]seal.Facts{} // what plan read, so that the facts file reads no secret twice
	for _, name := range e.opts.Names {
		out, file, err := e.plan(ctx, get, cert, name, snap.Files[l.Secret(e.opts.Peer, name)], facts)
		if err != nil {
			return Report{}, err
		}
		rep.Secrets[name] = out
		switch out {
		case Sealed, Resealed:
			ch.Files[l.Secret(e.opts.Peer, name)] = file
		case Deleted:
			ch.Delete = append(ch.Delete, l.Secret(e.opts.Peer, name))
		}
	}
	own, err := e.ownCopies(ctx, get, snap.Files, &ch, facts)
	if err != nil {
		return Report{}, err
	}
	rep.Own = own
	factsFile, err := e.factsFile(ctx, get, facts)
	if err != nil {
		return Report{}, err
	}
	if !bytes.Equal(factsFile, snap.Files[l.Facts(e.opts.Self)]) {
		ch.Files[l.Facts(e.opts.Self)] = factsFile
		rep.FactsUpdated = true
	}
	if len(ch.Files) == 0 && len(ch.Delete) == 0 {
		e.log.Debug("secrets export: nothing changed", "secrets", len(rep.Secrets))
		return rep, nil
	}
	// Planned from snap: a file someone else changed since is a conflict, and the next run re-plans.
	ch.Check = gitops.Since(snap.Files, ch, gitops.CheckOwned)
	ch.Pinned = map[string][]byte{l.Pair(): pairFile}
	ch.Message = e.message(rep)
	ch.Trailers = []trailer.Trailer{{Key: trailer.Kind, Value: "secrets"}, {Key: trailer.Cluster, Value: e.opts.Self}, {Key: trailer.To, Value: e.opts.Peer}}
	res, err := e.repo.Apply(ctx, ch)
	if err != nil {
		return Report{}, fmt.Errorf("committing secrets for %s: %w", e.opts.Peer, err)
	}
	if !res.NoChange {
		rep.Commit = res.Commit
	}
	e.log.Info("secrets exported", "commit", rep.Commit, "sealed", rep.Count(Sealed), "resealed", rep.Count(Resealed), "deleted", rep.Count(Deleted))
	return rep, nil
}

// ownCopies keeps the SealedSecrets in this cluster's own folder equal to its live Secrets. They
// were sealed for it by the peer while it was the standby, and its Flux still applies them: after a
// rotation here, a restart of its sealed-secrets controller would unseal the old copy over the new
// key. Only files already there are refreshed (a cluster that was never a standby has none), sealed
// with the certificate this cluster published itself; without that certificate they are left as
// they are, with a warning.
func (e *Exporter) ownCopies(ctx context.Context, get getter, files map[string][]byte, ch *gitops.Change, facts map[string]seal.Facts) (map[string]Outcome, error) {
	l := e.opts.Layout
	present := map[string][]byte{}
	for _, name := range e.opts.Names {
		if f, ok := files[l.Secret(e.opts.Self, name)]; ok {
			present[name] = f
		}
	}
	if len(present) == 0 {
		return nil, nil
	}
	certPEM, ok := files[l.SealingCert(e.opts.Self)]
	if !ok {
		e.log.Warn("this cluster's own folder holds sealed secrets from its standby days, but its sealing certificate is not in Git: they are not refreshed, and a restart of its sealed-secrets controller would restore them",
			"folder", l.SecretsDir(e.opts.Self), "secrets", len(present))
		return nil, nil
	}
	cert, err := seal.ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.SealingCert(e.opts.Self), err)
	}
	own := map[string]Outcome{}
	for _, name := range slices.Sorted(maps.Keys(present)) {
		out, file, err := e.plan(ctx, get, cert, name, present[name], facts)
		if err != nil {
			return nil, fmt.Errorf("own copy: %w", err)
		}
		own[name] = out
		switch out {
		case Sealed, Resealed:
			ch.Files[l.Secret(e.opts.Self, name)] = file
		case Deleted:
			ch.Delete = append(ch.Delete, l.Secret(e.opts.Self, name))
		}
	}
	return own, nil
}

// plan decides one secret's outcome and, when it must be committed, its file; it records the
// secret's public facts in facts (zero when absent).
func (e *Exporter) plan(ctx context.Context, get getter, cert seal.Cert, name string, existing []byte, facts map[string]seal.Facts) (Outcome, []byte, error) {
	s, found, err := get(ctx, name)
	if err != nil {
		return "", nil, err
	}
	if !found {
		facts[name] = seal.Facts{}
		switch {
		case existing == nil:
			e.log.Info("secret absent from the cluster; nothing to export", "secret", name)
			return Absent, nil, nil
		case e.opts.DeleteRemoved:
			return Deleted, nil, nil
		default:
			e.log.Warn("secret deleted in the cluster; its sealed copy stays in Git (secrets.deleteRemoved: false)", "secret", name)
			return Removed, nil, nil
		}
	}
	// The public facts of the secret (kids, CA fingerprint, DNS names) travel as annotations, so
	// that the standby's readiness checks can compare without the plaintext.
	f, err := seal.SecretFacts(e.opts.Key, s)
	if err != nil {
		return "", nil, fmt.Errorf("secret %s: %w", name, err)
	}
	facts[name] = f
	ann := seal.Annotations(f)
	need, err := seal.NeedsSealing(existing, cert, e.opts.Key, s)
	if err != nil {
		return "", nil, err
	}
	stale := existing != nil && !need && !sameFacts(existing, ann)
	if !need && !stale {
		return Unchanged, nil, nil
	}
	out := Sealed
	if st, err := seal.ReadStamp(existing); err == nil && (st.CertFingerprint != cert.Fingerprint || stale) {
		if d, _ := seal.Digest(e.opts.Key, s); d == st.Digest {
			out = Resealed
		}
	}
	// Logged when sealing only, so once per change rather than every pass.
	if err := cert.Validity(e.opts.Now()); err != nil {
		e.log.Warn("sealing for a certificate outside its validity dates: the controller decrypts whatever the dates, but check that it still holds this key",
			"secret", name, "certFingerprint", cert.Fingerprint, "error", err)
	}
	ss, err := seal.Seal(cert, e.opts.Key, s)
	if err != nil {
		return "", nil, err
	}
	for k, v := range ann {
		ss.Annotations[k] = v
	}
	file, err := seal.Marshal(ss)
	return out, file, err
}

// factsFile is this cluster's facts file now: the public facts of every exported and checked
// secret; those plan already read are in facts, the others are read here.
func (e *Exporter) factsFile(ctx context.Context, get getter, facts map[string]seal.Facts) ([]byte, error) {
	for _, name := range e.watched() {
		if _, ok := facts[name]; ok {
			continue
		}
		s, found, err := get(ctx, name)
		if err != nil {
			return nil, err
		}
		if !found {
			facts[name] = seal.Facts{}
			continue
		}
		if facts[name], err = seal.SecretFacts(e.opts.Key, s); err != nil {
			return nil, fmt.Errorf("secret %s: %w", name, err)
		}
	}
	b, err := seal.MarshalFactsFile(e.opts.Self, facts)
	if err != nil {
		return nil, err
	}
	return append([]byte(gitops.Header), b...), nil // mpha's file: CheckOwned lets it be rewritten
}

// watched are the secrets the exporter reads: the exported ones and those whose facts it
// publishes.
func (e *Exporter) watched() []string {
	return slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(e.opts.Names), e.opts.Facts...))))
}

// sameFacts reports whether a committed SealedSecret already carries the facts annotations ann.
func sameFacts(file []byte, ann map[string]string) bool {
	f, err := seal.FactsFromSealed(file)
	return err == nil && maps.Equal(seal.Annotations(f), ann)
}

func (e *Exporter) message(rep Report) string {
	var lines []string
	for _, name := range slices.Sorted(maps.Keys(rep.Secrets)) {
		if o := rep.Secrets[name]; o == Sealed || o == Resealed || o == Deleted {
			lines = append(lines, fmt.Sprintf("- %s: %s", name, o))
		}
	}
	var own []string
	for _, name := range slices.Sorted(maps.Keys(rep.Own)) {
		if o := rep.Own[name]; o == Sealed || o == Resealed || o == Deleted {
			own = append(own, fmt.Sprintf("- %s: %s", name, o))
		}
	}
	subject := fmt.Sprintf("Export %d secret(s) from %s for %s", len(lines), e.opts.Self, e.opts.Peer)
	switch {
	case len(lines) == 0 && len(own) == 0:
		subject = fmt.Sprintf("Publish the public facts of %s's secrets", e.opts.Self)
	case len(lines) == 0:
		subject = fmt.Sprintf("Refresh %d of %s's own sealed secret(s)", len(own), e.opts.Self)
	case rep.Count(Resealed) == len(lines):
		subject = fmt.Sprintf("Re-seal %d secret(s) for %s's new certificate", len(lines), e.opts.Peer)
	}
	msg := subject + "\n"
	if len(lines) > 0 {
		msg += "\nSealed for certificate " + rep.CertFingerprint[:16] + "…\n" + strings.Join(lines, "\n") + "\n"
	}
	if len(own) > 0 {
		msg += "\nAlso refreshed in " + e.opts.Self + "'s own folder, so that a restart of its sealed-secrets controller\nrestores the current data:\n" + strings.Join(own, "\n") + "\n"
	}
	if rep.FactsUpdated {
		msg += "\nThe public facts of " + e.opts.Self + "'s secrets (kids, CA fingerprints, SANs) changed: " + e.opts.Layout.Facts(e.opts.Self) + "\n"
	}
	return msg
}

// Run watches the Secrets and exports until ctx ends. Each change schedules a run after Debounce
// (changes meanwhile join it); Resync schedules one regardless. A failed run is logged and retried
// at the next trigger or resync: the agent never stops for it.
func (e *Exporter) Run(ctx context.Context) error {
	if e.opts.Wake != nil {
		go e.loop.SignalOn(ctx, e.opts.Wake)
	}
	listers := map[string]cache.GenericLister{}
	for _, name := range e.watched() {
		// One informer per name: a field selector on metadata.name is what RBAC resourceNames can
		// grant list and watch for, so the agent needs no access to other Secrets.
		f := informers.NewSharedInformerFactoryWithOptions(e.cs, 0, informers.WithNamespace(e.opts.Namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			}))
		inf := f.Core().V1().Secrets()
		if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { e.loop.Signal() },
			UpdateFunc: func(any, any) { e.loop.Signal() },
			DeleteFunc: func(any) { e.loop.Signal() },
		}); err != nil {
			return fmt.Errorf("watching secret %s: %w", name, err)
		}
		listers[name] = cache.NewGenericLister(inf.Informer().GetIndexer(), corev1.Resource("secrets"))
		f.Start(ctx.Done())
		defer f.Shutdown()
		if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
			return ctx.Err()
		}
	}
	get := func(_ context.Context, name string) (*corev1.Secret, bool, error) {
		o, err := listers[name].ByNamespace(e.opts.Namespace).Get(name)
		if apierrors.IsNotFound(err) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, fmt.Errorf("reading secret %s from the cache: %w", name, err)
		}
		return o.(*corev1.Secret), true, nil
	}
	return e.loop.Run(ctx, func(ctx context.Context) error {
		rep, err := e.run(ctx, get)
		e.opts.Metrics.record(e.opts.Peer, rep, err, time.Now())
		return err
	})
}
