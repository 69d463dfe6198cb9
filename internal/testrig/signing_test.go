package testrig_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// The private key signs, the public key verifies, and neither is the other.
func TestOpenPGPKeyPair(t *testing.T) {
	t.Parallel()
	private, public := testrig.OpenPGPKeyPair(t, "mpha agent", "mpha-east@mpha.invalid")
	signers, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(private))
	if err != nil || len(signers) != 1 || signers[0].PrivateKey == nil {
		t.Fatalf("private key: %d entities, err %v", len(signers), err)
	}
	var sig bytes.Buffer
	if err := openpgp.ArmoredDetachSign(&sig, signers[0], strings.NewReader("commit"), nil); err != nil {
		t.Fatal(err)
	}
	verifiers, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(public))
	if err != nil || len(verifiers) != 1 || verifiers[0].PrivateKey != nil {
		t.Fatalf("public key: %d entities, err %v", len(verifiers), err)
	}
	if _, err := openpgp.CheckArmoredDetachedSignature(verifiers, strings.NewReader("commit"), &sig, nil); err != nil {
		t.Errorf("the public key does not verify the private key's signature: %v", err)
	}
}
