package seal

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Annotations the exporter puts on each committed SealedSecret, so that the standby's agent can
// compare its live secrets with what the active exported (DigestAnnotation is the fourth).
const (
	// KidAnnotation holds the secret's kids, sorted and comma-separated.
	KidAnnotation = "mpha.dev/kid"
	// CAAnnotation holds the SHA-256 (hex) of the secret's CA certificate.
	CAAnnotation = "mpha.dev/ca-sha256"
	// DNSNamesAnnotation holds the leaf certificate's DNS SANs, sorted and comma-separated.
	DNSNamesAnnotation = "mpha.dev/dns-names"
)

// Annotations returns f's public facts as SealedSecret annotations, leaving out empty ones.
func Annotations(f Facts) map[string]string {
	out := map[string]string{}
	for k, v := range map[string]string{
		KidAnnotation:      strings.Join(f.Kids, ","),
		CAAnnotation:       f.CA,
		DNSNamesAnnotation: strings.Join(f.DNSNames, ","),
	} {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

// Annotation values come from Git and end up in Events and evidence: they are checked to be the
// identifiers they claim to be.
var (
	caPattern     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	digestPattern = regexp.MustCompile(`^hmac-sha256:[0-9a-f]{64}$`)
	tokenPattern  = regexp.MustCompile(`^[\x21-\x2b\x2d-\x7e]{1,256}$`) // printable ASCII, no space or comma
)

// FactsFromSealed reads the facts the active exported from a committed SealedSecret file: the
// digest (DigestAnnotation) and the annotations of Annotations. The result is Sealed: a fact
// without its annotation is unknown.
func FactsFromSealed(file []byte) (Facts, error) {
	var ss struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name        string            `json:"name"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(file, &ss); err != nil {
		return Facts{}, fmt.Errorf("reading SealedSecret: %w", err)
	}
	if ss.Kind != "SealedSecret" {
		return Facts{}, fmt.Errorf("reading SealedSecret: kind %q", ss.Kind)
	}
	f, err := factsFromAnnotations(ss.Metadata.Annotations)
	if err != nil {
		return Facts{}, fmt.Errorf("SealedSecret %s: %w", ss.Metadata.Name, err)
	}
	return f, nil
}

// factsFromAnnotations reads and checks the facts annotations of a SealedSecret or a facts file.
func factsFromAnnotations(a map[string]string) (Facts, error) {
	f := Facts{Present: true, Sealed: true, Digest: a[DigestAnnotation], CA: a[CAAnnotation]}
	var errs []error
	if f.Digest != "" && !digestPattern.MatchString(f.Digest) {
		errs = append(errs, fmt.Errorf("%s: not an hmac-sha256 digest", DigestAnnotation))
	}
	if f.CA != "" && !caPattern.MatchString(f.CA) {
		errs = append(errs, fmt.Errorf("%s: not a SHA-256 in hex", CAAnnotation))
	}
	var err error
	if f.Kids, err = splitTokens(KidAnnotation, a[KidAnnotation]); err != nil {
		errs = append(errs, err)
	}
	if f.DNSNames, err = splitTokens(DNSNamesAnnotation, a[DNSNamesAnnotation]); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Facts{}, err
	}
	f.Leaf = f.DNSNames != nil
	return f, nil
}

// splitTokens splits a comma-separated annotation into sorted, unique identifiers.
func splitTokens(name, v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	parts := strings.Split(v, ",")
	for _, p := range parts {
		if !tokenPattern.MatchString(p) {
			return nil, fmt.Errorf("%s: %q is not an identifier", name, truncate(p, 40))
		}
	}
	slices.Sort(parts)
	return slices.Compact(parts), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
