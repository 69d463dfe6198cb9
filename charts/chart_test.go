package charts

import (
	"bytes"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint/support"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/internal/golden"
	"github.com/mpha-dev/mpha/internal/ociimage"
)

const chartDir = "mpha"

func loadChart(t testing.TB) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	return ch
}

func readValues(t testing.TB, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// render renders the chart as `helm template` does, schema validation included.
func render(t testing.TB, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch := loadChart(t)
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: "mpha", Namespace: "mpha", IsInstall: true}, nil)
	if err != nil {
		return nil, err
	}
	return engine.Render(ch, rv)
}

// manifest joins the rendered files in name order, each under a comment naming it.
func manifest(files map[string]string) string {
	var b strings.Builder
	for _, name := range sortedKeys(files) {
		body := strings.TrimSpace(files[name])
		if body == "" || strings.HasPrefix(name, "mpha/templates/_") {
			continue
		}
		b.WriteString("# " + name + "\n" + body + "\n---\n")
	}
	return b.String()
}

// ciValues are chart-testing's values files: `ct lint` lints the chart with each.
func ciValues(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob(chartDir + "/ci/*-values.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("ci values files: %v, %v", files, err)
	}
	return files
}

// `helm lint charts/mpha` passes on the chart's own defaults (chart-testing lints them too) and
// on each ci/ values file, without a warning (`--strict` too): Helm's lint action, as the CLI runs it.
func TestLint(t *testing.T) {
	for _, vf := range append([]string{""}, ciValues(t)...) {
		t.Run("values="+filepath.Base(vf), func(t *testing.T) {
			var vals map[string]any
			if vf != "" {
				vals = readValues(t, vf)
			}
			// Helm's engine logs what lint mode let pass to the standard logger: on the defaults,
			// that is what an install would refuse.
			var logged bytes.Buffer
			log.SetOutput(&logged)
			defer log.SetOutput(os.Stderr)
			lint := action.NewLint()
			lint.Strict = true
			res := lint.Run([]string{chartDir}, vals)
			if got := strings.Contains(logged.String(), "Missing required value: config.cluster is required"); got != (vf == "") {
				t.Errorf("lint logged the missing cluster: %v, want %v:\n%s", got, vf == "", logged.String())
			}
			for _, err := range res.Errors {
				t.Errorf("helm lint --strict: %v", err)
			}
			for _, m := range res.Messages {
				if m.Severity > support.InfoSev {
					t.Errorf("helm lint: %s", m)
				}
			}
			if res.TotalChartsLinted != 1 {
				t.Errorf("linted %d charts", res.TotalChartsLinted)
			}
		})
	}
}

// The defaults lint, but do not install: `helm template` and `helm install` (and Flux's
// HelmRelease) fail naming each missing required key, and the forge a default mode needs.
func TestDefaultsDoNotInstall(t *testing.T) {
	_, err := render(t, nil)
	if err == nil {
		t.Fatal("the chart's defaults render: an agent with no cluster, repository or NATS would be installed")
	}
	if !strings.Contains(err.Error(), "config.cluster is required") {
		t.Errorf("defaults: %v, want config.cluster named", err)
	}
	base := readValues(t, "mpha/ci/minimal-values.yaml")
	for _, tc := range []struct{ drop, want string }{
		{"cluster", "config.cluster is required (docs/configuration.md): Cluster is this cluster's name in pair.yaml."},
		{"pair", "config.pair is required"},
		{"git", "config.git.url is required"},
		{"nats", "config.nats.url is required"},
		{"forge", "config.forge.mode: forge.kind is none (the default), so no pull request can be opened"},
	} {
		v := readValues(t, "mpha/ci/minimal-values.yaml")
		delete(cfg(v), tc.drop)
		if _, err := render(t, v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("without config.%s: %v, want %q", tc.drop, err, tc.want)
		}
	}
	if _, err := render(t, base); err != nil {
		t.Errorf("the minimal values: %v", err)
	}
}

