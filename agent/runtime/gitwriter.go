package runtime

import (
	"context"
	"fmt"
	"strings"

	"github.com/fluxcd/pkg/git"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mpha-dev/mpha/gitops/gitrepo"
)

// gitWriter is the Git writer with the credentials and the optional commit-signing key.
func gitWriter(ctx context.Context, o Options, cs kubernetes.Interface, m *metrics) (*gitrepo.Writer, error) {
	cfg := o.Config
	var data map[string][]byte
	if cfg.Git.AuthSecret != "" {
		s, err := cs.CoreV1().Secrets(o.Namespace).Get(ctx, cfg.Git.AuthSecret, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading the Git credentials secret %s/%s: %w", o.Namespace, cfg.Git.AuthSecret, err)
		}
		data = s.Data
	}
	auth, err := gitrepo.NewAuth(cfg.Git.URL, data)
	if err != nil {
		return nil, err
	}
	opts := gitrepo.Options{URL: cfg.Git.URL, Auth: auth, Branch: cfg.Git.Branch, AllowHTTPCredentials: o.InsecureHTTPCredentials,
		Author: git.Signature{Name: "mpha agent (" + cfg.Cluster + ")", Email: "mpha-" + cfg.Cluster + "@mpha.invalid"}, Logger: o.Logger,
		OnRetry: func(branch string) { m.retries.WithLabelValues(branchKind(branch, cfg.Git.Branch)).Inc() }}
	if cfg.Git.SigningKeySecret != "" {
		s, err := cs.CoreV1().Secrets(o.Namespace).Get(ctx, cfg.Git.SigningKeySecret, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading the commit signing key secret %s/%s: %w", o.Namespace, cfg.Git.SigningKeySecret, err)
		}
		if opts.Signer, err = gitrepo.NewSigner(s.Data["key"], s.Data["passphrase"]); err != nil {
			return nil, fmt.Errorf("commit signing key %s/%s: %w", o.Namespace, cfg.Git.SigningKeySecret, err)
		}
	}
	return gitrepo.New(opts)
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
