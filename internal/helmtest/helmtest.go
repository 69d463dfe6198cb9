// Package helmtest installs a small fixture chart shaped like TSB's managementplane chart into a
// rig cluster with Helm's SDK, so tests read real Helm release Secrets. Test-only: never import it
// from the binary.
package helmtest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/release"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// ChartName and ChartVersion of the fixture.
const (
	ChartName    = "managementplane"
	ChartVersion = "1.12.3"
)

// The fixture renders what TSB's chart would from the same keys: the ManagementPlane spec into a
// ConfigMap (no CRD needed), secrets into a Secret, the operator's replica count into a ConfigMap.
var files = map[string]string{
	"Chart.yaml": "apiVersion: v2\nname: " + ChartName + "\nversion: " + ChartVersion + "\nappVersion: " + ChartVersion + "\n",
	"values.yaml": `image:
  registry: containers.dl.tetrate.io
  tag: ""
operator:
  deployment:
    replicaCount: 1
`,
	"templates/spec.yaml": `{{- if .Values.spec }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: managementplane-spec
data:
  spec.json: {{ toJson .Values.spec | quote }}
  registry: {{ .Values.image.registry | quote }}
{{- end }}
`,
	"templates/secrets.yaml": `{{- if .Values.secrets }}
apiVersion: v1
kind: Secret
metadata:
  name: managementplane-values-secrets
stringData:
  secrets.json: {{ toJson .Values.secrets | quote }}
{{- end }}
`,
}

// Chart writes the fixture chart into a temporary folder and loads it.
func Chart(t testing.TB) *chart.Chart {
	t.Helper()
	dir := filepath.Join(t.TempDir(), ChartName)
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := loader.Load(dir)
	if err != nil {
		t.Fatalf("loading the fixture chart: %v", err)
	}
	return ch
}

func config(t testing.TB, kubeconfig, namespace string) *action.Configuration {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &kubeconfig
	flags.Namespace = &namespace
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, namespace, "secret", func(format string, v ...any) { t.Logf("helm: "+format, v...) }); err != nil {
		t.Fatalf("helm configuration: %v", err)
	}
	return cfg
}

// Install installs (or, when the release exists, upgrades) the fixture chart as release name in
// namespace, creating the namespace, and returns the deployed release.
func Install(t testing.TB, kubeconfig, namespace, name string, values map[string]any) *release.Release {
	t.Helper()
	cfg := config(t, kubeconfig, namespace)
	ch := Chart(t)
	if _, err := cfg.Releases.Last(name); err == nil {
		up := action.NewUpgrade(cfg)
		up.Namespace = namespace
		rel, err := up.Run(name, ch, values)
		if err != nil {
			t.Fatalf("helm upgrade %s/%s: %v", namespace, name, err)
		}
		return rel
	}
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace, in.CreateNamespace = name, namespace, true
	rel, err := in.Run(ch, values)
	if err != nil {
		t.Fatalf("helm install %s/%s: %v", namespace, name, err)
	}
	if rel.Info.Status != release.StatusDeployed {
		t.Fatalf("helm install %s/%s: status %s", namespace, name, rel.Info.Status)
	}
	return rel
}

// Values is a values file shaped like the seed's source_mp_values.yaml: image, secrets (which
// must never reach the standby), spec and operator. Each call returns a fresh copy.
func Values() map[string]any {
	return map[string]any{
		"image": map[string]any{"registry": "registry.east.example.com", "tag": ChartVersion},
		"secrets": map[string]any{
			"tsb":      map[string]any{"adminPassword": "fixture-admin-password"},
			"postgres": map[string]any{"username": "tsb", "password": "fixture-postgres-password"},
		},
		"spec": map[string]any{
			"hub":          "registry.east.example.com/tsb",
			"organization": "tetrate",
			"dataStore":    map[string]any{"postgres": map[string]any{"address": "pg.example.com:5432", "name": "tsb", "sslMode": "verify_full"}},
			"components": map[string]any{
				"xcp":        map[string]any{"centralAuthModes": map[string]any{"jwt": true}},
				"frontEnvoy": map[string]any{"port": 443},
			},
		},
		"operator": map[string]any{"deployment": map[string]any{"replicaCount": 1}},
	}
}

// String is a readable name for a release, for messages.
func String(r *release.Release) string {
	return fmt.Sprintf("%s/%s v%d", r.Namespace, r.Name, r.Version)
}
