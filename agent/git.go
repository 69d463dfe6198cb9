package agent

import (
	"fmt"

	"github.com/fluxcd/pkg/git"

	"github.com/mpha-dev/mpha/gitops/gitrepo"
)

// GitSecrets hold what the Secrets named by git.authSecret and git.signingKeySecret contain (or,
// for the CLI's --repo flags, the environment's credentials).
type GitSecrets struct {
	// Auth holds the credentials with the keys of a Flux GitRepository's Secret (username and
	// password, bearerToken, identity and known_hosts, ca.crt); nil means anonymous.
	Auth map[string][]byte
	// SigningKey holds "key" (an SSH or armored OpenPGP private key) and an optional
	// "passphrase"; nil means the commits go unsigned.
	SigningKey map[string][]byte
}

// GitAuthor is who commits for the agent of cluster, in the agent and in `mpha secrets export`
// (one pass of the agent's exporter).
func GitAuthor(cluster string) git.Signature {
	return git.Signature{Name: "mpha agent (" + cluster + ")", Email: "mpha-" + cluster + "@mpha.invalid"}
}

// NewWriter is the Git writer of this repository with the credentials and signing key of s: the
// one way the agent, `mpha secrets export` and the CLI's --repo flags build theirs, so that they
// authenticate, sign and guard credentials alike. o carries the rest (Author,
// AllowHTTPCredentials, Backoff, OnRetry, Logger); its URL, Branch, Auth and Signer are set here.
func (g Git) NewWriter(s GitSecrets, o gitrepo.Options) (*gitrepo.Writer, error) {
	auth, err := gitrepo.NewAuth(g.URL, s.Auth)
	if err != nil {
		return nil, err
	}
	o.URL, o.Branch, o.Auth, o.Signer = g.URL, g.Branch, auth, nil
	if s.SigningKey != nil {
		if o.Signer, err = gitrepo.NewSigner(s.SigningKey["key"], s.SigningKey["passphrase"]); err != nil {
			return nil, fmt.Errorf("git.signingKeySecret %s: %w", g.SigningKeySecret, err)
		}
	}
	return gitrepo.New(o)
}
