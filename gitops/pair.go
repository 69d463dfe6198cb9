package gitops

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	yaml "go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/internal/canonyaml"
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
	APIVersion   string `json:"apiVersion"`
	Kind         string `json:"kind"`
	Name         string `json:"name"`
	FloatingFQDN string `json:"floatingFQDN"`
	// FloatingTTL is the floating record's TTL (default DefaultFloatingTTL; see RecordTTL). It
	// lives here, beside the name, because both agents must render the same record: a TTL per
	// agent's configuration would make the two clusters' DNSEndpoints disagree.
	FloatingTTL  *metav1.Duration `json:"floatingTTL,omitempty"`
	Clusters     []ClusterRef     `json:"clusters"`
	Active       string           `json:"active"`
	Epoch        int64            `json:"epoch"`
	LastFailover *Failover        `json:"lastFailover,omitempty"`
}

// The floating record's TTL: the default, and the range pair.yaml's floatingTTL may take. The TTL
// bounds how long a client keeps the old answer after a failover; DNS counts it in whole seconds
// (RFC 2181 §8), and a day is far beyond any failover's patience.
const (
	DefaultFloatingTTL = time.Minute
	MinFloatingTTL     = time.Second
	MaxFloatingTTL     = 24 * time.Hour
)

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

// Validate checks the pair: two distinct valid clusters, one of them active, a non-negative epoch,
// a floating TTL (when set) of whole seconds from MinFloatingTTL to MaxFloatingTTL.
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
	if p.FloatingTTL != nil {
		switch d := p.FloatingTTL.Duration; {
		case d < MinFloatingTTL || d > MaxFloatingTTL:
			errs = append(errs, fmt.Errorf("floatingTTL: %s is out of range: want %s to %s", d, MinFloatingTTL, MaxFloatingTTL))
		case d%time.Second != 0:
			errs = append(errs, fmt.Errorf("floatingTTL: %s is not a whole number of seconds, which DNS counts in", d))
		}
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

// RecordTTL is the floating record's TTL: floatingTTL, or DefaultFloatingTTL when it is unset.
func (p *Pair) RecordTTL() time.Duration {
	if p.FloatingTTL == nil {
		return DefaultFloatingTTL
	}
	return p.FloatingTTL.Duration
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

// PairHeader starts a pair.yaml that mpha writes from scratch (test rigs, a starting file): unlike
// the files under Header, the rest of pair.yaml is the user's, and failovers edit it (EditPair).
const PairHeader = "# The pair's state. Edit it by hand except active, epoch and lastFailover: mpha's failovers set those.\n"

// pairKeyOrder is the order Marshal writes keys in: the struct's, not the alphabet's.
var pairKeyOrder = []string{"apiVersion", "kind", "name", "floatingFQDN", "floatingTTL", "clusters", "active", "epoch", "lastFailover",
	"mpFQDN", "event", "from", "to", "at"}

// Marshal renders a new pair.yaml with PairHeader, keys in the struct's order. An existing
// pair.yaml is edited with EditPair instead, which keeps what its author wrote.
func (p *Pair) Marshal() ([]byte, error) {
	b, err := canonyaml.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("rendering pair.yaml: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("rendering pair.yaml: %w", err)
	}
	orderKeys(&doc)
	var buf bytes.Buffer
	buf.WriteString(PairHeader)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("rendering pair.yaml: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("rendering pair.yaml: %w", err)
	}
	return buf.Bytes(), nil
}

// orderKeys sorts every mapping under n by pairKeyOrder (canonyaml sorted them byte-wise).
func orderKeys(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		type kv struct{ k, v *yaml.Node }
		pairs := make([]kv, 0, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			pairs = append(pairs, kv{n.Content[i], n.Content[i+1]})
		}
		slices.SortStableFunc(pairs, func(a, b kv) int {
			return slices.Index(pairKeyOrder, a.k.Value) - slices.Index(pairKeyOrder, b.k.Value)
		})
		n.Content = n.Content[:0]
		for _, p := range pairs {
			n.Content = append(n.Content, p.k, p.v)
		}
	}
	for _, c := range n.Content {
		orderKeys(c)
	}
}
