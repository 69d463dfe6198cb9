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
