package gitops

import (
	"errors"
	"fmt"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/internal/strictyaml"
)

// PairAPIVersion and PairKind identify pair.yaml.
const (
	PairAPIVersion = "mpha.dev/v1alpha1"
	PairKind       = "Pair"
)

// Pair is pair.yaml (docs/design.md §3, a contract): which cluster is active, the epoch that fences
// stale failover requests, and the FQDNs. Agents read it; Flux never applies it.
type Pair struct {
	APIVersion   string       `json:"apiVersion"`
	Kind         string       `json:"kind"`
	Name         string       `json:"name"`
	FloatingFQDN string       `json:"floatingFQDN"`
	Clusters     []ClusterRef `json:"clusters"`
	Active       string       `json:"active"`
	Epoch        int64        `json:"epoch"`
	LastFailover *Failover    `json:"lastFailover,omitempty"`
}

// ClusterRef is one member of the pair.
type ClusterRef struct {
	Name   string `json:"name"`
	MPFQDN string `json:"mpFQDN"`
}

// Failover records the change that made the current active cluster active.
type Failover struct {
	Event string    `json:"event"`
	From  string    `json:"from"`
	To    string    `json:"to"`
	At    time.Time `json:"at"`
}

// ParsePair decodes pair.yaml strictly (unknown, duplicate or mis-cased keys are errors) and
// validates it.
func ParsePair(b []byte) (*Pair, error) {
	var p Pair
	if err := strictyaml.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("decoding pair.yaml: %w", err)
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Validate checks the pair: two distinct valid clusters, one of them active, a non-negative epoch.
func (p *Pair) Validate() error {
	var errs []error
	if p.APIVersion != PairAPIVersion || p.Kind != PairKind {
		errs = append(errs, fmt.Errorf("apiVersion/kind: want %s %s, got %q %q", PairAPIVersion, PairKind, p.APIVersion, p.Kind))
	}
	if err := ValidateClusterName(p.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	if p.FloatingFQDN == "" {
		errs = append(errs, errors.New("floatingFQDN: must be set"))
	}
	if len(p.Clusters) != 2 {
		errs = append(errs, fmt.Errorf("clusters: a pair has 2 clusters, got %d", len(p.Clusters)))
	} else if p.Clusters[0].Name == p.Clusters[1].Name {
		errs = append(errs, fmt.Errorf("clusters: both are %q", p.Clusters[0].Name))
	}
	for i, c := range p.Clusters {
		if err := ValidateClusterName(c.Name); err != nil {
			errs = append(errs, fmt.Errorf("clusters[%d].name: %w", i, err))
		}
		if c.MPFQDN == "" {
			errs = append(errs, fmt.Errorf("clusters[%d].mpFQDN: must be set", i))
		}
	}
	if !p.member(p.Active) {
		errs = append(errs, fmt.Errorf("active: %q is not one of the clusters", p.Active))
	}
	if p.Epoch < 0 {
		errs = append(errs, fmt.Errorf("epoch: must not be negative, got %d", p.Epoch))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pair.yaml: %w", err)
	}
	return nil
}

func (p *Pair) member(name string) bool {
	for _, c := range p.Clusters {
		if c.Name == name && name != "" {
			return true
		}
	}
	return false
}

// Peer returns the other cluster of the pair.
func (p *Pair) Peer(self string) (string, error) {
	if !p.member(self) {
		return "", fmt.Errorf("cluster %q is not in pair %s", self, p.Name)
	}
	for _, c := range p.Clusters {
		if c.Name != self {
			return c.Name, nil
		}
	}
	return "", fmt.Errorf("pair %s has no peer for %q", p.Name, self)
}

// Marshal renders pair.yaml with mpha's header.
func (p *Pair) Marshal() ([]byte, error) {
	b, err := yaml.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("rendering pair.yaml: %w", err)
	}
	return append([]byte(Header), b...), nil
}
