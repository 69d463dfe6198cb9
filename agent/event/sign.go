package event

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/cloudevents/sdk-go/v2/types"
)

// The CloudEvents extension attributes of a signed event.
const (
	// SignatureExtension holds the ed25519 signature of the event's signing string (Sign), in
	// standard base64.
	SignatureExtension = "mphasig"
	// KeyExtension names the signing key by its KeyID.
	KeyExtension = "mphakey"
)

// trustedKeyPrefix starts a trusted key in configuration (agent config nats.trustedKeys).
const trustedKeyPrefix = "ed25519:"

// TrustedKey is a public key that may sign failover requests.
type TrustedKey struct {
	// ID is KeyID(Key), what a signed event's mphakey names.
	ID  string
	Key ed25519.PublicKey
}

// ParseSigningKey reads a PKCS#8 PEM ed25519 private key, as `mpha failover keygen` and
// `openssl genpkey -algorithm ed25519` write it. Its errors never quote the key.
func ParseSigningKey(b []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New(`want a PEM "PRIVATE KEY" block (PKCS#8)`)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("not a PKCS#8 private key")
	}
	ed, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("a %T, want ed25519", k)
	}
	return ed, nil
}

// ParseTrustedKey parses a key as configuration writes it: "ed25519:" and the standard base64 of
// the 32-byte public key (padding optional).
func ParseTrustedKey(s string) (TrustedKey, error) {
	b64, ok := strings.CutPrefix(strings.TrimSpace(s), trustedKeyPrefix)
	if !ok {
		return TrustedKey{}, fmt.Errorf("trusted key %s: want %s<base64 public key>", quote(s), trustedKeyPrefix)
	}
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(b64, "="))
	if err != nil {
		return TrustedKey{}, fmt.Errorf("trusted key %s: %w", quote(s), err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return TrustedKey{}, fmt.Errorf("trusted key %s: %d bytes, an ed25519 public key has %d", quote(s), len(raw), ed25519.PublicKeySize)
	}
	pub := ed25519.PublicKey(raw)
	return TrustedKey{ID: KeyID(pub), Key: pub}, nil
}

// ParseTrustedKeys parses every key of a configuration list, naming each bad one by index.
func ParseTrustedKeys(list []string) ([]TrustedKey, error) {
	keys := make([]TrustedKey, 0, len(list))
	var errs []error
	for i, s := range list {
		k, err := ParseTrustedKey(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("[%d]: %w", i, err))
			continue
		}
		keys = append(keys, k)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return keys, nil
}

// FormatTrustedKey writes pub as configuration lists it (the inverse of ParseTrustedKey).
func FormatTrustedKey(pub ed25519.PublicKey) string {
	return trustedKeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// KeyID names a public key in a signed event: the first 16 hex digits of the SHA-256 of its 32
// bytes. It only selects among the few configured keys; the signature is what is trusted.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sign signs e with priv: it sets mphakey to the key's id and mphasig to the base64 ed25519
// signature of e's signing string (signingString), replacing any earlier signature. Sign the event
// when it is complete: a change to a signed attribute or to the data breaks the signature.
func Sign(e *Event, priv ed25519.PrivateKey) error {
	if e == nil || e.Context == nil {
		return errors.New("sign event: the event has no context (use a New* constructor)")
	}
	if len(priv) != ed25519.PrivateKeySize {
		return fmt.Errorf("sign event %s: private key is %d bytes, want %d", e.ID(), len(priv), ed25519.PrivateKeySize)
	}
	pub, ok := priv.Public().(ed25519.PublicKey)
	if !ok {
		return fmt.Errorf("sign event %s: not an ed25519 key", e.ID())
	}
	kid := KeyID(pub)
	e.SetExtension(SignatureExtension, nil)
	e.SetExtension(KeyExtension, kid)
	if err := e.Validate(); err != nil {
		return fmt.Errorf("sign event %s: %w", e.ID(), err)
	}
	e.SetExtension(SignatureExtension, base64.StdEncoding.EncodeToString(ed25519.Sign(priv, signingString(*e, kid))))
	return nil
}

// signingString is what a signature covers: a fixed first line, then one line per field in this
// order, each "name=<decimal byte length>:<value>\n", so no value can pose as another:
//
//	mpha-signature-v1
//	specversion=3:1.0
//	id=36:1b4e28ba-2fa1-11d2-883f-0016d3cca427
//	source=16:mpha://cli/alice
//	type=30:dev.mpha.failover.requested.v1
//	subject=0:
//	time=20:2026-08-01T10:00:00Z
//	datacontenttype=16:application/json
//	dataschema=0:
//	mphakey=16:3f0c5e2b9a7d4c11
//	data=65:{"target":"west","mode":"planned","reason":"r","requestedBy":"a"}
//
// Values are the attributes as the CloudEvents SDK reads them (time in UTC, RFC 3339 with
// nanoseconds and no trailing zeros; absent ones empty) and the data's exact bytes as sent (for
// data_base64, the decoded bytes). It signs what the agent acts on, so no re-encoding of JSON is
// involved. Other extensions are not signed: mpha reads none.
func signingString(e Event, kid string) []byte {
	var b bytes.Buffer
	b.WriteString("mpha-signature-v1\n")
	field := func(name string, v []byte) {
		b.WriteString(name + "=" + strconv.Itoa(len(v)) + ":")
		b.Write(v)
		b.WriteByte('\n')
	}
	var t string
	if !e.Time().IsZero() {
		t = types.FormatTime(e.Time())
	}
	field("specversion", []byte(e.SpecVersion()))
	field("id", []byte(e.ID()))
	field("source", []byte(e.Source()))
	field("type", []byte(e.Type()))
	field("subject", []byte(e.Subject()))
	field("time", []byte(t))
	field("datacontenttype", []byte(e.DataContentType()))
	field("dataschema", []byte(e.DataSchema()))
	field("mphakey", []byte(kid))
	field("data", e.Data())
	return b.Bytes()
}

// verify checks e's signature against v and returns the signing key's id ("" when unsigned).
func verify(e Event, v Validation) (string, *RejectError) {
	ext := e.Extensions()
	rawSig, signed := ext[SignatureExtension]
	if !signed {
		if v.RequireSigned {
			return "", reject(ReasonUnsigned, "this pair requires signed requests: extension %s is missing", SignatureExtension)
		}
		return "", nil
	}
	if !v.RequireSigned && len(v.TrustedKeys) == 0 {
		return "", nil // no key to check it with, and none needed
	}
	text, _ := rawSig.(string)
	sig, err := base64.StdEncoding.DecodeString(text)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return "", reject(ReasonBadSignature, "%s must be the standard base64 of a %d-byte ed25519 signature", SignatureExtension, ed25519.SignatureSize)
	}
	kid, _ := ext[KeyExtension].(string)
	if kid == "" {
		return "", reject(ReasonBadSignature, "%s is missing or not a string: it names the signing key", KeyExtension)
	}
	for _, k := range v.TrustedKeys {
		if k.ID != kid {
			continue
		}
		if !ed25519.Verify(k.Key, signingString(e, kid), sig) {
			return "", reject(ReasonBadSignature, "the signature by key %s does not match the event", kid)
		}
		return kid, nil
	}
	return "", reject(ReasonBadSignature, "key %s is not a trusted key", quote(kid))
}
