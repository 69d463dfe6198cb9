package gitrepo

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/fluxcd/pkg/git"
	"github.com/fluxcd/pkg/git/signature"
	"github.com/fluxcd/pkg/ssh/knownhosts"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	gossh "golang.org/x/crypto/ssh"
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

// transportAuth turns Flux's credentials into go-git's, as fluxcd/pkg/git/gogit does for its own
// client (which keeps that conversion unexported): the store fetches and pushes with go-git
// directly.
func transportAuth(a *git.AuthOptions) (transport.AuthMethod, error) {
	switch a.Transport {
	case git.HTTP, git.HTTPS:
		if a.Username != "" || a.Password != "" {
			return &githttp.BasicAuth{Username: a.Username, Password: a.Password}, nil
		}
		if a.BearerToken != "" {
			return &githttp.TokenAuth{Token: a.BearerToken}, nil
		}
		return nil, nil
	case git.SSH:
		pk, err := gitssh.NewPublicKeys(a.Username, a.Identity, a.Password)
		if err != nil {
			return nil, fmt.Errorf("git credentials: the SSH identity: %w", err)
		}
		auth := &sshAuth{PublicKeys: pk}
		if len(a.KnownHosts) > 0 {
			cb, algos, err := knownhosts.New(a.KnownHosts)
			if err != nil {
				return nil, fmt.Errorf("git credentials: known_hosts: %w", err)
			}
			// As Flux does: an ssh-rsa host key is checked with SHA-2 signatures first.
			if len(algos) == 1 && algos[0] == "ssh-rsa" {
				algos = []string{"rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"}
			}
			pk.HostKeyCallback, auth.hostKeyAlgos = cb, algos
		}
		return auth, nil
	}
	return nil, fmt.Errorf("git credentials: unknown transport %q", a.Transport)
}

// sshAuth offers the host key algorithms known_hosts holds keys of, so that the server presents
// one of those.
type sshAuth struct {
	*gitssh.PublicKeys
	hostKeyAlgos []string
}

func (a *sshAuth) ClientConfig() (*gossh.ClientConfig, error) {
	c, err := a.PublicKeys.ClientConfig()
	if err != nil {
		return nil, err
	}
	if len(a.hostKeyAlgos) > 0 {
		c.HostKeyAlgorithms = a.hostKeyAlgos
	}
	return c, nil
}
