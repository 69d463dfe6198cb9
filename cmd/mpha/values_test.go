package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mpha-dev/mpha/gitops/values"
)

const sourceValues = "../../gitops/values/testdata/source_mp_values.yaml"

func TestValuesRender(t *testing.T) {
	out, _, err := run(t, "values", "render", "-f", sourceValues, "--set", "image.registry=registry.west.example.com",
		"--set", "spec.hub=registry.west.example.com/tsb", "--role-mode", "values")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "secrets") || strings.Contains(out, "fixture-") {
		t.Errorf("secrets in the output:\n%s", out)
	}
	got, err := values.ParseFile([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	src, _ := os.ReadFile(sourceValues)
	want, _ := values.ParseFile(src)
	delete(want, "secrets")
	d := values.Diff(want, got)
	if strings.Join(d, ",") != "image.registry,spec.components.apiServer,spec.components.iamServer,spec.hub" {
		t.Errorf("differences from the source: %v", d)
	}
	again, _, _ := run(t, "values", "render", "-f", sourceValues, "--set", "image.registry=registry.west.example.com",
		"--set", "spec.hub=registry.west.example.com/tsb", "--role-mode", "values")
	if again != out {
		t.Error("two renders of the same file differ")
	}
}

func TestValuesRenderFromConfigAndStdin(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte("cluster: east\npair: tsb-mp\ngit: {url: https://g.example.com/f.git}\nnats: {url: nats://n:4222}\nforge: {mode: branch}\n"+"standby: {overrides: {image.registry: from-config.example.com}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	root := newRootCommand(&out, &bytes.Buffer{})
	root.SetIn(strings.NewReader("image: {registry: a}\nsecrets: {tsb: {adminPassword: fixture-x}}\n"))
	root.SetArgs([]string{"values", "render", "--config", cfg})
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out.String() != "image:\n  registry: from-config.example.com\n" {
		t.Errorf("got %q", out.String())
	}
}

func TestValuesRenderRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	bomb := filepath.Join(dir, "bomb.yaml")
	var b strings.Builder
	b.WriteString("a: &a [x,x,x,x,x,x,x,x,x]\n")
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		b.WriteString(n + ": &" + n + " [" + strings.TrimSuffix(strings.Repeat("*"+prev+",", 9), ",") + "]\n")
		prev = n
	}
	if err := os.WriteFile(bomb, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(dir, "list.yaml")
	if err := os.WriteFile(list, []byte("- a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-f", bomb}, bomb + ": decoding values"},
		{[]string{"-f", list}, "must be a map"},
		{[]string{"-f", sourceValues, "--set", "spec.dataStore.postgres.address=x:1"}, `override "spec.dataStore.postgres.address": not an allowed path`},
		{[]string{"-f", sourceValues, "--set", "novalue"}, `--set "novalue": want PATH=VALUE`},
		{[]string{"-f", sourceValues, "--role-mode", "magic"}, `--role-mode "magic"`},
		{[]string{"-f", filepath.Join(dir, "missing.yaml")}, "reading values"},
	}
	for _, tc := range tests {
		_, _, err := run(t, append([]string{"values", "render"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want %q", tc.args, err, tc.want)
		}
	}
}

// Credentials under spec or operator never reach standard output (which goes to Git): they are
// stripped and their paths, never their values, are printed on standard error; --secret-values
// refuse (or standby.secretValues in --config) refuses instead; --not-secret keeps a look-alike.
func TestValuesRenderStripsCredentials(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "mp.yaml")
	doc := `image: {registry: r.east.example.com}
spec:
  hub: r.east.example.com/tsb
  dataStore: {postgres: {address: "pg:5432", password: s3cr3t-pg}}
  components: {iamServer: {password: s3cr3t-iam}}
  identityProvider: {oidc: {clientId: mp, clientSecret: s3cr3t-oidc}}
  tokenIssuer: {jwt: {signingKeysSecret: tsb-certs, issuers: [{name: a, signingKey: tls.key}]}}
operator:
  deployment:
    env: [{name: DB_PASSWORD, value: s3cr3t-env}, {name: SESSION_TOKEN, value: s3cr3t-session}]
`
	if err := os.WriteFile(src, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(t, "values", "render", "-f", src)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "s3cr3t") || strings.Contains(errOut, "s3cr3t") {
		t.Errorf("a credential was printed:\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	for _, p := range []string{"operator.deployment.env[0].value", "operator.deployment.env[1].value", "spec.components.iamServer.password",
		"spec.dataStore.postgres.password", "spec.identityProvider.oidc.clientSecret"} {
		if !strings.Contains(errOut, "\n  "+p+"\n") {
			t.Errorf("stderr does not name %s:\n%s", p, errOut)
		}
	}
	if !strings.HasPrefix(errOut, "warning: 5 credential(s) stripped") {
		t.Errorf("stderr: %q", errOut)
	}
	for _, keep := range []string{"signingKeysSecret: tsb-certs", "signingKey: tls.key", "clientId: mp", "name: DB_PASSWORD", "address: pg:5432"} {
		if !strings.Contains(out, keep) {
			t.Errorf("output lost %q:\n%s", keep, out)
		}
	}

	out, errOut, err = run(t, "values", "render", "-f", src, "--not-secret", "operator.deployment.env[].value", "--not-secret", "spec.components.*.password")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "value: s3cr3t-env") || !strings.Contains(out, "password: s3cr3t-iam") || strings.Contains(errOut, "env[0]") ||
		!strings.HasPrefix(errOut, "warning: 2 credential(s) stripped") {
		t.Errorf("--not-secret: stdout:\n%s\nstderr:\n%s", out, errOut)
	}

	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte("cluster: east\npair: tsb-mp\ngit: {url: https://g.example.com/f.git}\nnats: {url: nats://n:4222}\nforge: {mode: branch}\n"+
		"standby: {secretValues: refuse}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"--secret-values", "refuse"}, {"--config", cfg}} {
		out, _, err := run(t, append([]string{"values", "render", "-f", src}, args...)...)
		if err == nil || out != "" {
			t.Fatalf("%v: rendered anyway:\n%s", args, out)
		}
		if !strings.Contains(err.Error(), "the values hold credentials at operator.deployment.env[0].value, operator.deployment.env[1].value, spec.components.iamServer.password") ||
			strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("%v: %v", args, err)
		}
	}
	if _, _, err := run(t, "values", "render", "-f", src, "--secret-values", "keep"); err == nil || !strings.Contains(err.Error(), `secret values "keep"`) {
		t.Errorf("--secret-values keep: %v", err)
	}
}

func TestValuesRenderRefusesDuplicateKeys(t *testing.T) {
	src := filepath.Join(t.TempDir(), "dup.yaml")
	if err := os.WriteFile(src, []byte("spec:\n  hub: a\n  organization: x\n  hub: b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "values", "render", "-f", src)
	if err == nil || !strings.Contains(err.Error(), src+`: decoding values`) || !strings.Contains(err.Error(), `key "hub" already set in map`) || out != "" {
		t.Errorf("got %v, %q", err, out)
	}
}
