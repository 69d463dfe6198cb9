package seal

import (
	"fmt"
	"maps"
	"slices"

	"sigs.k8s.io/yaml"
)

// The facts file (gitops.Layout.Facts) is where the active's agent publishes the public facts of
// the TSB secrets the readiness checks compare, exported or not: the kids of iam-signing-key and
// tsb-iam-jwks, the CA fingerprint and SANs of tsb-certs and xcp-central-cert. A standby compares
// its own secrets with them before a failover; without them, a secret left out of the export (or
// never exported, like each MP's own certificates) could only be "unknown", and a standby with
// another signing key or another root CA would pass the preflight with a warning. No value and
// no digest is in it: only what a SealedSecret's annotations already say in the clear.

// FactsFileKind heads the file, so that a file of another kind at that path is refused.
const FactsFileKind = "MphaSecretFacts"

type factsFile struct {
	Kind    string                `json:"kind"`
	Cluster string                `json:"cluster"`
	Secrets map[string]factsEntry `json:"secrets"`
}

type factsEntry struct {
	// Present is false for a secret the cluster does not hold.
	Present bool `json:"present"`
	// Facts are the Annotations of its facts (none when absent).
	Facts map[string]string `json:"facts,omitempty"`
}

// MarshalFactsFile writes cluster's facts file: each secret's public facts (Annotations), or
// that it is absent. The digest is left out: the SealedSecrets carry it for what is exported.
func MarshalFactsFile(cluster string, facts map[string]Facts) ([]byte, error) {
	f := factsFile{Kind: FactsFileKind, Cluster: cluster, Secrets: map[string]factsEntry{}}
	for _, name := range slices.Sorted(maps.Keys(facts)) {
		e := factsEntry{Present: facts[name].Present}
		if e.Present {
			e.Facts = Annotations(facts[name])
		}
		f.Secrets[name] = e
	}
	b, err := yaml.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("writing the facts file of %s: %w", cluster, err)
	}
	header := "# Written by mpha: the public facts of " + cluster + "'s TSB secrets (kids, CA fingerprints, SANs; no value),\n" +
		"# which its peer's readiness checks compare with its own. Not applied by Flux.\n"
	return append([]byte(header), b...), nil
}

// ParseFactsFile reads a facts file: the cluster it describes and each secret's facts, Sealed
// (what the file does not say is unknown). Every value is checked as FactsFromSealed checks them.
func ParseFactsFile(b []byte) (string, map[string]Facts, error) {
	var f factsFile
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return "", nil, fmt.Errorf("reading the facts file: %w", err)
	}
	if f.Kind != FactsFileKind {
		return "", nil, fmt.Errorf("reading the facts file: kind %q, want %s", f.Kind, FactsFileKind)
	}
	out := map[string]Facts{}
	for name, e := range f.Secrets {
		if !e.Present {
			out[name] = Facts{}
			continue
		}
		facts, err := factsFromAnnotations(e.Facts)
		if err != nil {
			return "", nil, fmt.Errorf("the facts file of %s, secret %s: %w", f.Cluster, truncate(name, 64), err)
		}
		out[name] = facts
	}
	return f.Cluster, out, nil
}
