package values

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// What Render does with a value that holds a credential (SecretValues).
const (
	// SecretsStrip removes each such value and lists its path (the default).
	SecretsStrip = "strip"
	// SecretsRefuse refuses to render while any is there.
	SecretsRefuse = "refuse"
)

// SecretPolicies lists the allowed SecretValues.
func SecretPolicies() []string { return []string{SecretsStrip, SecretsRefuse} }

// BuiltinNotSecret lists the keys and paths whose values pass although their name looks like a
// credential's: references to a Kubernetes Secret or to a key in one, and durations. The
// managementplane chart's own are the token issuer's signing Secret and the key in it
// (tsb-mp-ha.md §2-§3); they must equal the active's, or the standby signs tokens with another
// key. operator.pullSecret is not here: TSB's docs name the key without saying whether it holds
// a Secret's name or the registry credentials (tsb-mp-ha.md §3), so it counts as a credential;
// list it in standby.notSecret where it names a Secret.
func BuiltinNotSecret() []string {
	return []string{
		"spec.tokenIssuer.jwt.signingKeysSecret",
		"spec.tokenIssuer.jwt.issuers[].signingKey",
		"imagePullSecrets",
		"secretName", "*SecretName",
		"secretRef", "*SecretRef", "secretKeyRef",
		"existingSecret", "*ExistingSecret",
		"tokenTTL", "tokenExpiration",
	}
}

// SecretsError is Render's refusal (SecretsRefuse): the paths of the values that hold
// credentials, never the values.
type SecretsError struct{ Paths []string }

func (e *SecretsError) Error() string {
	return fmt.Sprintf("the values hold credentials at %s: a standby's values go to Git, so give them to the chart "+
		"through Secrets (the `secrets:` values travel as SealedSecrets), or list a key that only looks like a "+
		"credential in standby.notSecret", strings.Join(e.Paths, ", "))
}

