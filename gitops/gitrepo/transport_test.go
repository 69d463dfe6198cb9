package gitrepo_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"
	"github.com/fluxcd/pkg/git/signature"
	"golang.org/x/crypto/ssh"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func sshIdentity(t *testing.T) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "mpha")
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

// Over SSH with a key and known_hosts, the change lands; with the wrong host key, it never does.
func TestSSHTransport(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	base, knownHosts := f.srv.StartSSH(t)
	url := base + "/" + repo
	newWriter := func(hosts []byte) (*gitrepo.Writer, error) {
		auth, err := gitrepo.NewAuth(url, map[string][]byte{"identity": sshIdentity(t), "known_hosts": hosts})
		if err != nil {
			t.Fatal(err)
		}
		return gitrepo.New(gitrepo.Options{URL: url, Auth: auth, Author: git.Signature{Name: "a", Email: "a@b"},
			Backoff: wait.Backoff{Duration: 10 * time.Millisecond, Factor: 1, Steps: 2}})
	}
	w, err := newWriter(knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	res, err := w.Apply(context.Background(), gitops.Change{Files: map[string][]byte{"mpha/ssh.yaml": owned("via ssh\n")},
		Message: "over ssh", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}})
	if err != nil {
		t.Fatalf("over SSH: %v", err)
	}
	if got, _ := fileAt(t, headCommit(t, f.clone(t, "main")), "mpha/ssh.yaml"); got != string(owned("via ssh\n")) || res.NoChange {
		t.Errorf("the SSH push did not land: %q", got)
	}
	// Another host's key under the server's name: the handshake fails, nothing lands.
	other := append([]byte(strings.Fields(string(knownHosts))[0]+" "), ssh.MarshalAuthorizedKey(otherHostKey(t))...)
	w, err = newWriter(other)
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.Apply(context.Background(), gitops.Change{Files: map[string][]byte{"mpha/mitm.yaml": owned("x\n")},
		Message: "to an impostor", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}})
	if err == nil || !strings.Contains(err.Error(), "key mismatch") && !strings.Contains(err.Error(), "host key") {
		t.Errorf("pushing to a server whose host key is not in known_hosts: %v, want a host key error", err)
	}
	if _, ok := fileAt(t, headCommit(t, f.clone(t, "main")), "mpha/mitm.yaml"); ok {
		t.Error("the change reached a server whose host key is not in known_hosts")
	}
}

// otherHostKey is a public key no server of the test holds.
func otherHostKey(t *testing.T) ssh.PublicKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s.PublicKey()
}

// Commits are signed with an armored OpenPGP key, verifiably.
func TestOpenPGPSignedCommits(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	priv, pub := testrig.OpenPGPKeyPair(t, "mpha agent", "mpha@east.invalid")
	signer, err := gitrepo.NewSigner(priv, nil)
	if err != nil {
		t.Fatal(err)
	}
	w := f.writer(t, f.srv.URL(repo), func(o *gitrepo.Options) { o.Signer = signer })
	if _, err := w.Apply(context.Background(), gitops.Change{Files: map[string][]byte{"mpha/pgp.yaml": owned("p\n")},
		Message: "pgp", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}}); err != nil {
		t.Fatal(err)
	}
	c := headCommit(t, f.clone(t, "main"))
	payload := signedPayload(t, c)
	if _, err := signature.VerifyPGPSignature(c.PGPSignature, payload, string(pub)); err != nil {
		t.Errorf("the OpenPGP signature does not verify: %v", err)
	}
}

// A change planned from an old read refuses a file another writer changed since, naming it; a file
// that already holds the wanted content is no conflict.
func TestSinceDetectsContentConflicts(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a, b := f.writer(t, f.srv.URL(repo)), f.writer(t, f.srv.URL(repo))
	const path = "mpha/pair.yaml"
	if _, err := a.Apply(ctx, gitops.Change{Files: map[string][]byte{path: owned("epoch: 1\n")}, Message: "seed",
		Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}}); err != nil {
		t.Fatal(err)
	}
	snap, err := a.Read(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	// b moves the epoch on after a read it.
	if _, err := b.Apply(ctx, gitops.Change{Files: map[string][]byte{path: owned("epoch: 2\n")}, Message: "b",
		Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}}); err != nil {
		t.Fatal(err)
	}
	ch := gitops.Change{Files: map[string][]byte{path: owned("epoch: 2\nactive: west\n")}, Message: "a",
		Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}}
	ch.Check = gitops.Since(snap.Files, ch, gitops.CheckOwned)
	_, err = a.Apply(ctx, ch)
	var ce *gitrepo.ConflictError
	if !errors.As(err, &ce) || ce.Path != path || !errors.Is(err, gitops.ErrChanged) || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want a conflict on %s", err, path)
	}
	// Re-planned from a fresh read, it goes through.
	if snap, err = a.Read(ctx, path); err != nil {
		t.Fatal(err)
	}
	ch.Check = gitops.Since(snap.Files, ch, gitops.CheckOwned)
	if _, err := a.Apply(ctx, ch); err != nil {
		t.Errorf("after re-reading: %v", err)
	}
}
