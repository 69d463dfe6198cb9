package charts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/agent/readiness"
	"github.com/mpha-dev/mpha/agent/release"
	"github.com/mpha-dev/mpha/agent/runtime"
)

// Generated files, relative to the module's root. `make generate` rewrites them; a test fails
// when they are stale.
const (
	ReferenceFile = "docs/configuration.md"
	SchemaFile    = "charts/mpha/values.schema.json"
	// SchemaSource is the chart-level part of the schema, written by hand; the generator puts the
	// configuration's schema under properties.config.
	SchemaSource = "charts/schema/values.chart.json"
	DefaultsFile = "charts/mpha/templates/_config.tpl"
)

// Schema returns the chart's values.schema.json: the hand-written chart-level schema with the
// generated configuration schema in properties.config.
func (r *Reference) ChartSchema(chartPart []byte) ([]byte, error) {
	var s map[string]any
	if err := json.Unmarshal(chartPart, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", SchemaSource, err)
	}
	props, ok := s["properties"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: no properties", SchemaSource)
	}
	cfg := r.Schema
	if extra, ok := props["config"].(map[string]any); ok {
		// Rules that span keys (allOf, if/then) stay hand-written beside the generated ones.
		for k, v := range extra {
			cfg[k] = v
		}
	}
	props["config"] = cfg
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// DefaultsTemplate is the chart's _config.tpl: the configuration's defaults, which the chart
// merges under the user's config: block to render the ConfigMap and derive the RBAC.
func (r *Reference) DefaultsTemplate() ([]byte, error) {
	d, err := yaml.Marshal(r.Defaults)
	if err != nil {
		return nil, err
	}
	n, err := yaml.Marshal(r.SecretNames)
	if err != nil {
		return nil, err
	}
	f, err := yaml.Marshal(r.agentFacts())
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	b.WriteString("{{/* Generated from agent.Config by `make generate` (charts/generate.go): do not edit. */}}\n")
	b.WriteString("{{/* mpha.config.defaults: Config.Default on an empty configuration, without secrets.names. */}}\n")
	b.WriteString("{{- define \"mpha.config.defaults\" -}}\n")
	b.Write(d)
	b.WriteString("{{- end -}}\n\n")
	b.WriteString("{{/* mpha.config.secretNames: the default secrets.names per kubernetes.installModel. */}}\n")
	b.WriteString("{{- define \"mpha.config.secretNames\" -}}\n")
	b.Write(n)
	b.WriteString("{{- end -}}\n\n")
	b.WriteString("{{/* mpha.config.required: fails `helm install` and `helm template` on a missing required key (not\n")
	b.WriteString("   `helm lint`, whose lint mode lets `required` pass); its context is the merged configuration. */}}\n")
	b.WriteString("{{- define \"mpha.config.required\" -}}\n")
	for _, f := range r.Fields {
		if !f.Required {
			continue
		}
		keys := strings.Split(f.Path, ".")
		dig := `"` + strings.Join(keys, `" "`) + `" ""`
		msg := fmt.Sprintf("config.%s is required (docs/configuration.md): %s", f.Path,
			firstSentence(cmpOr(f.Doc, r.Sections[f.Section])))
		fmt.Fprintf(&b, "{{- $_ := required %s (dig %s .) -}}\n", strconv.Quote(msg), dig)
	}
	b.WriteString("{{- end -}}\n\n")
	b.WriteString("{{/* mpha.agent.facts: what the agent does against the API that the RBAC follows. */}}\n")
	b.WriteString("{{- define \"mpha.agent.facts\" -}}\n")
	b.Write(f)
	b.WriteString("{{- end -}}\n")
	return []byte(b.String()), nil
}

// notRead are Secret-name keys the agent only refers to: it never reads the Secret.
var notRead = map[string]bool{"standby.chartRepositorySecret": true}

// agentFacts are the names the agent uses that the chart's RBAC must grant.
func (r *Reference) agentFacts() map[string]any {
	var refs []string
	for _, f := range r.Fields {
		if f.Secret && !notRead[f.Path] {
			refs = append(refs, f.Path)
		}
	}
	return map[string]any{
		// agentSecrets: the keys naming Secrets the agent reads in its own namespace.
		"agentSecrets":       refs,
		"leasePrefix":        strings.TrimSuffix(runtime.LeaseName("x"), "x"),
		"readinessConfigMap": readiness.ConfigMapName,
		// checkedSecrets: the MP's Secrets the readiness checks read besides secrets.names.
		"checkedSecrets": readiness.CheckedSecrets(),
		// releaseSecretPrefix + <release>.v<N>: the Helm release's revisions.
		"releaseSecretPrefix": strings.TrimSuffix(release.SecretName("", 1), ".v1"),
	}
}

// Markdown is docs/configuration.md.
func (r *Reference) Markdown() []byte {
	var b strings.Builder
	b.WriteString(`# Agent configuration reference

<!-- Generated from agent.Config (agent/config.go) by ` + "`make generate`" + ` (charts/generate.go): do not edit. -->

The agent reads one YAML file (` + "`mpha agent --config FILE`" + `). With the chart, it is the ` + "`config:`" + ` block
of your values file: the chart merges it over the defaults below, checks it against
` + "`values.schema.json`" + ` (generated from the same struct), and renders it into the agent's ConfigMap.
Check a file by hand with ` + "`mpha config check --config FILE`" + `: an unknown key, a mis-cased key or a
bad value is an error naming the key. Durations are Go durations (` + "`10s`, `1m30s`" + `).

Keys marked **Secret name** name a Secret in the agent's namespace (or, for
` + "`standby.chartRepositorySecret`" + `, the management plane's); the secret itself never goes into the
configuration, the values file or Git. See [security.md](security.md) for what each holds.

`)
	b.WriteString("Required: ")
	var req []string
	for _, f := range r.Fields {
		if f.Required {
			req = append(req, "`"+f.Path+"`")
		}
	}
	b.WriteString(strings.Join(req, ", ") + " (with the chart, `helm install` and `helm template` fail naming a missing one). ")
	b.WriteString("A `forge.kind` other than `none` needs `forge.url` and `forge.tokenSecret`; with `forge.kind: none`, `forge.mode` must be `branch` or `direct`.\n\n")
	b.WriteString("Default `secrets.names` by `kubernetes.installModel`:\n\n")
	for _, m := range sortedKeys(r.SecretNames) {
		fmt.Fprintf(&b, "- `%s`: %s\n", m, "`"+strings.Join(r.SecretNames[m], "`, `")+"`")
	}
	sections := []string{""}
	for _, f := range r.Fields {
		if f.Section != sections[len(sections)-1] && !slices.Contains(sections, f.Section) {
			sections = append(sections, f.Section)
		}
	}
	for _, sec := range sections {
		if sec == "" {
			b.WriteString("\n## Top level\n\n")
		} else {
			fmt.Fprintf(&b, "\n## `%s`\n\n", sec)
			if d := r.Sections[sec]; d != "" {
				b.WriteString(oneLine(d) + "\n\n")
			}
		}
		b.WriteString("| key | type | default | description |\n|---|---|---|---|\n")
		for _, f := range r.Fields {
			if f.Section != sec {
				continue
			}
			def := ""
			if f.Default != "" {
				def = "`" + strings.Trim(f.Default, `"`) + "`"
			}
			if f.Path == "secrets.names" {
				def = "by install model (above)"
			}
			desc := oneLine(f.Doc)
			if f.Required {
				desc = "**Required.** " + desc
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.Path, f.Type, def, strings.ReplaceAll(desc, "|", `\|`))
		}
	}
	return []byte(b.String())
}

// Generate renders every generated file from the module at root, keyed by path.
func Generate(root string) (map[string][]byte, error) {
	r, err := BuildReference(root)
	if err != nil {
		return nil, err
	}
	part, err := os.ReadFile(root + "/" + SchemaSource)
	if err != nil {
		return nil, err
	}
	schema, err := r.ChartSchema(part)
	if err != nil {
		return nil, err
	}
	tpl, err := r.DefaultsTemplate()
	if err != nil {
		return nil, err
	}
	return map[string][]byte{ReferenceFile: r.Markdown(), SchemaFile: schema, DefaultsFile: tpl}, nil
}
