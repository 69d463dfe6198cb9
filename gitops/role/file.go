package role

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/internal/canonyaml"
	"github.com/mpha-dev/mpha/internal/strictyaml"
)

// The documents of role.yaml hold exactly these fields: anything more would be applied onto
// TSB's objects too. Pointers keep replicas: 0 and suspend: false in the output.
type (
	metadata struct {
		Annotations map[string]string `json:"annotations"`
		Labels      map[string]string `json:"labels,omitempty"`
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
	}
	deployment struct {
		APIVersion string         `json:"apiVersion"`
		Kind       string         `json:"kind"`
		Metadata   metadata       `json:"metadata"`
		Spec       deploymentSpec `json:"spec"`
	}
	deploymentSpec struct {
		Replicas *int32                `json:"replicas"`
		Selector *metav1.LabelSelector `json:"selector"`
	}
	cronJob struct {
		APIVersion string      `json:"apiVersion"`
		Kind       string      `json:"kind"`
		Metadata   metadata    `json:"metadata"`
		Spec       cronJobSpec `json:"spec"`
	}
	cronJobSpec struct {
		Schedule string `json:"schedule"`
		Suspend  *bool  `json:"suspend"`
	}
)

const (
	deploymentAPIVersion = "apps/v1"
	deploymentKind       = "Deployment"
	cronJobAPIVersion    = "batch/v1"
	cronJobKind          = "CronJob"
)

func ownMetadata(name, ns string) metadata {
	return metadata{
		Annotations: map[string]string{SSAAnnotation: SSAMerge, PruneAnnotation: PruneDisabled},
		Name:        name,
		Namespace:   ns,
	}
}

// Marshal renders role.yaml: mpha's header, then one document per Deployment (by name), then the
// CronJob. Equal roles give equal bytes, so an unchanged role never makes a commit.
func (r Role) Marshal() ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	var docs []any
	ws := slices.Clone(r.Deployments)
	sortWorkloads(ws)
	for _, w := range ws {
		docs = append(docs, deployment{
			APIVersion: deploymentAPIVersion, Kind: deploymentKind,
			Metadata: ownMetadata(w.Name, r.Namespace),
			Spec:     deploymentSpec{Replicas: &r.Replicas, Selector: w.Selector},
		})
	}
	if rj := r.Restore; rj != nil {
		docs = append(docs, cronJob{
			APIVersion: cronJobAPIVersion, Kind: cronJobKind,
			Metadata: ownMetadata(rj.Name, r.Namespace),
			Spec:     cronJobSpec{Schedule: rj.Schedule, Suspend: &r.RestoreSuspended},
		})
	}
	out := []byte(gitops.Header)
	for i, d := range docs {
		b, err := canonyaml.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("rendering role.yaml: %w", err)
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, b...)
	}
	return out, nil
}

// Parse reads a role.yaml back, so that a failover can rewrite a cluster's role from Git alone
// (selectors, schedule) without asking the cluster. It is strict: the file must start with mpha's
// header (else gitops.ErrNotOwned), and hold only what Marshal writes.
func Parse(b []byte) (Role, error) {
	if !bytes.HasPrefix(b, []byte(gitops.Header)) {
		return Role{}, fmt.Errorf("role.yaml: %w: it lacks mpha's header", gitops.ErrNotOwned)
	}
	var p parser
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	for i := 0; ; i++ {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Role{}, fmt.Errorf("role.yaml: reading document %d: %w", i, err)
		}
		if err := p.add(doc); err != nil {
			return Role{}, fmt.Errorf("role.yaml: document %d: %w", i, err)
		}
	}
	r := p.role()
	if err := r.Validate(); err != nil {
		return Role{}, err
	}
	return r, nil
}

// parser gathers a Role from role.yaml's documents, one at a time.
type parser struct {
	objects     int
	ns          string
	replicas    *int32
	deployments []Workload
	restore     *Restore
	suspended   bool
}

