package testrig_test

import (
	"context"
	"crypto/rsa"
	"testing"
	"time"

	ssv1alpha1 "github.com/bitnami-labs/sealed-secrets/pkg/apis/sealedsecrets/v1alpha1"
	"github.com/go-git/go-billy/v5/util"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// Flux applies what is committed to the rig's Git server into the rig cluster — a ConfigMap, then
// a change to it, then a SealedSecret that the sealed-secrets controller turns into a Secret.
func TestFluxAppliesCommits(t *testing.T) {
	integration(t)
	t.Parallel()
	c := testrig.StartCluster(t, "east")
	g := testrig.StartGitServer(t)
	sealer := testrig.StartSealedSecrets(t, c)
	flux := testrig.StartFlux(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	first := g.CreateRepo(t, "org/fleet.git", "main", map[string]string{
		"clusters/east/ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tsb\n",
		"clusters/east/cm.yaml": configMap("one"),
	})
	flux.Sync(t, testrig.GitSource{Name: "fleet", URL: g.URL("org/fleet.git"), Branch: "main",
		Path: "./clusters/east", Username: g.Username, Password: g.Password})
	flux.WaitApplied(t, "fleet", first, 2*time.Minute)
	if v := configValue(ctx, t, c); v != "one" {
		t.Fatalf("after the first sync the ConfigMap holds %q, want one", v)
	}

	sealed := sealSecret(t, sealer.Cert(t), "tsb", "iam-signing-key", "private.key", "s3cr3t-signing-key")
	second := commit(ctx, t, g, map[string]string{"clusters/east/cm.yaml": configMap("two"), "clusters/east/iam-signing-key.yaml": sealed})
	flux.Reconcile(t, "fleet")
	flux.WaitApplied(t, "fleet", second, 2*time.Minute)
	if v := configValue(ctx, t, c); v != "two" {
		t.Errorf("after the second commit the ConfigMap holds %q, want two", v)
	}
	testrig.Eventually(t, "the committed SealedSecret to be unsealed", time.Minute, func(ctx context.Context) error {
		_, err := c.Clientset.CoreV1().Secrets("tsb").Get(ctx, "iam-signing-key", metav1.GetOptions{})
		return err
	})
	s, err := c.Clientset.CoreV1().Secrets("tsb").Get(ctx, "iam-signing-key", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(s.Data["private.key"]); got != "s3cr3t-signing-key" {
		t.Fatalf("unsealed secret holds the wrong value (%d bytes)", len(got))
	}
}

func configMap(v string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rig\n  namespace: tsb\ndata:\n  value: " + v + "\n"
}

func configValue(ctx context.Context, t *testing.T, c *testrig.Cluster) string {
	t.Helper()
	cm, err := c.Clientset.CoreV1().ConfigMaps("tsb").Get(ctx, "rig", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data["value"]
}

// commit clones the rig repo, writes files, commits and pushes; it returns the new head.
func commit(ctx context.Context, t *testing.T, g *testrig.GitServer, files map[string]string) string {
	t.Helper()
	r, err := gogit.PlainCloneContext(ctx, t.TempDir(), false, &gogit.CloneOptions{URL: g.URL("org/fleet.git"), Auth: g.Auth()})
	if err != nil {
		t.Fatal(err)
	}
	wt, _ := r.Worktree()
	for p, content := range files {
		if err := util.WriteFile(wt.Filesystem, p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := wt.AddWithOptions(&gogit.AddOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	h, err := wt.Commit("update", &gogit.CommitOptions{Author: &object.Signature{Name: "t", Email: "t@mpha.invalid", When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.PushContext(ctx, &gogit.PushOptions{Auth: g.Auth()}); err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// sealSecret seals one key with the controller's certificate (strict scope) and returns the
// SealedSecret as YAML, the way it is committed to Git.
func sealSecret(t *testing.T, certPEM []byte, ns, name, key, value string) string {
	t.Helper()
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := certs[0].PublicKey.(*rsa.PublicKey)
	if !ok {
		t.Fatalf("the sealing certificate holds a %T, want an RSA key", certs[0].PublicKey)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string][]byte{key: []byte(value)}}
	ss, err := ssv1alpha1.NewSealedSecret(serializer.NewCodecFactory(scheme.Scheme), pub, sec)
	if err != nil {
		t.Fatal(err)
	}
	ss.TypeMeta = metav1.TypeMeta{APIVersion: "bitnami.com/v1alpha1", Kind: "SealedSecret"}
	b, err := yaml.Marshal(ss)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
