package gitrepo

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/fluxcd/pkg/git"
	"github.com/fluxcd/pkg/git/signature"
)

// NewAuth builds credentials for rawURL from a Secret's data, with the keys Flux uses for a
// GitRepository: username and password (a token goes in password), bearerToken, identity (an SSH
// private key) with known_hosts, and ca.crt. nil data means anonymous.
func NewAuth(rawURL string, data map[string][]byte) (*git.AuthOptions, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		// url.Parse's error quotes the URL; keep it out of the message.
		return nil, errors.New("git URL: not a URL with a host")
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			return nil, errors.New("git URL: holds a password: put credentials in the Secret, not the URL")
		}
	}
	a, err := git.NewAuthOptions(*u, data)
	if err != nil {
		return nil, fmt.Errorf("git credentials: %w", err)
	}
	return a, nil
}

// ErrCredentialsOverHTTP refuses credentials that would travel unencrypted. Every mpha command
// that reaches Git (the agent's and the CLI's) allows them with the same flag, so the message
// names it.
var ErrCredentialsOverHTTP = errors.New("the URL is plain http: credentials would travel unencrypted; use https or --insecure-http-credentials")

// credentialsOverHTTP reports a user name, password or token that would be sent over plain http.
func credentialsOverHTTP(opts Options) bool {
	u, err := url.Parse(opts.URL)
	if err != nil || u.Scheme != "http" {
		return false
	}
	a := opts.Auth
	return u.User != nil || a.Username != "" || a.Password != "" || a.BearerToken != ""
}

// NewSigner returns a commit signer for an SSH private key (PEM, "-----BEGIN OPENSSH PRIVATE
// KEY-----") or an armored OpenPGP private key, optionally protected by passphrase.
func NewSigner(key, passphrase []byte) (signature.Signer, error) {
	if bytes.Contains(key, []byte("BEGIN PGP PRIVATE KEY BLOCK")) {
		ring, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(key))
		if err != nil || len(ring) == 0 {
			return nil, fmt.Errorf("signing key: reading OpenPGP key: %v", err)
		}
		e := ring[0]
		if e.PrivateKey == nil {
			return nil, errors.New("signing key: the OpenPGP key has no private part")
		}
		if e.PrivateKey.Encrypted {
			if err := e.PrivateKey.Decrypt(passphrase); err != nil {
				return nil, fmt.Errorf("signing key: decrypting OpenPGP key: %w", err)
			}
		}
		s, err := signature.NewOpenPGPSigner(e)
		if err != nil {
			return nil, fmt.Errorf("signing key: %w", err)
		}
		return s, nil
	}
	s, err := signature.NewSSHSigner(key, passphrase)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	return s, nil
}
