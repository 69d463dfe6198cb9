package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"
)

// run executes the CLI in-process, as main would, and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCommand(&out, &errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

func TestVersion(t *testing.T) {
	out, _, err := run(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "mpha ") || !strings.Contains(out, "go1.") {
		t.Errorf("version printed %q", out)
	}
	out, _, err = run(t, "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]string
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("version -o json is not JSON: %v\n%s", err, out)
	}
	for _, k := range []string{"version", "goVersion", "platform"} {
		if info[k] == "" {
			t.Errorf("version -o json lacks %q: %s", k, out)
		}
	}
}

func TestGlobalFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad log format", []string{"--log-format", "xml", "version"}, nil, `log format "xml"`},
		{"bad log level", []string{"--log-level", "loud", "version"}, nil, `log level "loud"`},
		{"bad level from env", []string{"version"}, map[string]string{"MPHA_LOG_LEVEL": "loud"}, `log level "loud"`},
		{"bad output", []string{"version", "-o", "yaml"}, nil, `--output "yaml"`},
		{"unknown command", []string{"frobnicate"}, nil, `unknown command "frobnicate"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, _, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// A flag on the command line wins over MPHA_* in the environment.
func TestFlagOverridesEnv(t *testing.T) {
	t.Setenv("MPHA_LOG_LEVEL", "loud")
	if _, _, err := run(t, "--log-level", "debug", "version"); err != nil {
		t.Errorf("the flag did not override the environment: %v", err)
	}
}

// --kubeconfig and --context select a cluster the way kubectl does; MPHA_CONTEXT works too.
func TestKubeconfigAndContext(t *testing.T) {
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	const cfg = `apiVersion: v1
kind: Config
clusters:
- {name: east, cluster: {server: "https://east.example:6443"}}
- {name: west, cluster: {server: "https://west.example:6443"}}
users:
- {name: u, user: {token: t}}
contexts:
- {name: east, context: {cluster: east, user: u}}
- {name: west, context: {cluster: west, user: u}}
current-context: east
`
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"current context", []string{"--kubeconfig", kc}, nil, "https://east.example:6443"},
		{"--context", []string{"--kubeconfig", kc, "--context", "west"}, nil, "https://west.example:6443"},
		{"env", nil, map[string]string{"MPHA_KUBECONFIG": kc, "MPHA_CONTEXT": "west"}, "https://west.example:6443"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var got string
			o := &globalOptions{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}
			root := newRoot(o)
			root.AddCommand(&cobra.Command{Use: "probe", RunE: func(*cobra.Command, []string) error {
				c, err := o.restConfig()
				if err != nil {
					return err
				}
				got = c.Host
				return nil
			}})
			root.SetArgs(append(tc.args, "probe"))
			if err := root.Execute(); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("server (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := (&globalOptions{kubeconfig: kc, context: "nope"}).restConfig(); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("an unknown context: err = %v, want one naming it", err)
	}
}

func TestConfigCheck(t *testing.T) {
	out, _, err := run(t, "config", "check", "--config", "../../agent/testdata/east.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cluster: east", "maxLag: 45s", "hmacKeySecret: mpha-hmac"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("cluster: east\ncolour: blue\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "config", "check", "--config", bad); err == nil || !strings.Contains(err.Error(), `unknown field "colour"`) {
		t.Errorf("bad config: err = %v, want the unknown key named", err)
	}
	if _, _, err := run(t, "config", "check"); err == nil || !strings.Contains(err.Error(), "--config is required") {
		t.Errorf("no --config: err = %v", err)
	}
}

// The file config check reads is its input document: -f/--filename names it as for the other
// commands, and - is standard input.
func TestConfigCheckFilename(t *testing.T) {
	const east = "../../agent/testdata/east.yaml"
	want, _, err := run(t, "config", "check", "--config", east)
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"-f", east}, {"--filename", east}, {"--config", east, "-f", east}} {
		got, _, err := run(t, append([]string{"config", "check"}, args...)...)
		if err != nil || got != want {
			t.Errorf("config check %v: err %v, output differs from --config's: %s", args, err, cmp.Diff(want, got))
		}
	}
	b, err := os.ReadFile(east)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	root := newRootCommand(&out, &bytes.Buffer{})
	root.SetIn(bytes.NewReader(b))
	root.SetArgs([]string{"config", "check", "-f", "-"})
	if err := root.ExecuteContext(context.Background()); err != nil || out.String() != want {
		t.Errorf("config check -f -: err %v, output differs: %s", err, cmp.Diff(want, out.String()))
	}
	if _, _, err := run(t, "config", "check", "--config", east, "-f", "other.yaml"); err == nil || !strings.Contains(err.Error(), "give one") {
		t.Errorf("--config and -f disagreeing: err = %v", err)
	}
}