// ValidateNotSecret checks allow-list patterns: a key name with * wildcards ("*SecretName"),
// or a dotted path where * is any key and [] any list index ("spec.tokenIssuer.jwt.issuers[].signingKey").
func ValidateNotSecret(patterns []string) error {
	var errs []error
	for _, p := range patterns {
		for _, seg := range patternSegments(p) {
			if seg == "" {
				errs = append(errs, fmt.Errorf("%q: empty path segment", p))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// stripper walks rendered values and removes every credential in place.
type stripper struct {
	keys     []string   // key-name patterns of the allow-list
	paths    [][]string // path patterns, by segment
	stripped []string
}

func newStripper(notSecret []string) *stripper {
	s := &stripper{}
	for _, p := range append(BuiltinNotSecret(), notSecret...) {
		if strings.ContainsAny(p, ".[") {
			s.paths = append(s.paths, patternSegments(p))
		} else {
			s.keys = append(s.keys, p)
		}
	}
	return s
}

// strip removes the credentials under m and returns their paths, sorted.
func (s *stripper) strip(m map[string]any) []string {
	s.walkMap(nil, m, "")
	slices.Sort(s.stripped)
	return s.stripped
}

// walkMap judges each key of m, whose own key is parent ("" for the root, a list element or an
// allow-listed key). Under a key naming a credential, a child is one too when its name only
// says how the secret is encoded (token.value, privateKey.pem), and under a plural one
// (secrets, credentials, tokens) every scalar child is: a map of names to secrets.
func (s *stripper) walkMap(at []string, m map[string]any, parent string) {
	holder := parent != "" && namesCredential(parent)
	container := holder && strings.HasSuffix(parent, "s")
	for k, v := range m {
		p := append(slices.Clip(at), k)
		remove := func() { delete(m, k) }
		switch {
		case s.allowed(p):
			s.content(p, v, remove)
		case (namesCredential(k) || holder && encodingOnly(k) || container) && holdsSecret(v):
			s.drop(p, remove)
		default:
			s.walk(p, v, remove, k)
		}
	}
}

// walk looks into a value whose key is key.
func (s *stripper) walk(at []string, v any, remove func(), key string) {
	switch t := v.(type) {
	case map[string]any:
		s.walkMap(at, t, key)
	case []any:
		for i, e := range t {
			p := append(slices.Clip(at), "["+strconv.Itoa(i)+"]")
			if em, ok := e.(map[string]any); ok {
				s.envEntry(p, em)
			}
			s.walk(p, e, func() { t[i] = nil }, "")
		}
	default:
		s.content(at, v, remove)
	}
}

// envEntry strips the value of a Kubernetes EnvVar-shaped entry ({name: DB_PASSWORD, value: ...})
// whose name names a credential; valueFrom (a Secret reference) stays.
func (s *stripper) envEntry(at []string, e map[string]any) {
	name, ok := e["name"].(string)
	p := append(slices.Clip(at), "value")
	if !ok || !namesCredential(name) || s.keyAllowed(name) || s.allowed(p) || !holdsSecret(e["value"]) {
		return
	}
	s.drop(p, func() { delete(e, "value") })
}

// content strips a string that is a credential whatever its key: a PEM private key, or a URL
// with a password. Allow-listed keys get this check too.
func (s *stripper) content(at []string, v any, remove func()) {
	switch t := v.(type) {
	case string:
		if isPrivateKeyPEM(t) || hasURLPassword(t) {
			s.drop(at, remove)
		}
	case map[string]any, []any:
		s.walk(at, v, remove, "")
	}
}

func (s *stripper) drop(at []string, remove func()) {
	remove()
	s.stripped = append(s.stripped, pathString(at))
}

func (s *stripper) allowed(p []string) bool {
	if s.keyAllowed(p[len(p)-1]) {
		return true
	}
	for _, pat := range s.paths {
		if matchPath(pat, p) {
			return true
		}
	}
	return false
}

func (s *stripper) keyAllowed(k string) bool {
	return slices.ContainsFunc(s.keys, func(pat string) bool { return glob(pat, k) })
}

// holdsSecret reports whether a credential key's value may be a secret: a non-empty string, a
// number, or a list holding one. Booleans (automountServiceAccountToken) and maps are not: a map
// is looked into key by key, as Kubernetes names references that way (volumes[].secret.secretName,
// serviceAccountToken.audience).
func holdsSecret(v any) bool {
	switch t := v.(type) {
	case string:
		return t != ""
	case bool, nil, map[string]any:
		return false
	case []any:
		return slices.ContainsFunc(t, func(e any) bool {
			_, isMap := e.(map[string]any)
			return !isMap && holdsSecret(e)
		})
	default:
		return true // a number: a PIN, a numeric password
	}
}

// Credential words. A key names a credential when one ends it ("adminPassword", "bindpassword",
// "DB_PASSWORD", "clientSecret") or is followed only by words saying how it is encoded
// ("privateKeyPem", "tokenValue"): "passwordFile", "secretName", "tokenTTL" and "apiKeyID" do not.
var (
	credentialWords = []string{"password", "passwords", "passwd", "passphrase", "secret", "secrets", "token", "tokens",
		"credential", "credentials", "creds", "apikey", "apikeys", "privatekey", "privatekeys", "secretkey", "accesskey",
		"clientkey", "signingkey", "cakey", "sshkey", "tlskey", "sslkey", "hmackey", "encryptionkey", "masterkey"}
	// keyQualifiers make "key" a secret: "private key", "tls.key", "AWS_SECRET_ACCESS_KEY". A bare
	// "key" is not (tolerations, secretKeyRef.key).
	keyQualifiers  = []string{"private", "secret", "api", "access", "client", "signing", "ssh", "tls", "ssl", "hmac", "encryption", "master", "ca", "account"}
	encodingWords  = []string{"pem", "der", "data", "value", "b64", "base64", "material", "content", "contents", "raw", "hash", "bytes", "string", "plain", "plaintext", "encoded", "json"}
	wholeWordsOnly = []string{"pass"} // "dbPass", not "bypass"
)

// encodingOnly reports whether a key only says how a value is encoded ("value", "pem", "data").
func encodingOnly(key string) bool {
	words := splitWords(key)
	return len(words) > 0 && !slices.ContainsFunc(words, func(w string) bool { return !slices.Contains(encodingWords, w) })
}

// namesCredential reports whether a key (or an environment variable's name) names a credential.
func namesCredential(key string) bool {
	words := splitWords(key)
	for i, w := range words {
		if !credentialAt(words, i, w) {
			continue
		}
		if !slices.ContainsFunc(words[i+1:], func(w string) bool { return !slices.Contains(encodingWords, w) }) {
			return true
		}
	}
	return false
}

func credentialAt(words []string, i int, w string) bool {
	switch {
	case slices.Contains(wholeWordsOnly, w):
		return true
	case slices.ContainsFunc(credentialWords, func(c string) bool { return strings.HasSuffix(w, c) }):
		return true
	case (w == "key" || w == "keys") && i > 0 && slices.Contains(keyQualifiers, words[i-1]):
		return true
	case w == "material" && i > 0 && (words[i-1] == "key" || words[i-1] == "keying"):
		return true
	}
	return false
}

// splitWords splits a key into lower-case words at punctuation and camel-case humps:
// "DB_PASSWORD" → db password, "tokenTTL" → token ttl, "apiKeyID" → api key id, "tls.key" → tls key.
func splitWords(key string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	rs := []rune(key)
	for i, r := range rs {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush()
			continue
		}
		if unicode.IsUpper(r) && len(cur) > 0 {
			prev := rs[i-1]
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
				flush()
			}
		}
		cur = append(cur, r)
	}
	flush()
	return words
}

func isPrivateKeyPEM(s string) bool {
	i := strings.Index(s, "-----BEGIN ")
	return i >= 0 && strings.Contains(s[i:min(len(s), i+64)], "PRIVATE KEY-----")
}

func hasURLPassword(s string) bool {
	if !strings.Contains(s, "://") || !strings.Contains(s, "@") {
		return false
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return false
	}
	_, ok := u.User.Password()
	return ok
}

// patternSegments splits "a.b[].c" into a, b, [], c.
func patternSegments(p string) []string {
	var out []string
	for _, seg := range strings.Split(p, ".") {
		key, rest, hasIndex := strings.Cut(seg, "[")
		out = append(out, key)
		for hasIndex {
			var idx string
			idx, rest, _ = strings.Cut(rest, "]")
			out = append(out, "["+idx+"]")
			_, rest, hasIndex = strings.Cut(rest, "[")
		}
	}
	if len(out) > 0 && out[0] == "" && strings.HasPrefix(p, "[") {
		out = out[1:]
	}
	return out
}

func matchPath(pattern, path []string) bool {
	if len(pattern) != len(path) {
		return false
	}
	for i, seg := range pattern {
		isIndex := strings.HasPrefix(path[i], "[")
		switch {
		case seg == "*":
		case seg == "[]" || seg == "[*]":
			if !isIndex {
				return false
			}
		case isIndex:
			if seg != path[i] {
				return false
			}
		case !glob(seg, path[i]):
			return false
		}
	}
	return true
}

// glob matches s against a pattern whose only wildcard is *.
func glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, part := range parts[1 : len(parts)-1] {
		i := strings.Index(s, part)
		if i < 0 {
			return false
		}
		s = s[i+len(part):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// pathString writes a path as the reports show it: spec.components.iamServer.password,
// operator.deployment.env[0].value.
func pathString(segs []string) string {
	var b strings.Builder
	for i, s := range segs {
		if i > 0 && !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}