// The rendered manifests, with the minimal and the full example values, are golden files.
func TestRender(t *testing.T) {
	for _, name := range []string{"minimal", "full"} {
		t.Run(name, func(t *testing.T) {
			files, err := render(t, readValues(t, "mpha/ci/"+name+"-values.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, "testdata/"+name+".golden.yaml", []byte(manifest(files)))
			if name == "minimal" {
				ref, err := ociimage.ChartReference(chartDir)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(files["mpha/templates/deployment.yaml"], "image: "+ref+"\n") {
					t.Errorf("the Deployment does not run %s, the image make image builds", ref)
				}
			}
			cfg := configOf(t, files)
			if _, err := agent.Parse([]byte(cfg)); err != nil {
				t.Errorf("the agent refuses the rendered configuration: %v\n%s", err, cfg)
			}
		})
	}
}

// configOf is the config.yaml of the rendered ConfigMap.
func configOf(t testing.TB, files map[string]string) string {
	t.Helper()
	var cm struct {
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal([]byte(files["mpha/templates/configmap.yaml"]), &cm); err != nil {
		t.Fatal(err)
	}
	return cm.Data["config.yaml"]
}

// The RBAC follows the configuration: selfFence alone makes the scale writable; the install
// model's secrets and the configured Secret names are what may be read.
func TestRBACFollowsConfig(t *testing.T) {
	base := readValues(t, "mpha/ci/minimal-values.yaml")
	files, err := render(t, base)
	if err != nil {
		t.Fatal(err)
	}
	rbac := files["mpha/templates/rbac.yaml"]
	for _, want := range []string{`["iam-signing-key","tsb-certs","tsb-iam-jwks","xcp-central-cert"]`, `["mpha-git","mpha-hmac"]`,
		`"sh.helm.release.v1.mp.v200"`, `"http:sealed-secrets-controller:http"`, `[tsb-restore]`} {
		if !strings.Contains(rbac, want) && !strings.Contains(rbac, strings.Trim(want, "[]")) {
			t.Errorf("rbac.yaml lacks %s", want)
		}
	}
	for _, never := range []string{"deployments/scale", "ClusterRole", "sh.helm.release.v1.mp.v201", "escalate", "impersonate", `"*"`} {
		if strings.Contains(rbac, never) {
			t.Errorf("rbac.yaml grants %s without selfFence", never)
		}
	}
	base["config"].(map[string]any)["selfFence"] = true
	base["config"].(map[string]any)["kubernetes"] = map[string]any{"installModel": "generic"}
	if files, err = render(t, base); err != nil {
		t.Fatal(err)
	}
	rbac = files["mpha/templates/rbac.yaml"]
	if !strings.Contains(rbac, "deployments/scale") || !strings.Contains(rbac, "ldap-credentials") {
		t.Errorf("selfFence and the generic model: rbac.yaml lacks the scale or the generic secrets:\n%s", rbac)
	}
}

// Bad values are refused by the schema with a message naming the field.
func TestSchemaRejectsBadValues(t *testing.T) {
	tests := []struct {
		name string
		edit func(v map[string]any)
		want string
	}{
		{"missing cluster", func(v map[string]any) { delete(cfg(v), "cluster") }, "cluster"},
		{"cluster not a DNS label", func(v map[string]any) { cfg(v)["cluster"] = "East_1" }, "/config/cluster"},
		{"no config at all", func(v map[string]any) { delete(v, "config") }, "config"},
		{"replicas not a number", func(v map[string]any) { v["replicaCount"] = "two" }, "/replicaCount"},
		{"duration not a duration", func(v map[string]any) { cfg(v)["heartbeatInterval"] = "10 seconds" }, "/config/heartbeatInterval"},
		{"duration as a number", func(v map[string]any) { cfg(v)["heartbeatInterval"] = 10 }, "/config/heartbeatInterval"},
		{"bool as a string", func(v map[string]any) { cfg(v)["selfFence"] = "yes" }, "/config/selfFence"},
		{"unknown install model", func(v map[string]any) { cfg(v)["kubernetes"] = map[string]any{"installModel": "tctl"} }, "/config/kubernetes/installModel"},
		{"unknown config key", func(v map[string]any) { cfg(v)["clusterName"] = "east" }, "clusterName"},
		{"inline Git credentials in the reference", func(v map[string]any) {
			sub(v, "git")["authSecret"] = map[string]any{"username": "mpha", "password": "hunter2"}
		}, "/config/git/authSecret"},
		{"inline Git password", func(v map[string]any) { sub(v, "git")["password"] = "hunter2" }, "password"},
		{"inline forge token", func(v map[string]any) {
			cfg(v)["forge"] = map[string]any{"kind": "github", "url": "https://api.github.com", "token": "ghp_x"}
		}, "token"},
		{"inline NATS credentials", func(v map[string]any) { sub(v, "nats")["creds"] = "-----BEGIN NATS USER JWT-----" }, "creds"},
		{"inline secret at the chart's top level", func(v map[string]any) { v["secrets"] = map[string]any{"git": map[string]any{"password": "x"}} }, "secrets"},
		{"secret name with a slash", func(v map[string]any) { sub(v, "git")["authSecret"] = "ns/mpha-git" }, "/config/git/authSecret"},
		{"forge none with pull requests", func(v map[string]any) { delete(sub(v, "forge"), "mode") }, "mode"},
		{"forge without a token Secret", func(v map[string]any) {
			cfg(v)["forge"] = map[string]any{"kind": "gitea", "url": "https://gitea.example.com"}
		}, "tokenSecret"},
		{"image digest malformed", func(v map[string]any) { v["image"] = map[string]any{"repository": "r", "digest": "latest"} }, "/image/digest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := readValues(t, "mpha/ci/minimal-values.yaml")
			tc.edit(v)
			_, err := render(t, v)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not name %s:\n%v", tc.want, err)
			}
			for _, leak := range []string{"hunter2", "ghp_x", "BEGIN NATS"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("the error repeats the inline secret %q", leak)
				}
			}
		})
	}
}

