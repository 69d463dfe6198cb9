package testrig

import (
	"bytes"
	"io"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// OpenPGPKeyPair makes an armored OpenPGP key pair for signing commits: the private key, as a
// Secret of git.signingKeySecret holds it under "key", and the public key that verifies the
// signatures (go-git's Commit.Verify takes it).
func OpenPGPKeyPair(t testing.TB, name, email string) (private, public []byte) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", email, nil)
	if err != nil {
		t.Fatal(err)
	}
	armored := func(typ string, write func(io.Writer) error) []byte {
		var buf bytes.Buffer
		w, err := armor.Encode(&buf, typ, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := write(w); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	return armored(openpgp.PrivateKeyType, func(w io.Writer) error { return e.SerializePrivate(w, nil) }), armored(openpgp.PublicKeyType, e.Serialize)
}