func (p *parser) add(doc []byte) error {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	switch {
	case tm == metav1.TypeMeta{}:
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return fmt.Errorf("decoding: %w", err)
		}
		if string(j) != "null" {
			return errors.New("no apiVersion and kind")
		}
		return nil // a lone comment or a stray "---"
	case tm.APIVersion == deploymentAPIVersion && tm.Kind == deploymentKind:
		return p.addDeployment(doc)
	case tm.APIVersion == cronJobAPIVersion && tm.Kind == cronJobKind:
		return p.addCronJob(doc)
	}
	return fmt.Errorf("%s %s: role.yaml holds only %s %ss and a %s %s", tm.APIVersion, tm.Kind, deploymentAPIVersion, deploymentKind, cronJobAPIVersion, cronJobKind)
}

func (p *parser) addDeployment(doc []byte) error {
	var d deployment
	if err := strictyaml.Unmarshal(doc, &d); err != nil {
		return fmt.Errorf("%s: %w", deploymentKind, err)
	}
	if err := p.checkMetadata(d.Metadata); err != nil {
		return fmt.Errorf("%s %s: %w", deploymentKind, d.Metadata.Name, err)
	}
	switch {
	case d.Spec.Replicas == nil:
		return fmt.Errorf("%s %s: spec.replicas: missing", deploymentKind, d.Metadata.Name)
	case d.Spec.Selector == nil:
		return fmt.Errorf("%s %s: spec.selector: missing", deploymentKind, d.Metadata.Name)
	case p.replicas != nil && *p.replicas != *d.Spec.Replicas:
		return fmt.Errorf("%s %s: spec.replicas: %d, but an earlier Deployment has %d", deploymentKind, d.Metadata.Name, *d.Spec.Replicas, *p.replicas)
	}
	p.replicas = d.Spec.Replicas
	p.deployments = append(p.deployments, Workload{Name: d.Metadata.Name, Selector: d.Spec.Selector})
	return nil
}

func (p *parser) addCronJob(doc []byte) error {
	var cj cronJob
	if err := strictyaml.Unmarshal(doc, &cj); err != nil {
		return fmt.Errorf("%s: %w", cronJobKind, err)
	}
	if err := p.checkMetadata(cj.Metadata); err != nil {
		return fmt.Errorf("%s %s: %w", cronJobKind, cj.Metadata.Name, err)
	}
	switch {
	case p.restore != nil:
		return fmt.Errorf("%s %s: a second restore job (the first is %s)", cronJobKind, cj.Metadata.Name, p.restore.Name)
	case cj.Spec.Suspend == nil:
		return fmt.Errorf("%s %s: spec.suspend: missing", cronJobKind, cj.Metadata.Name)
	}
	p.restore = &Restore{Name: cj.Metadata.Name, Schedule: cj.Spec.Schedule}
	p.suspended = *cj.Spec.Suspend
	return nil
}

// checkMetadata insists on exactly the marks Marshal writes: without them Flux would delete or
// take over TSB's objects, and a hand-made file is not mpha's to rewrite.
func (p *parser) checkMetadata(m metadata) error {
	want := ownMetadata(m.Name, m.Namespace)
	if !maps.Equal(m.Annotations, want.Annotations) {
		return fmt.Errorf("metadata.annotations: want exactly %s: %s and %s: %s, got %v", SSAAnnotation, SSAMerge, PruneAnnotation, PruneDisabled, m.Annotations)
	}
	if len(m.Labels) > 0 {
		return fmt.Errorf("metadata.labels: want none (they would overwrite the live object's), got %v", m.Labels)
	}
	if p.objects > 0 && m.Namespace != p.ns {
		return fmt.Errorf("metadata.namespace: %q, but an earlier object is in %q", m.Namespace, p.ns)
	}
	p.ns = m.Namespace
	p.objects++
	return nil
}

func (p *parser) role() Role {
	r := Role{Namespace: p.ns, Deployments: p.deployments, Restore: p.restore, RestoreSuspended: p.suspended}
	if p.replicas != nil {
		r.Replicas = *p.replicas
	}
	sortWorkloads(r.Deployments)
	return r
}
