package main

import (
	"bytes"
	"context"
	"crypto/rsa"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
