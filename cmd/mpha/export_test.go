package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/storage/memory"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// `mpha secrets export --once` against a real cluster and Git server: the peer comes from
// pair.yaml, the key, credentials and commit signing key from Secrets; the commit is the agent's,
// signed as the agent signs; a second pass commits nothing.
func TestSecretsExportOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a Git server")
	}
	ctx := context.Background()
	east := testrig.StartCluster(t, "east")
	srv := testrig.StartGitServer(t)
	certPEM, _ := testrig.SealingKeyPair(t, "west")
	srv.CreateRepo(t, "org/fleet.git", "main", map[string]string{
		"mpha/pair.yaml": `apiVersion: mpha.dev/v1alpha1
kind: Pair
name: tsb-mp
floatingFQDN: active.tsb.example.com
clusters: [{name: east, mpFQDN: mp1.tsb.example.com}, {name: west, mpFQDN: mp2.tsb.example.com}]
active: east
epoch: 1
`,
		"mpha/clusters/west/sealing-cert.pem": string(certPEM),
	})
	signingKey, verifyKey := testrig.OpenPGPKeyPair(t, "mpha agent", "mpha-east@mpha.invalid")
	for _, ns := range []string{"mpha", "tsb"} {
		east.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+ns+"\n"))
	}
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "mpha-hmac", Namespace: "mpha"}, Data: map[string][]byte{"key": bytes.Repeat([]byte("h"), 32)}},
		{ObjectMeta: metav1.ObjectMeta{Name: "mpha-git", Namespace: "mpha"}, Data: srv.Credentials()},
		{ObjectMeta: metav1.ObjectMeta{Name: "mpha-git-signing", Namespace: "mpha"}, Data: map[string][]byte{"key": signingKey}},
		{ObjectMeta: metav1.ObjectMeta{Name: "iam-signing-key", Namespace: "tsb"}, Data: map[string][]byte{"kid": []byte("k1"), "private.key": []byte("plain-export-once-value")}},
	} {
		if _, err := east.Clientset.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfg, []byte("cluster: east\npair: tsb-mp\ngit: {url: "+srv.URL("org/fleet.git")+", signingKeySecret: mpha-git-signing}\nnats: {url: nats://127.0.0.1:4222}\nforge: {mode: branch}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--kubeconfig", east.Kubeconfig, "secrets", "export", "--once", "--config", cfg, "--namespace", "mpha"}

	if _, _, err := run(t, args...); err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Errorf("credentials over http without the flag: err = %v", err)
	}
	out, _, err := run(t, append(args, "--insecure-http-credentials")...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"iam-signing-key  sealed", "tsb-iam-jwks     absent", "committed ", "for west"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "plain-export-once-value") {
		t.Error("the output holds the plaintext")
	}
	clone, err := gogit.CloneContext(ctx, memory.NewStorage(), nil, &gogit.CloneOptions{URL: srv.URL("org/fleet.git"), Auth: srv.Auth(), NoCheckout: true})
	if err != nil {
		t.Fatal(err)
	}
	head, err := clone.Head()
	if err != nil {
		t.Fatal(err)
	}
	c, err := clone.CommitObject(head.Hash())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "committed "+c.Hash.String()) || c.Author.Name != "mpha agent (east)" {
		t.Errorf("the head is not the export's commit by the agent: %s by %s\n%s", c.Hash, c.Author.Name, out)
	}
	if _, err := c.Verify(string(verifyKey)); err != nil {
		t.Errorf("the export's commit is not signed with git.signingKeySecret's key: %v", err)
	}
	out, _, err = run(t, append(args, "--insecure-http-credentials")...)
	if err != nil || !strings.Contains(out, "iam-signing-key  unchanged") || !strings.Contains(out, "nothing to commit for west") {
		t.Errorf("second pass: %v\n%s", err, out)
	}
	if _, _, err := run(t, "secrets", "export", "--config", cfg); err == nil || !strings.Contains(err.Error(), "--once") {
		t.Errorf("without --once: err = %v", err)
	}
}
