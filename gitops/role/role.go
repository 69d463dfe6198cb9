// Package role holds the contract of clusters/<cluster>/mp/role.yaml (docs/design.md §5): the
// partial Deployments and CronJob that Flux server-side-applies onto TSB's own objects to set a
// management plane's role. It is the declarative form of the runbook's
// `kubectl scale deploy tsb iam --replicas 0|1` and
// `kubectl patch cronjob tsb-restore -p '{"spec":{"suspend":true}}'`.
//
// Flux does not create these objects, the TSB operator and Helm do; they must exist before Flux
// applies role.yaml, or the apply (and with it the whole Kustomization) fails. What Flux needs to
// change only the replicas and the suspend flag, measured with kustomize-controller v1.9.5
// (fluxcd/pkg/ssa v0.76.2) against kube-apiserver v1.34 (research/e2e-rig.md §4 and this package's
// TestFluxAppliesRoles):
//
//   - kustomize.toolkit.fluxcd.io/ssa: Merge, or Flux hands the fields of kubectl's field managers
//     to itself and the apply then tries to drop them (the pod template, the containers);
//   - kustomize.toolkit.fluxcd.io/prune: disabled, or removing the file deletes TSB's objects;
//   - the Deployment's live spec.selector and the CronJob's live spec.schedule, repeated: Flux
//     round-trips every object through its typed Go struct, where neither field is omitempty, so a
//     partial object without them is sent with `selector: null` / `schedule: ""` and the dry-run
//     fails the whole Kustomization.
//
// Flux applies with force, so every field in the file wins over the live one: a schedule that
// differs from the live one replaces it. That is why the objects carry no
// app.kubernetes.io/managed-by label (measured: it replaced Helm's, which would break the next
// `helm upgrade` of TSB's chart): the file's header marks it as mpha's, the objects stay TSB's.
//
// The package is pure: no clients, no network. It imports gitops and nothing of agent or cmd.
package role

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// TSB's names (docs/design.md §5).
const (
	DefaultNamespace = "tsb"
	TSB              = "tsb"         // the API server Deployment
	IAM              = "iam"         // the IAM Deployment
	RestoreJob       = "tsb-restore" // the standby's restore CronJob (embedded Postgres only)
	DefaultReplicas  = 1             // of tsb and iam on the active, unless the caller knows better
)

// The annotations every object in role.yaml carries; see the package comment for why.
const (
	SSAAnnotation   = "kustomize.toolkit.fluxcd.io/ssa"
	SSAMerge        = "Merge"
	PruneAnnotation = "kustomize.toolkit.fluxcd.io/prune"
	PruneDisabled   = "disabled"
)

// ErrEmpty reports a role with nothing to write: no Deployments (values mode) and no restore job
// (external Postgres). Such a cluster needs no role.yaml.
var ErrEmpty = errors.New("role.yaml would hold no object")

// Workload is a Deployment whose replicas the role sets.
type Workload struct {
	Name string
	// Selector must equal the live Deployment's spec.selector: it is immutable, and Flux cannot
	// apply a Deployment without one.
	Selector *metav1.LabelSelector
}

// Restore is the CronJob that restores the active's backups into the standby's database.
type Restore struct {
	Name string
	// Schedule must equal the live CronJob's spec.schedule: Flux cannot apply a CronJob without
	// one, and the value in the file replaces the live one.
	Schedule string
}

// Role is what role.yaml holds. Build it with Active or Standby; Parse reads it back.
type Role struct {
	Namespace string
	// Replicas of every Deployment: the active's count, or 0 on a standby. It is 0 when there are
	// no Deployments, since the count then lives in the HelmRelease values (values mode).
	Replicas    int32
	Deployments []Workload // sorted by name; empty in values mode
	Restore     *Restore   // nil: the management plane has no restore job
	// RestoreSuspended stops the restore job: on the active, and on a standby just demoted by a
	// failover, which must not restore from the new active until it is re-seeded (§5 item 2).
	RestoreSuspended bool
}

// Active is the role of the active management plane: deps at replicas (0 means DefaultReplicas)
// and the restore job suspended. An empty ns means DefaultNamespace.
func Active(ns string, replicas int32, deps []Workload, restore *Restore) Role {
	r := newRole(ns, deps, restore)
	if replicas == 0 {
		replicas = DefaultReplicas
	}
	if len(r.Deployments) > 0 {
		r.Replicas = replicas
	}
	r.RestoreSuspended = r.Restore != nil
	return r
}

