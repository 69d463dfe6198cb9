package main

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ssv1alpha1 "github.com/bitnami-labs/sealed-secrets/pkg/apis/sealedsecrets/v1alpha1"
	sscrypto "github.com/bitnami-labs/sealed-secrets/pkg/crypto"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// `mpha secrets seal` writes a SealedSecret that the certificate's private key unseals to the
// input, with no plaintext in the output.
func TestSecretsSeal(t *testing.T) {
	certPEM, priv := testrig.SealingKeyPair(t, "west")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "hmac")
	const plain = "c2VjcmV0LXNpZ25pbmcta2V5LXZhbHVl" // base64 in the manifest, as kubectl writes it
	manifest := "apiVersion: v1\nkind: Secret\nmetadata:\n  name: iam-signing-key\n  namespace: tsb\ntype: Opaque\ndata:\n  private.key: " + plain + "\n"
	for f, b := range map[string][]byte{certFile: certPEM, keyFile: []byte(strings.Repeat("k", 32) + "\n")} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	root := newRootCommand(&out, &bytes.Buffer{})
	root.SetIn(strings.NewReader(manifest))
	root.SetArgs([]string{"secrets", "seal", "--cert", certFile, "--hmac-key-file", keyFile})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), plain) || strings.Contains(out.String(), "secret-signing-key-value") {
		t.Fatal("the output holds the plaintext")
	}
	var ss ssv1alpha1.SealedSecret
	if err := yaml.Unmarshal(out.Bytes(), &ss); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ss.Annotations[seal.DigestAnnotation], "hmac-sha256:") {
		t.Errorf("no digest annotation: %v", ss.Annotations)
	}
	fp, _ := sscrypto.PublicKeyFingerprint(&priv.PublicKey)
	s, err := ss.Unseal(serializer.NewCodecFactory(runtime.NewScheme()), map[string]*rsa.PrivateKey{fp: priv})
	if err != nil {
		t.Fatalf("unsealing the output: %v", err)
	}
	if got := string(s.Data["private.key"]); got != "secret-signing-key-value" {
		t.Errorf("unsealed %q", got)
	}

	// Not a Secret, or no --cert: a clear error.
	root = newRootCommand(&bytes.Buffer{}, &bytes.Buffer{})
	root.SetIn(strings.NewReader("kind: ConfigMap\nmetadata: {name: x, namespace: y}\n"))
	root.SetArgs([]string{"secrets", "seal", "--cert", certFile})
	if err := root.Execute(); err == nil || !strings.Contains(err.Error(), `kind "ConfigMap"`) {
		t.Errorf("a ConfigMap: err = %v", err)
	}
	if _, _, err := run(t, "secrets", "seal"); err == nil || !strings.Contains(err.Error(), "--cert is required") {
		t.Errorf("no --cert: err = %v", err)
	}
}

// `mpha secrets seal` warns on stderr of a certificate out of its dates and still seals; it
// refuses a Secret whose SealedSecret the API server would not take, saying the sizes, and
// writes nothing.
func TestSecretsSealChecks(t *testing.T) {
	dir := t.TempDir()
	certFile := func(name string, notBefore time.Time, validFor time.Duration) string {
		pem, _ := testrig.SealingKeyPairAt(t, "west", notBefore, validFor)
		f := filepath.Join(dir, name+".pem")
		if err := os.WriteFile(f, pem, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	secretFile := func(name string, size int) string {
		value := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("x"), size))
		f := filepath.Join(dir, name+".yaml")
		manifest := "apiVersion: v1\nkind: Secret\nmetadata: {name: " + name + ", namespace: tsb}\ndata:\n  blob: " + value + "\n"
		if err := os.WriteFile(f, []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	now := time.Now()
	valid := certFile("valid", now.Add(-time.Hour), 365*24*time.Hour)
	small := secretFile("small", 64)
	tests := []struct {
		name            string
		cert, secret    string
		wantErr, stderr string
	}{
		{"valid", valid, small, "", ""},
		{"expired", certFile("expired", now.AddDate(-2, 0, 0), 365*24*time.Hour), small, "",
			"warning: --cert " + filepath.Join(dir, "expired.pem") + ": the sealing certificate has expired: it was valid until"},
		{"not valid yet", certFile("future", now.Add(48*time.Hour), 365*24*time.Hour), small, "",
			"warning: --cert " + filepath.Join(dir, "future.pem") + ": the sealing certificate is not valid yet: it is valid from"},
		{"10 MB", valid, secretFile("huge", 10_000_000), "sealing tsb/huge: its data is 10000000 bytes, which sealed take 13333704 bytes, over the 1048576 bytes (1 MiB) the API server takes for an object", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := run(t, "secrets", "seal", "--cert", tc.cert, "-f", tc.secret)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			case tc.wantErr != "" && out != "":
				t.Errorf("refused, yet wrote %d bytes", len(out))
			case tc.wantErr == "" && !strings.Contains(out, "kind: SealedSecret"):
				t.Errorf("no SealedSecret written:\n%s", out)
			}
			if tc.stderr == "" && errOut != "" || !strings.Contains(errOut, tc.stderr) {
				t.Errorf("stderr = %q, want %q", errOut, tc.stderr)
			}
		})
	}
}
