package testrig

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sscrypto "github.com/bitnami-labs/sealed-secrets/pkg/crypto"
	certutil "k8s.io/client-go/util/cert"
)

// SealedSecretsNamespace is where the rig's controller keeps its keys.
const SealedSecretsNamespace = "kube-system"

// SealedSecrets is the sealed-secrets controller, run out of cluster against one rig cluster. Its
// certificate is served at CertURL (the same /v1/cert.pem kubeseal fetches through a Service).
type SealedSecrets struct {
	// CertURL serves the controller's current public certificate (PEM).
	CertURL string

	proc *Process
}

// StartSealedSecrets installs the SealedSecret CRD into c and starts the controller; it stops
// when t ends.
//
// The controller supports only in-cluster configuration (a fixed token path under /run/secrets),
// so it runs in a private mount namespace with a tmpfs over /run holding the service-account
// files: this needs root (as here and in CI) and touches nothing on the host.
func StartSealedSecrets(t testing.TB, c *Cluster) *SealedSecrets {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the sealed-secrets controller needs root to mount its in-cluster credentials (unshare -m)")
	}
	bin := Bin(t, "sealed-secrets-controller")
	c.ApplyFiles(t, binFile(t, "crds/bitnami.com_sealedsecrets.yaml"))
	dir := t.TempDir()
	sa := filepath.Join(dir, "serviceaccount")
	if err := os.MkdirAll(sa, 0o700); err != nil {
		t.Fatal(err)
	}
	for f, b := range map[string][]byte{"token": []byte(c.Token), "namespace": []byte(SealedSecretsNamespace), "ca.crt": c.CA} {
		if err := os.WriteFile(filepath.Join(sa, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ports := freePorts(t, 2)
	listen := fmt.Sprintf("127.0.0.1:%d", ports[0])
	const script = `mount -t tmpfs tmpfs /run && mkdir -p /run/secrets/kubernetes.io/serviceaccount &&
cp "$MPHA_SA_DIR"/* /run/secrets/kubernetes.io/serviceaccount/ && exec "$@"`
	s := &SealedSecrets{CertURL: "http://" + listen + "/v1/cert.pem"}
	s.proc = startProcess(t, procSpec{
		name: "sealed-secrets-" + c.Name,
		path: systemBin(t, "unshare"),
		args: []string{"-m", "--propagation", "private", "sh", "-c", script, "sh", bin,
			"--listen-addr", listen, "--listen-metrics-addr", fmt.Sprintf("127.0.0.1:%d", ports[1]),
			"--key-size", "2048", // the default 4096-bit key takes seconds to make
		},
		env: []string{
			"MPHA_SA_DIR=" + sa, "POD_NAMESPACE=" + SealedSecretsNamespace,
			"KUBERNETES_SERVICE_HOST=" + c.Host, fmt.Sprintf("KUBERNETES_SERVICE_PORT=%d", c.Port),
		},
		logDir: logDir(t, dir),
	})
	waitFor(t, "sealed-secrets "+s.CertURL, 60*time.Second, s.proc, func(ctx context.Context) error { return HTTPOK(ctx, s.CertURL) })
	return s
}

// Cert returns the controller's public certificate (PEM).
func (s *SealedSecrets) Cert(t testing.TB) []byte {
	t.Helper()
	resp, err := http.Get(s.CertURL)
	if err != nil {
		t.Fatalf("fetching sealing certificate: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("fetching sealing certificate: %s %v", resp.Status, err)
	}
	return b
}

// RenewKey makes the controller renew its sealing key as its periodic renewal does: it restarts
// it with --key-cutoff-time now, so it makes a new key at start and serves its certificate (it
// keeps the older keys to unseal what was sealed for them). It returns once the new certificate
// is served.
func (s *SealedSecrets) RenewKey(t testing.TB) {
	t.Helper()
	old := s.Cert(t)
	if err := s.proc.Stop(); err != nil {
		t.Fatalf("stopping sealed-secrets: %v", err)
	}
	// The cutoff is compared with the key's creation time, to the second.
	time.Sleep(1100 * time.Millisecond)
	s.proc.spec.args = append(slices.DeleteFunc(s.proc.spec.args, func(a string) bool { return strings.HasPrefix(a, "--key-cutoff-time=") }),
		"--key-cutoff-time="+time.Now().Format(time.RFC1123Z))
	if err := s.proc.Restart(); err != nil {
		t.Fatalf("restarting sealed-secrets: %v", err)
	}
	waitFor(t, "sealed-secrets to serve a renewed certificate", 60*time.Second, s.proc, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.CertURL, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s %v", resp.Status, err)
		}
		if bytes.Equal(b, old) {
			return errors.New("still the old certificate")
		}
		return nil
	})
}

// Process is the controller's process (the unshare wrapper execs into it), for fault tests.
func (s *SealedSecrets) Process() *Process { return s.proc }

// SealingKeyPair makes a sealed-secrets key pair the way the controller does (2048 bits, for
// speed): the certificate in PEM, as /v1/cert.pem serves it, and the private key that unseals.
func SealingKeyPair(t testing.TB, cn string) ([]byte, *rsa.PrivateKey) {
	t.Helper()
	return SealingKeyPairAt(t, cn, time.Now(), time.Hour)
}

// SealingKeyPairAt is SealingKeyPair with a certificate valid from notBefore for validFor: one
// that has expired, or is not valid yet.
func SealingKeyPairAt(t testing.TB, cn string, notBefore time.Time, validFor time.Duration) ([]byte, *rsa.PrivateKey) {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := sscrypto.SignKeyWithNotBefore(rand.Reader, priv, notBefore, validFor, cn)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := certutil.EncodeCertificates(cert)
	if err != nil {
		t.Fatal(err)
	}
	return pem, priv
}
