// Package values renders the standby management plane's Helm values from the active's
// (docs/design.md §2, tsb-mp-ha.md §3): both MPs run the same values, minus `secrets` (those
// travel as SealedSecrets) and plus a few per-site overrides. Rendering is pure and
// deterministic, so an unchanged release never produces a commit.
package values

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/internal/canonyaml"
)

// MaxFileSize bounds a values file read by ParseFile; the managementplane chart's values are a
// few KiB, and a huge file is a mistake or an attack.
const MaxFileSize = 4 << 20

// Kept lists the top-level keys of the managementplane chart's values a standby keeps. Everything
// else (above all `secrets`) is dropped.
func Kept() []string { return []string{"certManager", "image", "operator", "spec"} }

// AllowedOverrides lists the paths a site may override: the environment-specific fields of the
// TSB docs (registry, hub, pull secrets, the operator's scheduling, per-cluster Kubernetes
// settings of the components). "*" matches one key. A path may also lie below an allowed one.
// The stores, identity provider and token issuer are not here: they must equal the active's.
func AllowedOverrides() []string {
	return []string{
		"image.registry",
		"spec.hub",
		"spec.imagePullSecrets",
		"operator",
		"certManager.clusterResourcesNamespace",
		"spec.components.*.kubeSpec",
	}
}

// Overrides maps dotted value paths ("image.registry") to the value they take on the standby.
type Overrides map[string]any

