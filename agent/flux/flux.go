// Package flux follows this cluster's Flux: the Kustomization that applies the cluster's folder,
// watched through an informer (the revision it last applied, and a wake-up each time that
// changes), and the nudge that `flux reconcile kustomization --with-source` gives
// (reconcile.fluxcd.io/requestedAt on the GitRepository and on the Kustomization), so that a
// merged failover is applied as soon as it is merged, not at Flux's next interval.
package flux

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/mpha-dev/mpha/internal/notify"
)

var (
	// Kustomizations and GitRepositories are Flux's resources this package reads and nudges.
	Kustomizations  = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
	GitRepositories = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"}
)

// RequestedAtAnnotation asks a Flux object to reconcile now (fluxcd/pkg/apis/meta's
// ReconcileRequestAnnotation; its value only has to change).
const RequestedAtAnnotation = "reconcile.fluxcd.io/requestedAt"

// Watch follows one Kustomization. Run starts it; until its cache has synced, Revision reads
// the object from the API server.
type Watch struct {
	dyn             dynamic.Interface
	namespace, name string
	informer        cache.SharedIndexInformer
	changed         notify.Broadcast
	log             *slog.Logger
}

// New watches the Kustomization namespace/name (listing and watching only that object, so that
// a Role limited to its name allows it).
func New(dyn dynamic.Interface, namespace, name string, log *slog.Logger) (*Watch, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watch{dyn: dyn, namespace: namespace, name: name, log: log}
	w.informer = dynamicinformer.NewFilteredDynamicInformer(dyn, Kustomizations, namespace, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + name }).Informer()
	_, err := w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { w.changed.Notify() },
		UpdateFunc: func(old, cur any) {
			if revisionOf(old) != revisionOf(cur) {
				w.changed.Notify()
			}
		},
		DeleteFunc: func(any) { w.changed.Notify() },
	})
	if err != nil {
		return nil, fmt.Errorf("watching Kustomization %s/%s: %w", namespace, name, err)
	}
	return w, nil
}

// Run runs the informer until ctx ends.
func (w *Watch) Run(ctx context.Context) error {
	w.informer.Run(ctx.Done())
	return nil
}

// Changed wakes its subscribers each time the Kustomization's applied revision changes.
func (w *Watch) Changed() *notify.Broadcast { return &w.changed }

// Revision is the revision the Kustomization last applied (main@sha1:<hash>).
func (w *Watch) Revision(ctx context.Context) (string, error) {
	var obj any
	if w.informer.HasSynced() {
		o, ok, err := w.informer.GetStore().GetByKey(w.namespace + "/" + w.name)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", fmt.Errorf("the Kustomization %s/%s does not exist", w.namespace, w.name)
		}
		obj = o
	} else {
		o, err := w.dyn.Resource(Kustomizations).Namespace(w.namespace).Get(ctx, w.name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("reading Kustomization %s/%s: %w", w.namespace, w.name, err)
		}
		obj = o
	}
	rev := revisionOf(obj)
	if rev == "" {
		return "", fmt.Errorf("the Kustomization %s/%s has applied nothing yet", w.namespace, w.name)
	}
	return rev, nil
}

func revisionOf(obj any) string {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return ""
	}
	rev, _, _ := unstructured.NestedString(u.Object, "status", "lastAppliedRevision")
	return rev
}

// Nudge asks Flux to reconcile now, as `flux reconcile kustomization --with-source` does: the
// Kustomization's GitRepository first (it fetches the new commit), then the Kustomization. It
// patches only the annotation. A source of another kind is left alone.
func (w *Watch) Nudge(ctx context.Context, now time.Time) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		RequestedAtAnnotation: now.UTC().Format(time.RFC3339Nano)}}})
	if err != nil {
		return err
	}
	k, err := w.dyn.Resource(Kustomizations).Namespace(w.namespace).Get(ctx, w.name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading Kustomization %s/%s: %w", w.namespace, w.name, err)
	}
	var errs []error
	kind, _, _ := unstructured.NestedString(k.Object, "spec", "sourceRef", "kind")
	src, _, _ := unstructured.NestedString(k.Object, "spec", "sourceRef", "name")
	srcNS, _, _ := unstructured.NestedString(k.Object, "spec", "sourceRef", "namespace")
	if srcNS == "" {
		srcNS = w.namespace
	}
	if kind == "GitRepository" && src != "" {
		if _, err := w.dyn.Resource(GitRepositories).Namespace(srcNS).Patch(ctx, src, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("nudging GitRepository %s/%s: %w", srcNS, src, err))
		}
	}
	if _, err := w.dyn.Resource(Kustomizations).Namespace(w.namespace).Patch(ctx, w.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		errs = append(errs, fmt.Errorf("nudging Kustomization %s/%s: %w", w.namespace, w.name, err))
	}
	return errors.Join(errs...)
}
