package release_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/mpha-dev/mpha/agent/release"
	"github.com/mpha-dev/mpha/internal/helmtest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

func TestLatestReadsTheDeployedRevision(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a rig cluster")
	}
	c := testrig.StartCluster(t, "east")
	ctx := context.Background()

	if _, err := release.Latest(ctx, c.Clientset, "tsb", "mp"); !errors.Is(err, release.ErrNotFound) {
		t.Fatalf("before install: got %v, want ErrNotFound", err)
	}
	vals := helmtest.Values()
	helmtest.Install(t, c.Kubeconfig, "tsb", "mp", vals)
	spec := vals["spec"].(map[string]any)
	spec["organization"] = "acme"
	helmtest.Install(t, c.Kubeconfig, "tsb", "mp", vals)

	r, err := release.Latest(ctx, c.Clientset, "tsb", "mp")
	if err != nil {
		t.Fatal(err)
	}
	if r.Revision != 2 || r.Secret != "sh.helm.release.v1.mp.v2" || r.Chart != helmtest.ChartName || r.Version != helmtest.ChartVersion {
		t.Errorf("got revision %d from %s, chart %s %s", r.Revision, r.Secret, r.Chart, r.Version)
	}
	got, _ := r.Values["spec"].(map[string]any)["organization"].(string)
	if got != "acme" {
		t.Errorf("values are not the latest revision's: organization %q", got)
	}
	if _, ok := r.Values["secrets"]; !ok {
		t.Error("the user-supplied values lost their secrets key: Latest must return what was installed")
	}
}

// Malformed release Secrets give an error naming the Secret, never a panic.
func TestLatestNamesAMalformedSecret(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a rig cluster")
	}
	c := testrig.StartCluster(t, "east")
	ctx := context.Background()
	if _, err := c.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tsb"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return []byte(base64.StdEncoding.EncodeToString(b.Bytes()))
	}
	tests := []struct {
		name    string
		data    []byte
		version string
		want    string
	}{
		{"notbase64", []byte("%%% not base64 %%%"), "1", "sh.helm.release.v1.notbase64.v1"},
		{"notgzip", []byte(base64.StdEncoding.EncodeToString([]byte("\x1f\x8b\x08garbage"))), "1", "sh.helm.release.v1.notgzip.v1"},
		{"notjson", gz("{{{"), "1", "sh.helm.release.v1.notjson.v1"},
		{"valuesnotamap", gz(`{"name":"valuesnotamap","version":1,"config":[1,2,3],"chart":{"metadata":{"name":"x","version":"1"}}}`), "1", "sh.helm.release.v1.valuesnotamap.v1"},
		{"nochart", gz(`{"name":"nochart","version":1,"config":{}}`), "1", "no chart metadata"},
		{"badversion", gz(`{}`), "one", `label version "one"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Name: "sh.helm.release.v1." + tc.name + ".v1", Namespace: "tsb",
					Labels: map[string]string{"owner": "helm", "name": tc.name, "status": "deployed", "version": tc.version},
				},
				Type: "helm.sh/release.v1",
				Data: map[string][]byte{"release": tc.data},
			}
			if _, err := c.Clientset.CoreV1().Secrets("tsb").Create(ctx, s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			_, err := release.Latest(ctx, c.Clientset, "tsb", tc.name)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %q", err, tc.want)
			}
		})
	}
}

// An agent whose Role grants get on the revision Secrets by name, and no list, reads the release
// by probing names: the chart's RBAC.
func TestReaderByName(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a rig cluster")
	}
	c := testrig.StartCluster(t, "east")
	ctx := t.Context()
	for i := 0; i < 8; i++ {
		vals := helmtest.Values()
		vals["spec"].(map[string]any)["organization"] = "org" + strconv.Itoa(i+1)
		helmtest.Install(t, c.Kubeconfig, "tsb", "mp", vals) // revisions 1..8
	}
	// Helm's history limit deleted the oldest: revisions 4..8 remain.
	for rev := 1; rev <= 3; rev++ {
		if err := c.Clientset.CoreV1().Secrets("tsb").Delete(ctx, release.SecretName("mp", rev), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	for rev := 1; rev <= 10; rev++ {
		names = append(names, release.SecretName("mp", rev))
	}
	names = append(names, "unrelated") // present in the Role; proves nothing by itself
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "mpha-release", Namespace: "tsb"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: names, Verbs: []string{"get"}}}}
	if _, err := c.Clientset.RbacV1().Roles("tsb").Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "mpha-release", Namespace: "tsb"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "mpha-agent"}}}
	if _, err := c.Clientset.RbacV1().RoleBindings("tsb").Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "mpha-agent"}
	agent := kubernetes.NewForConfigOrDie(cfg)
	testrig.Eventually(t, "the Role in force", 30*time.Second, func(ctx context.Context) error {
		_, err := agent.CoreV1().Secrets("tsb").Get(ctx, release.SecretName("mp", 8), metav1.GetOptions{})
		return err
	})
	if _, err := agent.CoreV1().Secrets("tsb").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the agent may list secrets (err %v): the test proves nothing", err)
	}

	r := release.NewReader(agent, "tsb", "mp")
	got, err := r.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revision != 8 || got.Values["spec"].(map[string]any)["organization"] != "org8" {
		t.Errorf("cold read: revision %d, values %v; want revision 8 with org8", got.Revision, got.Values["spec"])
	}

	// A failed upgrade is the head but not the deployed revision.
	s, err := c.Clientset.CoreV1().Secrets("tsb").Get(ctx, release.SecretName("mp", 8), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.ObjectMeta = metav1.ObjectMeta{Name: release.SecretName("mp", 9), Namespace: "tsb",
		Labels: map[string]string{"owner": "helm", "name": "mp", "status": "failed", "version": "9"}}
	if _, err := c.Clientset.CoreV1().Secrets("tsb").Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if h, err := r.Head(ctx); err != nil || h != (release.Head{Revision: 9, Status: "failed"}) {
		t.Errorf("head = %+v, %v; want revision 9 failed", h, err)
	}
	if got, err := r.Latest(ctx); err != nil || got.Revision != 8 {
		t.Errorf("after a failed upgrade: %v, %v; want revision 8", got, err)
	}

	// Revision 10 is the last the Role names: reading it as the newest would be a guess.
	s.ObjectMeta = metav1.ObjectMeta{Name: release.SecretName("mp", 10), Namespace: "tsb",
		Labels: map[string]string{"owner": "helm", "name": "mp", "status": "deployed", "version": "10"}}
	if _, err := c.Clientset.CoreV1().Secrets("tsb").Create(ctx, s, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Latest(ctx); !errors.Is(err, release.ErrRevisionLimit) || !strings.Contains(err.Error(), "rbac.helmReleaseRevisions") {
		t.Errorf("at the end of the grant: err = %v, want ErrRevisionLimit naming the chart value", err)
	}
	if _, err := release.NewReader(agent, "tsb", "other").Latest(ctx); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("a release the Role does not name: err = %v", err)
	}
}
