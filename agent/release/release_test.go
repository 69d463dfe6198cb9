package release_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
