package runtime

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/client-go/kubernetes"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
)

// NewGitWriter is the Git writer cfg describes: it commits as the cluster's agent, with the
// credentials and signing key of the Secrets that git.authSecret and git.signingKeySecret name in
// namespace. o carries what is not configuration (AllowHTTPCredentials, OnRetry, Logger). The
// agent's loops and `mpha secrets export` both write with it, so a commit is signed whichever of
// them makes it.
func NewGitWriter(ctx context.Context, cs kubernetes.Interface, namespace string, cfg *agent.Config, o gitrepo.Options) (*gitrepo.Writer, error) {
	var s agent.GitSecrets
	var err error
	if cfg.Git.AuthSecret != "" {
		if s.Auth, err = secretData(ctx, cs, namespace, cfg.Git.AuthSecret); err != nil {
			return nil, fmt.Errorf("git.authSecret: %w", err)
		}
	}
	if cfg.Git.SigningKeySecret != "" {
		if s.SigningKey, err = secretData(ctx, cs, namespace, cfg.Git.SigningKeySecret); err != nil {
			return nil, fmt.Errorf("git.signingKeySecret: %w", err)
		}
	}
	o.Author = agent.GitAuthor(cfg.Cluster)
	return cfg.Git.NewWriter(s, o)
}

// gitWriter is the agent's Git writer, counting its retries (mpha_git_push_retries_total).
func gitWriter(ctx context.Context, o Options, cs kubernetes.Interface, m *metrics) (*gitrepo.Writer, error) {
	return NewGitWriter(ctx, cs, o.Namespace, o.Config, gitrepo.Options{AllowHTTPCredentials: o.InsecureHTTPCredentials, Logger: o.Logger, CacheDir: o.GitCacheDir,
		OnRetry: func(branch string) { m.retries.WithLabelValues(branchKind(branch, o.Config.Git.Branch)).Inc() }})
}

// branchKind keeps the retries' label set small: a failover's branch name is per request.
func branchKind(branch, main string) string {
	switch {
	case branch == main:
		return "main"
	case strings.HasPrefix(branch, "mpha/drill/"):
		return "drill"
	}
	return "failover"
}