// Standby is the role of the standby: deps at 0 and the restore job running, unless demoted (the
// old active of a failover), whose restore job stays suspended until it is re-seeded.
func Standby(ns string, deps []Workload, restore *Restore, demoted bool) Role {
	r := newRole(ns, deps, restore)
	r.RestoreSuspended = demoted && r.Restore != nil
	return r
}

// newRole copies its inputs, so that the caller's later changes cannot reach the Role.
func newRole(ns string, deps []Workload, restore *Restore) Role {
	if ns == "" {
		ns = DefaultNamespace
	}
	r := Role{Namespace: ns}
	for _, d := range deps {
		r.Deployments = append(r.Deployments, Workload{Name: d.Name, Selector: d.Selector.DeepCopy()})
	}
	sortWorkloads(r.Deployments)
	if restore != nil {
		c := *restore
		r.Restore = &c
	}
	return r
}

func sortWorkloads(ws []Workload) {
	slices.SortFunc(ws, func(a, b Workload) int { return strings.Compare(a.Name, b.Name) })
}

// WorkloadOf takes what a role needs from a live Deployment.
func WorkloadOf(d *appsv1.Deployment) Workload {
	return Workload{Name: d.Name, Selector: d.Spec.Selector.DeepCopy()}
}

// RestoreOf takes what a role needs from a live restore CronJob.
func RestoreOf(cj *batchv1.CronJob) *Restore {
	return &Restore{Name: cj.Name, Schedule: cj.Spec.Schedule}
}

// Validate returns every problem of r, each with its field; errors.Is(err, ErrEmpty) when r has
// nothing to write.
func (r Role) Validate() error {
	var errs []error
	for _, msg := range validation.IsDNS1123Label(r.Namespace) {
		errs = append(errs, fmt.Errorf("namespace %q: %s", r.Namespace, msg))
	}
	switch {
	case r.Replicas < 0:
		errs = append(errs, fmt.Errorf("replicas: must not be negative, got %d", r.Replicas))
	case r.Replicas > 0 && len(r.Deployments) == 0:
		errs = append(errs, fmt.Errorf("replicas: %d but no Deployments to scale (values mode keeps the count in the HelmRelease)", r.Replicas))
	}
	errs = append(errs, validateWorkloads(r.Deployments)...)
	if r.Restore == nil {
		if r.RestoreSuspended {
			errs = append(errs, errors.New("restoreSuspended: set, but there is no restore job"))
		}
	} else {
		errs = append(errs, validateRestore(*r.Restore)...)
	}
	if len(r.Deployments) == 0 && r.Restore == nil {
		errs = append(errs, ErrEmpty)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("role.yaml: %w", err)
	}
	return nil
}

func validateWorkloads(ws []Workload) []error {
	var errs []error
	seen := map[string]bool{}
	for i, w := range ws {
		path := field.NewPath("deployments").Index(i)
		for _, msg := range validation.IsDNS1123Subdomain(w.Name) {
			errs = append(errs, fmt.Errorf("%s.name %q: %s", path, w.Name, msg))
		}
		if seen[w.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q appears twice", path, w.Name))
		}
		seen[w.Name] = true
		sel := path.Child("selector")
		if w.Selector == nil || len(w.Selector.MatchLabels)+len(w.Selector.MatchExpressions) == 0 {
			errs = append(errs, fmt.Errorf("%s: must repeat the live Deployment's selector", sel))
			continue
		}
		for _, e := range metav1validation.ValidateLabelSelector(w.Selector, metav1validation.LabelSelectorValidationOptions{}, sel) {
			errs = append(errs, e)
		}
	}
	return errs
}

func validateRestore(rj Restore) []error {
	var errs []error
	for _, msg := range validation.IsDNS1123Subdomain(rj.Name) {
		errs = append(errs, fmt.Errorf("restore.name %q: %s", rj.Name, msg))
	}
	if s := rj.Schedule; s == "" || strings.TrimSpace(s) != s || strings.ContainsAny(s, "\n\r") {
		errs = append(errs, fmt.Errorf("restore.schedule %q: must repeat the live CronJob's schedule (one line, no surrounding space)", s))
	}
	return errs
}
