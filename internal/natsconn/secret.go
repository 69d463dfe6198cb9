package natsconn

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// The keys of the agent's NATS credentials Secret (nats.credsSecret, docs/design.md §10). ca.crt,
// tls.crt and tls.key are those of a kubernetes.io/tls Secret; username that of a basic-auth one.
const (
	KeyCreds    = "creds"
	KeyNKey     = "nkey"
	KeyUser     = "user"
	KeyUsername = "username"
	KeyPassword = "password"
	KeyToken    = "token"
	KeyCA       = "ca.crt"
	KeyCert     = "tls.crt"
	KeyKey      = "tls.key"
)

// FromSecret reads a credentials Secret's data into Options (all but URL and Name, which the
// caller sets), keeping every secret in memory. An empty value counts as absent; user, password
// and token lose trailing line breaks (a Secret made with echo has one). A key it does not know is
// an error, named, so that a misspelt key does not silently mean "anonymous"; so are two ways to
// authenticate, or user and username disagreeing.
func FromSecret(data map[string][]byte) (Options, error) {
	known := []string{KeyCreds, KeyNKey, KeyUser, KeyUsername, KeyPassword, KeyToken, KeyCA, KeyCert, KeyKey}
	var unknown []string
	for _, k := range slices.Sorted(maps.Keys(data)) {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		return Options{}, fmt.Errorf("NATS credentials secret: unknown keys %s (known: %s)",
			strings.Join(unknown, ", "), strings.Join(known, ", "))
	}
	line := func(k string) string { return strings.TrimRight(string(data[k]), "\r\n") }
	o := Options{
		Creds: nonEmpty(data[KeyCreds]), NKeySeed: nonEmpty(data[KeyNKey]),
		User: line(KeyUser), Password: line(KeyPassword), Token: line(KeyToken),
		CA: nonEmpty(data[KeyCA]), Cert: nonEmpty(data[KeyCert]), Key: nonEmpty(data[KeyKey]),
	}
	if u := line(KeyUsername); u != "" {
		if o.User != "" && o.User != u {
			return Options{}, errors.New("NATS credentials secret: user and username differ")
		}
		o.User = u
	}
	if err := o.validateAuth(); err != nil {
		return Options{}, fmt.Errorf("NATS credentials secret: %w", err)
	}
	return o, nil
}

func nonEmpty(b []byte) []byte {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil
	}
	return b
}
