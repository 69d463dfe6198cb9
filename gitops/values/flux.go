package values

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	helmv2 "github.com/fluxcd/helm-controller/api/v2"
	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/internal/canonyaml"
)

// Defaults of the standby's Flux objects.
const (
	DefaultChartRepository = "https://charts.dl.tetrate.io/public/helm/charts/"
	DefaultChart           = "managementplane"
	// RepositoryName names the HelmRepository mpha writes next to the HelmRelease.
	RepositoryName = "tsb-charts"
)

// Release describes the standby's HelmRelease: the same chart, version, name and namespace as
// the active's Helm release.
type Release struct {
	// Name and Namespace of the Helm release (and of the HelmRelease object).
	Name, Namespace string
	// Chart and Version: the chart's name and exact version, from the active release.
	Chart, Version string
	// RepositoryURL is the chart repository (HTTP(S) index or oci://).
	RepositoryURL string
	// RepositorySecret, if set, names a Secret in Namespace with the repository's credentials.
	RepositorySecret string
	// Values are the rendered standby values.
	Values map[string]any
}

// Validate checks what Flux would refuse later.
func (r Release) Validate() error {
	var errs []error
	for what, v := range map[string]string{"release name": r.Name, "namespace": r.Namespace, "chart": r.Chart} {
		if msgs := validation.IsDNS1123Subdomain(v); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s %q: %s", what, v, strings.Join(msgs, "; ")))
		}
	}
	if r.Version == "" {
		errs = append(errs, errors.New("chart version must be set"))
	}
	if !strings.HasPrefix(r.RepositoryURL, "https://") && !strings.HasPrefix(r.RepositoryURL, "http://") && !strings.HasPrefix(r.RepositoryURL, "oci://") {
		errs = append(errs, fmt.Errorf("chart repository %q: want an http(s):// or oci:// URL", r.RepositoryURL))
	}
	return errors.Join(errs...)
}

// Marshal writes helmrelease.yaml: the HelmRepository, then the HelmRelease, behind the mpha
// header. Equal releases give equal bytes.
func (r Release) Marshal() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	vals, err := json.Marshal(r.Values)
	if err != nil {
		return nil, fmt.Errorf("encoding values: %w", err)
	}
	labels := map[string]string{gitops.ManagedByLabel: gitops.ManagedByValue}
	repo := &sourcev1.HelmRepository{
		TypeMeta:   metav1.TypeMeta{APIVersion: sourcev1.GroupVersion.String(), Kind: sourcev1.HelmRepositoryKind},
		ObjectMeta: metav1.ObjectMeta{Name: RepositoryName, Namespace: r.Namespace, Labels: labels},
		Spec:       sourcev1.HelmRepositorySpec{URL: r.RepositoryURL, Interval: metav1.Duration{Duration: time.Hour}},
	}
	if strings.HasPrefix(r.RepositoryURL, "oci://") {
		repo.Spec.Type = sourcev1.HelmRepositoryTypeOCI
	}
	if r.RepositorySecret != "" {
		repo.Spec.SecretRef = &meta.LocalObjectReference{Name: r.RepositorySecret}
	}
	// TSB installs take up to 10 minutes (tsb-mp-ha.md §3); CRDs ship with the chart.
	timeout := metav1.Duration{Duration: 10 * time.Minute}
	hr := &helmv2.HelmRelease{
		TypeMeta:   metav1.TypeMeta{APIVersion: helmv2.GroupVersion.String(), Kind: helmv2.HelmReleaseKind},
		ObjectMeta: metav1.ObjectMeta{Name: r.Name, Namespace: r.Namespace, Labels: labels},
		Spec: helmv2.HelmReleaseSpec{
			Interval:    metav1.Duration{Duration: 10 * time.Minute},
			ReleaseName: r.Name,
			Timeout:     &timeout,
			Chart: &helmv2.HelmChartTemplate{Spec: helmv2.HelmChartTemplateSpec{
				Chart: r.Chart, Version: r.Version,
				SourceRef: helmv2.CrossNamespaceObjectReference{Kind: sourcev1.HelmRepositoryKind, Name: RepositoryName},
			}},
			Install: &helmv2.Install{CRDs: helmv2.CreateReplace, Remediation: &helmv2.InstallRemediation{Retries: 3}},
			Upgrade: &helmv2.Upgrade{CRDs: helmv2.CreateReplace, Remediation: &helmv2.UpgradeRemediation{Retries: 3}},
			Values:  &apiextensionsv1.JSON{Raw: vals},
		},
	}
	var buf bytes.Buffer
	buf.WriteString(gitops.Header)
	for i, o := range []runtime.Object{repo, hr} {
		b, err := marshalObject(o)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// marshalObject encodes o without the empty fields typed objects carry (status, creationTimestamp).
func marshalObject(o runtime.Object) ([]byte, error) {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, fmt.Errorf("converting %T: %w", o, err)
	}
	delete(u, "status")
	unstructured.RemoveNestedField(u, "metadata", "creationTimestamp")
	b, err := canonyaml.Marshal(u)
	if err != nil {
		return nil, fmt.Errorf("encoding %T: %w", o, err)
	}
	return b, nil
}

// ParseRelease reads back a helmrelease.yaml written by Marshal: the HelmRelease's chart,
// version and values. Only the fields mpha writes are read.
func ParseRelease(b []byte) (Release, error) {
	if err := gitops.CheckOwned("helmrelease.yaml", b); err != nil {
		return Release{}, err
	}
	var r Release
	var found bool
	for _, doc := range splitDocuments(b) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return Release{}, fmt.Errorf("decoding helmrelease.yaml: %w", err)
		}
		switch tm.Kind {
		case sourcev1.HelmRepositoryKind:
			var repo sourcev1.HelmRepository
			if err := yaml.Unmarshal(doc, &repo); err != nil {
				return Release{}, fmt.Errorf("decoding HelmRepository: %w", err)
			}
			r.RepositoryURL = repo.Spec.URL
			if repo.Spec.SecretRef != nil {
				r.RepositorySecret = repo.Spec.SecretRef.Name
			}
		case helmv2.HelmReleaseKind:
			var hr helmv2.HelmRelease
			if err := yaml.Unmarshal(doc, &hr); err != nil {
				return Release{}, fmt.Errorf("decoding HelmRelease: %w", err)
			}
			found = true
			r.Name, r.Namespace = hr.Spec.ReleaseName, hr.Namespace
			if hr.Spec.Chart != nil {
				r.Chart, r.Version = hr.Spec.Chart.Spec.Chart, hr.Spec.Chart.Spec.Version
			}
			r.Values = map[string]any{}
			if hr.Spec.Values != nil {
				if err := json.Unmarshal(hr.Spec.Values.Raw, &r.Values); err != nil {
					return Release{}, fmt.Errorf("HelmRelease %s/%s: values: %w", hr.Namespace, hr.Name, err)
				}
			}
		}
	}
	if !found {
		return Release{}, errors.New("helmrelease.yaml holds no HelmRelease")
	}
	return r, nil
}

func splitDocuments(b []byte) [][]byte {
	var out [][]byte
	for _, d := range bytes.Split(b, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			out = append(out, d)
		}
	}
	return out
}
