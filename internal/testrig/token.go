package testrig

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/keyutil"
)

// TokenIssuer is the iss claim of the tokens the rig issues. The stand-in does not check it: both
// MPs of a pair have the same tokenIssuer settings.
const TokenIssuer = "mpha-rig-iam"

// DefaultTokenTTL is how long IssueToken's tokens stay valid: longer than any drill.
const DefaultTokenTTL = 24 * time.Hour

// tokenLeeway tolerates clock skew on exp and nbf, as verifiers do.
const tokenLeeway = 30 * time.Second

// acceptedAlgorithms are the JWS algorithms the stand-in verifies; which one applies is decided by
// the key's type, never by the token alone (go-jose refuses an algorithm that does not fit the key).
func acceptedAlgorithms() []jose.SignatureAlgorithm {
	return []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.ES384, jose.ES512}
}

// The reasons a token is refused (401).
var (
	ErrNoToken      = errors.New("no bearer token")
	ErrNoSigningKey = errors.New("no signing key: iam-signing-key is absent or unreadable")
	ErrUnknownKid   = errors.New("unknown kid")
	ErrBadSignature = errors.New("signature does not verify")
	ErrTokenClaims  = errors.New("token expired or not yet valid")
	ErrMalformed    = errors.New("malformed token")
)

// verifyingKey is what the stand-in keeps of iam-signing-key: its kid and public key.
type verifyingKey struct {
	kid string
	pub crypto.PublicKey
}

// parseVerifyingKey reads iam-signing-key's data: the kid and the public part of the private key.
func parseVerifyingKey(data map[string][]byte) (*verifyingKey, error) {
	kid := strings.TrimSpace(string(data[KidData]))
	if kid == "" {
		return nil, fmt.Errorf("data key %s is empty", KidData)
	}
	priv, err := parseSigningKey(data[SigningKeyData])
	if err != nil {
		return nil, err
	}
	return &verifyingKey{kid: kid, pub: priv.Public()}, nil
}

// parseSigningKey reads a PEM private key (PKCS#8, PKCS#1 RSA or SEC 1 EC).
func parseSigningKey(pemBytes []byte) (crypto.Signer, error) {
	k, err := keyutil.ParsePrivateKeyPEM(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("data key %s: %w", SigningKeyData, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("data key %s: a %T cannot sign", SigningKeyData, k)
	}
	return s, nil
}

// signingAlgorithm is the JWS algorithm for key's type.
func signingAlgorithm(key crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return jose.RS256, nil
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		case elliptic.P521():
			return jose.ES512, nil
		}
	}
	return "", fmt.Errorf("no JWS algorithm for a %T", key)
}

// SignToken issues a JWT the way TSB's IAM would: signed with the PEM private key, kid in the
// header, subject sub, valid for ttl from now (a negative ttl makes an expired token).
func SignToken(privatePEM []byte, kid, sub string, ttl time.Duration) (string, error) {
	key, err := parseSigningKey(privatePEM)
	if err != nil {
		return "", fmt.Errorf("signing a token: %w", err)
	}
	alg, err := signingAlgorithm(key)
	if err != nil {
		return "", fmt.Errorf("signing a token: %w", err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("signing a token: %w", err)
	}
	now := time.Now()
	claims := jwt.Claims{Issuer: TokenIssuer, Subject: sub, IssuedAt: jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(ttl))}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("signing a token: %w", err)
	}
	return tok, nil
}

// IssueToken issues a token for sub with the key of m's cluster, as read from its
// iam-signing-key Secret now (not the stand-in's cache), valid for DefaultTokenTTL.
func (m *MP) IssueToken(t testing.TB, sub string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := m.cluster.Clientset.CoreV1().Secrets(m.namespace).Get(ctx, MPSigningKeySecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("mp %s: reading %s: %v", m.Name, MPSigningKeySecret, err)
	}
	tok, err := SignToken(s.Data[SigningKeyData], strings.TrimSpace(string(s.Data[KidData])), sub, DefaultTokenTTL)
	if err != nil {
		t.Fatalf("mp %s: %v", m.Name, err)
	}
	return tok
}

// verifyToken checks raw (a compact JWS) against key: the kid first, then the signature, then
// exp and nbf. It returns the subject and the kid.
func verifyToken(raw string, key *verifyingKey, now time.Time) (sub, kid string, err error) {
	tok, err := jwt.ParseSigned(raw, acceptedAlgorithms())
	if err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	kid = tok.Headers[0].KeyID
	if key == nil {
		return "", kid, ErrNoSigningKey
	}
	if kid != key.kid {
		return "", kid, fmt.Errorf("%w %q (iam-signing-key's is %q)", ErrUnknownKid, kid, key.kid)
	}
	var c jwt.Claims
	if err := tok.Claims(key.pub, &c); err != nil {
		return "", kid, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Time: now}, tokenLeeway); err != nil {
		return "", kid, fmt.Errorf("%w: %v", ErrTokenClaims, err)
	}
	return c.Subject, kid, nil
}
