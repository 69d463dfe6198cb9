// Package gitops holds the vocabulary of mpha's GitOps repository: where each file lives
// (docs/design.md §3, a contract), which names are valid, how mpha marks the files it owns, and
// the Change a commit makes (which gitops/gitrepo applies). It is pure: no network, no clients, no Git. Code that writes YAML or talks to Git lives in its
// subpackages and imports this one, never the reverse.
package gitops

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultRoot is the folder of the repository that holds everything mpha reads and writes.
const DefaultRoot = "mpha"

// Ownership markers on every file the agent writes (docs/design.md §3): the agent never rewrites a
// file without them.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "mpha"
	// Header starts every YAML file the agent owns.
	Header = "# Managed by mpha: changes are overwritten. See pair.yaml for the pair's state.\n"
)

// Layout places mpha's files under Root. The zero value is not valid: use NewLayout.
type Layout struct {
	root string
}

// NewLayout validates root (a relative, clean path inside the repository; "" means DefaultRoot).
func NewLayout(root string) (Layout, error) {
	if root == "" {
		root = DefaultRoot
	}
	clean := path.Clean(root)
	if path.IsAbs(root) || clean != root || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
		return Layout{}, fmt.Errorf("repository root %q: want a clean relative path such as %q", root, DefaultRoot)
	}
	return Layout{root: clean}, nil
}

// Root is the folder holding everything below.
func (l Layout) Root() string { return l.root }

// Pair is pair.yaml: who is active, the epoch, the FQDNs. Agent state, never applied by Flux.
func (l Layout) Pair() string { return path.Join(l.root, "pair.yaml") }

// ClusterDir is what Flux in cluster applies (its Kustomization's path).
func (l Layout) ClusterDir(cluster string) string { return path.Join(l.root, "clusters", cluster) }

// Kustomization lists what Flux in cluster applies.
func (l Layout) Kustomization(cluster string) string {
	return path.Join(l.ClusterDir(cluster), "kustomization.yaml")
}

// SealingCert is cluster's sealed-secrets public certificate, written by cluster's own agent.
func (l Layout) SealingCert(cluster string) string {
	return path.Join(l.ClusterDir(cluster), "sealing-cert.pem")
}

// SecretsDir holds the SealedSecrets sealed for cluster (written by its active peer).
func (l Layout) SecretsDir(cluster string) string { return path.Join(l.ClusterDir(cluster), "secrets") }

// Secret is the SealedSecret of Secret name, sealed for cluster.
func (l Layout) Secret(cluster, name string) string {
	return path.Join(l.SecretsDir(cluster), name+".yaml")
}

// HelmRelease is the Flux HelmRelease (and HelmRepository) of cluster's management plane.
func (l Layout) HelmRelease(cluster string) string {
	return path.Join(l.ClusterDir(cluster), "mp", "helmrelease.yaml")
}

// Role is the scale and job state of cluster's role (docs/design.md §5).
func (l Layout) Role(cluster string) string {
	return path.Join(l.ClusterDir(cluster), "mp", "role.yaml")
}

// FloatingDNS is the DNSEndpoint pointing the floating FQDN at the active MP.
func (l Layout) FloatingDNS() string { return path.Join(l.root, "dns", "floating.yaml") }

// Facts is the public facts of cluster's TSB secrets (seal.MarshalFactsFile), written by
// cluster's agent while it is active, for its standby's readiness checks. It is outside every
// folder Flux applies.
func (l Layout) Facts(cluster string) string { return path.Join(l.FactsDir(), cluster+".yaml") }

// DrillReport is the report of game-day drill id run on date (YYYY-MM-DD), which `mpha drill
// run` commits. It is outside every folder Flux applies.
func (l Layout) DrillReport(date, id string) string {
	return path.Join(l.root, "drills", date+"-"+id+".md")
}

// FactsDir holds every cluster's facts file.
func (l Layout) FactsDir() string { return path.Join(l.root, "facts") }

// ValidateClusterName checks a cluster's name: it is a path segment, a NATS subject token and a
// label value, so it must be a DNS-1123 label.
func ValidateClusterName(name string) error { return ValidateName("cluster name", name) }

// ValidateName checks a name that becomes a path segment, a NATS subject token or a label value
// (a cluster, a pair, an Mpha-Kind): a DNS-1123 label. what says what the name is in the error.
func ValidateName(what, name string) error {
	if len(validation.IsDNS1123Label(name)) > 0 {
		return fmt.Errorf("%s %s: %s", what, Quote(name), labelRule)
	}
	return nil
}

// labelRule says in plain words what validation.IsDNS1123Label checks (its own message quotes a
// regular expression).
const labelRule = "want 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit"

// quoteMax is how much of a value Quote shows, in runes.
const quoteMax = 64

// Quote is s quoted for an error message: Go-escaped (so no control character reaches a terminal
// or a log) and cut after quoteMax runes with "…" (a refused value may be megabytes long).
func Quote(s string) string {
	if utf8.RuneCountInString(s) <= quoteMax {
		return strconv.Quote(s)
	}
	r := []rune(s)
	return strconv.Quote(string(r[:quoteMax])) + "…"
}

// ValidateSecretName checks a Kubernetes Secret's name (a DNS-1123 subdomain), which also keeps
// the file it is stored in inside its folder.
func ValidateSecretName(name string) error {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("secret name %q: %s", name, strings.Join(errs, "; "))
	}
	return nil
}