func cfg(v map[string]any) map[string]any { return v["config"].(map[string]any) }

func sub(v map[string]any, key string) map[string]any {
	c := cfg(v)
	m, ok := c[key].(map[string]any)
	if !ok {
		m = map[string]any{}
		c[key] = m
	}
	return m
}

// The schema and Config.Validate agree on configurations that the schema can judge: the
// generated schema has not drifted from the agent.
func TestSchemaAgreesWithTheAgent(t *testing.T) {
	docs := map[string]bool{
		"cluster: east\npair: p\ngit: {url: https://g.example.com/r.git}\nnats: {url: nats://n:4222}\nforge: {mode: direct}\n":                                            true,
		"cluster: east\npair: p\ngit: {url: https://g.example.com/r.git}\nnats: {url: nats://n:4222}\n":                                                                   false, // forge none, mode pr
		"pair: p\ngit: {url: https://g.example.com/r.git}\nnats: {url: nats://n:4222}\nforge: {mode: direct}\n":                                                           false,
		"cluster: east\npair: p\nnats: {url: nats://n:4222}\nforge: {mode: direct}\n":                                                                                     false,
		"cluster: east\npair: p\ngit: {url: https://g.example.com/r.git}\nforge: {mode: direct}\n":                                                                        false,
		"cluster: east\npair: p\ngit: {url: https://g.example.com/r.git}\nnats: {url: nats://n:4222}\nforge: {kind: gitea, url: https://g.example.com, tokenSecret: t}\n": true,
		"cluster: east\npair: p\ngit: {url: https://g.example.com/r.git}\nnats: {url: nats://n:4222}\nforge: {kind: gitea, url: https://g.example.com}\n":                 false,
		"cluster: east\npair: p\ngit: {url: https://g.example.com/r.git}\nnats: {url: nats://n:4222}\nforge: {mode: direct}\nkubernetes: {installModel: generic}\n":       true,
		"cluster: east\npair: p\ngit: {url: https://g.example.com/r.git}\nnats: {url: nats://n:4222}\nforge: {mode: direct}\npostgres: {topology: mirrored}\n":            false,
		"cluster: east\npair: p\ngit: {url: https://g.example.com/r.git}\nnats: {url: nats://n:4222}\nforge: {mode: direct}\nstandby: {roleMode: values}\n":               true,
		"cluster: east\npair: p\ngit: {url: https://g.example.com/r.git}\nnats: {url: nats://n:4222}\nforge: {mode: direct}\nstandby: {roleMode: replicas}\n":             false,
		"cluster: east\npair: p\ngit: {url: https://g.example.com/r.git}\nnats: {url: nats://n:4222}\nforge: {mode: direct}\nheartbeatInterval: 1m30s\n":                  true,
		"cluster: east\npair: p\ngit: {url: https://g.example.com/r.git}\nnats: {url: nats://n:4222}\nforge: {mode: direct}\nheartbeatInterval: soon\n":                   false,
		"cluster: east\npair: p\ngit: {url: https://g.example.com/r.git, password: x}\nnats: {url: nats://n:4222}\nforge: {mode: direct}\n":                               false,
		"cluster: East\npair: p\ngit: {url: https://g.example.com/r.git}\nnats: {url: nats://n:4222}\nforge: {mode: direct}\n":                                            false,
	}
	for _, doc := range slices.Sorted(mapsKeys(docs)) {
		want := docs[doc]
		_, agentErr := agent.Parse([]byte(doc))
		var c map[string]any
		if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
			t.Fatal(err)
		}
		_, schemaErr := render(t, map[string]any{"config": c})
		if (agentErr == nil) != want || (schemaErr == nil) != want {
			t.Errorf("valid=%v but agent: %v; schema: %v\n%s", want, agentErr, schemaErr, doc)
		}
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
