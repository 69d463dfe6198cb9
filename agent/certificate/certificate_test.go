package certificate_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/git"

	"github.com/mpha-dev/mpha/agent/certificate"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// The certificate the real controller serves is committed once, unchanged ones are not, a renewed
// one is, and the committed file parses as the same certificate.
func TestPublisher(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster, the sealed-secrets controller and a Git server")
	}
	ctx := context.Background()
	west := testrig.StartCluster(t, "west")
	ctl := testrig.StartSealedSecrets(t, west)
	srv := testrig.StartGitServer(t)
	srv.CreateRepo(t, "org/fleet.git", "main", map[string]string{"README.md": "x\n"})
	auth, err := gitrepo.NewAuth(srv.URL("org/fleet.git"), srv.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	w, err := gitrepo.New(gitrepo.Options{URL: srv.URL("org/fleet.git"), Auth: auth, AllowHTTPCredentials: true,
		Author: git.Signature{Name: "mpha agent (west)", Email: "mpha@west.invalid"}})
	if err != nil {
		t.Fatal(err)
	}
	layout, _ := gitops.NewLayout("")
	p := &certificate.Publisher{Self: "west", Layout: layout, Repo: w, Source: certificate.URL(http.DefaultClient, ctl.CertURL)}

	first, err := p.PublishOnce(ctx)
	if err != nil || first == "" {
		t.Fatalf("first publication: %q, %v", first, err)
	}
	again, err := p.PublishOnce(ctx)
	if err != nil || again != "" {
		t.Errorf("unchanged certificate: commit %q, err %v; want none", again, err)
	}
	snap, err := w.Read(ctx, layout.SealingCert("west"))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := seal.ParseCert(snap.Files[layout.SealingCert("west")])
	if err != nil {
		t.Fatalf("the committed file does not parse: %v", err)
	}
	served, _ := seal.ParseCert(ctl.Cert(t))
	if committed.Fingerprint != served.Fingerprint {
		t.Error("the committed certificate is not the controller's")
	}

	// A renewed certificate (here from a file) is committed.
	pemBytes, _ := testrig.SealingKeyPair(t, "renewed")
	file := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(file, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	p.Source = certificate.File(file)
	if c, err := p.PublishOnce(ctx); err != nil || c == "" {
		t.Errorf("renewed certificate: commit %q, err %v", c, err)
	}

	// Garbage is never published.
	if err := os.WriteFile(file, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.PublishOnce(ctx); err == nil {
		t.Error("published something that is not a certificate")
	}

	// Through the service proxy: a missing Service is an error that names it.
	_, err = certificate.ServiceProxy(west.Clientset, "kube-system", "sealed-secrets-controller").Fetch(ctx)
	if err == nil || !strings.Contains(err.Error(), "kube-system/sealed-secrets-controller") {
		t.Errorf("no Service: err = %v", err)
	}
	west.Apply(t, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: sealed-secrets-controller, namespace: kube-system}\nspec: {ports: [{name: http, port: 8080}]}\n"))
	if _, err := certificate.ServiceProxy(west.Clientset, "kube-system", "sealed-secrets-controller").Fetch(ctx); err == nil {
		t.Error("a Service without endpoints answered")
	}
}

// A foreign file where the certificate goes is not overwritten.
func TestPublisherRespectsForeignFile(t *testing.T) {
	if testing.Short() {
		t.Skip("uses the rig's Git server")
	}
	srv := testrig.StartGitServer(t)
	srv.CreateRepo(t, "org/fleet.git", "main", map[string]string{"mpha/clusters/west/sealing-cert.pem": "hand-made\n"})
	auth, _ := gitrepo.NewAuth(srv.URL("org/fleet.git"), srv.Credentials())
	w, err := gitrepo.New(gitrepo.Options{URL: srv.URL("org/fleet.git"), Auth: auth, AllowHTTPCredentials: true,
		Author: git.Signature{Name: "a", Email: "a@b"}})
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := testrig.SealingKeyPair(t, "x")
	layout, _ := gitops.NewLayout("")
	p := &certificate.Publisher{Self: "west", Layout: layout, Repo: w,
		Source: certificate.SourceFunc(func(context.Context) ([]byte, error) { return pemBytes, nil })}
	_, err = p.PublishOnce(context.Background())
	var ce *gitrepo.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, gitops.ErrNotOwned) {
		t.Errorf("err = %v, want a conflict on the foreign file", err)
	}
}
