// Package certificate publishes this cluster's sealed-secrets public certificate into Git at
// clusters/<self>/sealing-cert.pem (docs/design.md §3), so that the peer's agent can seal
// secrets for this cluster. It commits only when the certificate changes (sealed-secrets renews
// its key every 30 days by default).
package certificate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/trailer"
)

// Source fetches the controller's current certificate (PEM).
type Source interface {
	Fetch(ctx context.Context) ([]byte, error)
}

// SourceFunc adapts a function to Source.
type SourceFunc func(ctx context.Context) ([]byte, error)

// Fetch calls f.
func (f SourceFunc) Fetch(ctx context.Context) ([]byte, error) { return f(ctx) }

// ServiceProxy fetches /v1/cert.pem from the controller's Service through the API server's
// service proxy, as `kubeseal --fetch-cert` does.
func ServiceProxy(cs kubernetes.Interface, namespace, service string) Source {
	return SourceFunc(func(ctx context.Context) ([]byte, error) {
		svc, err := cs.CoreV1().Services(namespace).Get(ctx, service, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("sealed-secrets service %s/%s: %w", namespace, service, err)
		}
		if len(svc.Spec.Ports) == 0 {
			return nil, fmt.Errorf("sealed-secrets service %s/%s has no ports", namespace, service)
		}
		port := svc.Spec.Ports[0].Name
		if port == "" {
			port = fmt.Sprint(svc.Spec.Ports[0].Port)
		}
		b, err := cs.CoreV1().Services(namespace).ProxyGet("http", service, port, "/v1/cert.pem", nil).DoRaw(ctx)
		if err != nil {
			return nil, fmt.Errorf("fetching the certificate through service %s/%s: %w", namespace, service, err)
		}
		return b, nil
	})
}

// File reads the certificate from a file (one mounted from a ConfigMap, say).
func File(path string) Source {
	return SourceFunc(func(context.Context) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading sealing certificate: %w", err)
		}
		return b, nil
	})
}

// URL fetches the certificate over HTTP(S), for a controller reachable directly.
func URL(client *http.Client, url string) Source {
	return SourceFunc(func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, fmt.Errorf("sealing certificate URL: %w", err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("fetching sealing certificate: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("fetching sealing certificate: %s", resp.Status)
		}
		return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	})
}

// writer is what the publisher needs of the Git writer.
type writer interface {
	Apply(ctx context.Context, ch gitops.Change) (gitrepo.Result, error)
}

// Publisher keeps clusters/<self>/sealing-cert.pem equal to the controller's certificate.
type Publisher struct {
	Self     string
	Layout   gitops.Layout
	Source   Source
	Repo     writer
	Interval time.Duration // between checks in Run (default 5m)
	Logger   *slog.Logger
}

// PublishOnce fetches the certificate and commits it if it differs from Git's. It returns the
// commit, or "" when Git already had it.
func (p *Publisher) PublishOnce(ctx context.Context) (string, error) {
	pem, err := p.Source.Fetch(ctx)
	if err != nil {
		return "", err
	}
	cert, err := seal.ParseCert(pem) // refuse to publish something the peer could not seal with
	if err != nil {
		return "", err
	}
	res, err := p.Repo.Apply(ctx, gitops.Change{
		Files: map[string][]byte{p.Layout.SealingCert(p.Self): append([]byte(gitops.Header), pem...)},
		Message: fmt.Sprintf("Publish %s's sealing certificate\n\nSHA-256 fingerprint %s. The peer re-seals its exported secrets for it.",
			p.Self, cert.Fingerprint),
		Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "cert"}, {Key: trailer.Cluster, Value: p.Self}},
		Check:    gitops.CheckOwned,
	})
	if err != nil {
		return "", fmt.Errorf("publishing the sealing certificate: %w", err)
	}
	if res.NoChange {
		return "", nil
	}
	p.logger().Info("sealing certificate published", "cluster", p.Self, "commit", res.Commit, "fingerprint", cert.Fingerprint)
	return res.Commit, nil
}

// Run publishes at start and every Interval until ctx ends; failures are logged and retried.
func (p *Publisher) Run(ctx context.Context) error {
	if p.Source == nil || p.Repo == nil {
		return errors.New("certificate publisher: a source and a repository are required")
	}
	interval := p.Interval
	if interval <= 0 {
		interval = 5 * time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := p.PublishOnce(ctx); err != nil && ctx.Err() == nil {
			p.logger().Warn("sealing certificate not published; retrying", "cluster", p.Self, "error", err, "in", interval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (p *Publisher) logger() *slog.Logger {
	if p.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return p.Logger
}