// Validate checks every path against AllowedOverrides and returns every problem, each naming
// its path.
func (o Overrides) Validate() error {
	var errs []error
	for _, p := range slices.Sorted(maps.Keys(o)) {
		if err := checkPath(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func checkPath(p string) error {
	segs := strings.Split(p, ".")
	if slices.Contains(segs, "") {
		return fmt.Errorf("override %q: empty path segment", p)
	}
	for _, allowed := range AllowedOverrides() {
		if under(segs, strings.Split(allowed, ".")) {
			return nil
		}
	}
	return fmt.Errorf("override %q: not an allowed path (allowed: %s)", p, strings.Join(AllowedOverrides(), ", "))
}

// under reports whether path equals or lies below pattern.
func under(path, pattern []string) bool {
	if len(path) < len(pattern) {
		return false
	}
	for i, seg := range pattern {
		if seg != "*" && seg != path[i] {
			return false
		}
	}
	return true
}

// Options configure Render.
type Options struct {
	// Overrides set per-site values (AllowedOverrides).
	Overrides Overrides
	// SecretValues is what becomes of a value under a key that names a credential, anywhere in
	// the tree: SecretsStrip (the default, "") or SecretsRefuse.
	SecretValues string
	// NotSecret adds to BuiltinNotSecret: keys and paths that only look like credentials.
	NotSecret []string
}

// Validate checks the overrides, the policy and the allow-list, returning every problem.
func (o Options) Validate() error {
	var errs []error
	if err := o.Overrides.Validate(); err != nil {
		errs = append(errs, err)
	}
	if o.SecretValues != "" && !slices.Contains(SecretPolicies(), o.SecretValues) {
		errs = append(errs, fmt.Errorf("secret values %q: want one of %v", o.SecretValues, SecretPolicies()))
	}
	if err := ValidateNotSecret(o.NotSecret); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Rendered is Render's result.
type Rendered struct {
	// Values are the standby's values.
	Values map[string]any
	// Stripped are the paths of the credentials removed (SecretsStrip), sorted; never their values.
	Stripped []string
}

// Render returns the standby's values: the Kept keys of src, deep-copied, with overrides applied
// and every credential left among them (a password under spec, an operator's env DB_PASSWORD, a
// private key anywhere) stripped or refused: the result goes to Git. src is not modified.
func Render(src map[string]any, o Options) (Rendered, error) {
	if err := o.Validate(); err != nil {
		return Rendered{}, err
	}
	out := map[string]any{}
	for _, k := range Kept() {
		if v, ok := src[k]; ok {
			c, err := deepCopy(v, k)
			if err != nil {
				return Rendered{}, err
			}
			out[k] = c
		}
	}
	for _, p := range slices.Sorted(maps.Keys(o.Overrides)) {
		v, err := deepCopy(o.Overrides[p], p)
		if err != nil {
			return Rendered{}, err
		}
		if err := set(out, strings.Split(p, "."), v); err != nil {
			return Rendered{}, fmt.Errorf("override %q: %w", p, err)
		}
	}
	// Overrides are stripped too: a --set may carry a credential as well as the release.
	stripped := newStripper(o.NotSecret).strip(out)
	if o.SecretValues == SecretsRefuse && len(stripped) > 0 {
		return Rendered{}, &SecretsError{Paths: stripped}
	}
	return Rendered{Values: out, Stripped: stripped}, nil
}

// set stores v at path, creating maps on the way; it refuses to replace a non-map on the way.
func set(m map[string]any, path []string, v any) error {
	for i, seg := range path[:len(path)-1] {
		next, ok := m[seg]
		if !ok || next == nil {
			n := map[string]any{}
			m[seg] = n
			m = n
			continue
		}
		nm, ok := next.(map[string]any)
		if !ok {
			return fmt.Errorf("%s is a %T, not a map", strings.Join(path[:i+1], "."), next)
		}
		m = nm
	}
	m[path[len(path)-1]] = v
	return nil
}

// deepCopy copies a JSON-like value (what YAML and JSON decoding produce) and refuses anything
// else, so the renderer never aliases its input.
func deepCopy(v any, at string) (any, error) {
	switch t := v.(type) {
	case map[string]any:
		c := make(map[string]any, len(t))
		for k, e := range t {
			ce, err := deepCopy(e, at+"."+k)
			if err != nil {
				return nil, err
			}
			c[k] = ce
		}
		return c, nil
	case []any:
		c := make([]any, len(t))
		for i, e := range t {
			ce, err := deepCopy(e, fmt.Sprintf("%s[%d]", at, i))
			if err != nil {
				return nil, err
			}
			c[i] = ce
		}
		return c, nil
	case nil, string, bool, float64, float32, int, int64, int32, uint64, uint32:
		return t, nil
	default:
		return nil, fmt.Errorf("%s: unsupported value of type %T", at, v)
	}
}

// ParseFile decodes a Helm values file (YAML or JSON). It refuses files over MaxFileSize, a
// document that is not a map, a key given twice in a map (as the agent's configuration does:
// Helm would keep the last one silently), and alias bombs (the YAML decoder bounds alias
// expansion).
func ParseFile(b []byte) (map[string]any, error) {
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("values file is %d bytes, more than the %d allowed", len(b), MaxFileSize)
	}
	var v any
	if err := yaml.UnmarshalStrict(b, &v); err != nil {
		return nil, fmt.Errorf("decoding values: %w", err)
	}
	switch m := v.(type) {
	case map[string]any:
		return m, nil
	case nil:
		return map[string]any{}, nil
	default:
		return nil, fmt.Errorf("values must be a map of keys, got a %T", v)
	}
}

// Marshal encodes values as YAML with byte-wise sorted keys: equal values give equal bytes.
func Marshal(v map[string]any) ([]byte, error) {
	b, err := canonyaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding values: %w", err)
	}
	return b, nil
}

// Get returns the value at a dotted path, and whether it is there.
func Get(m map[string]any, path string) (any, bool) {
	var cur any = m
	for _, seg := range strings.Split(path, ".") {
		cm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = cm[seg]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// Diff returns the dotted paths at which a and b differ, sorted; nil when they are equal. Numbers
// compare by value whatever their Go type (a release decoded from JSON holds float64s).
func Diff(a, b map[string]any) []string {
	var out []string
	diff("", normalize(a), normalize(b), &out)
	slices.Sort(out)
	return out
}

func diff(at string, a, b any, out *[]string) {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		for _, k := range slices.Sorted(maps.Keys(am)) {
			diff(join(at, k), am[k], bm[k], out)
		}
		for _, k := range slices.Sorted(maps.Keys(bm)) {
			if _, ok := am[k]; !ok {
				*out = append(*out, join(at, k))
			}
		}
		return
	}
	if !equal(a, b) {
		*out = append(*out, at)
	}
}

func join(at, k string) string {
	if at == "" {
		return k
	}
	return at + "." + k
}

func equal(a, b any) bool {
	ab, _ := json.Marshal(a)
	bb, _ := json.Marshal(b)
	return string(ab) == string(bb)
}

// normalize round-trips v through JSON so that numbers of any type compare equal.
func normalize(v map[string]any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out map[string]any
	if json.Unmarshal(b, &out) != nil {
		return v
	}
	return out
}

// ReplicaPaths are where the values-mode role keeps the tsb and iam replicas
// (ManagementPlane spec, components' kubeSpec).
func ReplicaPaths() []string {
	return []string{
		"spec.components.apiServer.kubeSpec.deployment.replicaCount",
		"spec.components.iamServer.kubeSpec.deployment.replicaCount",
	}
}

// SetReplicas sets the tsb and iam replica counts in v (the values-mode role).
func SetReplicas(v map[string]any, n int64) error {
	for _, p := range ReplicaPaths() {
		if err := set(v, strings.Split(p, "."), n); err != nil {
			return fmt.Errorf("setting %s: %w", p, err)
		}
	}
	return nil
}
