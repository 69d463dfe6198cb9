package manifests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

var clusters = []string{"east", "west"}

// Each cluster's values.yaml renders the chart, and the agent accepts the configuration it
// renders; pair.yaml names both clusters and the pair the agents are configured for.
func TestValuesAndPair(t *testing.T) {
	b, err := os.ReadFile("fleet/mpha/pair.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pair, err := gitops.ParsePair(b)
	if err != nil {
		t.Fatalf("pair.yaml: %v", err)
	}
	ch, err := loader.Load("../charts/mpha")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range clusters {
		t.Run(c, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("fleet/clusters", c, "mpha-agent/values.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var vals map[string]any
			if err := yaml.Unmarshal(b, &vals); err != nil {
				t.Fatal(err)
			}
			rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "mpha", Namespace: "mpha", IsInstall: true}, nil)
			if err != nil {
				t.Fatalf("the chart refuses %s's values: %v", c, err)
			}
			files, err := engine.Render(ch, rv)
			if err != nil {
				t.Fatal(err)
			}
			var cm struct {
				Data map[string]string `json:"data"`
			}
			if err := yaml.Unmarshal([]byte(files["mpha/templates/configmap.yaml"]), &cm); err != nil {
				t.Fatal(err)
			}
			cfg, err := agent.Parse([]byte(cm.Data["config.yaml"]))
			if err != nil {
				t.Fatalf("the agent refuses %s's configuration: %v", c, err)
			}
			if cfg.Cluster != c || cfg.Pair != pair.Name {
				t.Errorf("%s's agent is configured as cluster %q of pair %q; pair.yaml names %q", c, cfg.Cluster, cfg.Pair, pair.Name)
			}
			if _, err := pair.Peer(c); err != nil {
				t.Errorf("pair.yaml: %v", err)
			}
			// The HelmRelease reads the ConfigMap the kustomization generates from values.yaml.
			k, _ := os.ReadFile(filepath.Join("fleet/clusters", c, "mpha-agent/kustomization.yaml"))
			hr, _ := os.ReadFile(filepath.Join("fleet/clusters", c, "mpha-agent/helmrelease.yaml"))
			if !bytes.Contains(k, []byte("name: mpha-values")) || !bytes.Contains(hr, []byte("name: mpha-values")) {
				t.Error("the HelmRelease and the configMapGenerator disagree on the values ConfigMap")
			}
			// Flux in c applies the folder the agents write for c.
			m, _ := os.ReadFile(filepath.Join("fleet/clusters", c, "mpha.yaml"))
			if !bytes.Contains(m, []byte("path: ./"+gitops.DefaultRoot+"/clusters/"+c+"\n")) || !bytes.Contains(m, []byte("name: "+cfg.Flux.Kustomization+"\n")) {
				t.Errorf("clusters/%s/mpha.yaml does not apply %s as Kustomization %q", c, "mpha/clusters/"+c, cfg.Flux.Kustomization)
			}
		})
	}
}

// Every object is valid for its CRD: a rig API server with the Flux, HelmRelease and
// DNSEndpoint CRDs accepts them (server-side apply validates against the CRDs' schemas).
func TestObjectsApply(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a rig cluster")
	}
	c := testrig.StartCluster(t, "east")
	bin, err := testrig.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	var crds []string
	for _, f := range []string{"source.toolkit.fluxcd.io_gitrepositories.yaml", "kustomize.toolkit.fluxcd.io_kustomizations.yaml",
		"helm.toolkit.fluxcd.io_helmreleases.yaml", "dnsendpoints.externaldns.k8s.io.yaml"} {
		crds = append(crds, filepath.Join(bin, "crds", f))
	}
	c.ApplyFiles(t, crds...)
	c.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: flux-system}\n"))
	applied := 0
	for _, dir := range []string{"fleet/clusters/east", "fleet/mpha/dns"} {
		err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") || filepath.Base(p) == "kustomization.yaml" || filepath.Base(p) == "values.yaml" {
				return err
			}
			if strings.HasSuffix(p, "namespace.yaml") {
				c.ApplyFiles(t, p) // first: the objects after it live in it
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".yaml") || filepath.Base(p) == "kustomization.yaml" || filepath.Base(p) == "values.yaml" {
				return err
			}
			c.ApplyFiles(t, p)
			applied++
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if applied < 5 {
		t.Fatalf("applied %d files; the walk missed the manifests", applied)
	}
	for _, o := range []struct{ res, ns, name string }{
		{"kustomizations.kustomize.toolkit.fluxcd.io", "flux-system", "mpha"},
		{"helmreleases.helm.toolkit.fluxcd.io", "mpha", "mpha"},
		{"dnsendpoints.externaldns.k8s.io", "mpha", "mpha-floating"},
	} {
		res, group, _ := strings.Cut(o.res, ".")
		gvr := map[string]string{"kustomize.toolkit.fluxcd.io": "v1", "helm.toolkit.fluxcd.io": "v2", "externaldns.k8s.io": "v1alpha1"}[group]
		if _, err := c.Dynamic(t).Resource(schemaGVR(group, gvr, res)).Namespace(o.ns).Get(t.Context(), o.name, getOpts); err != nil {
			t.Errorf("%s %s/%s: %v", o.res, o.ns, o.name, err)
		}
	}
}
