package agent_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/agent"
)

const minimal = "cluster: east\npair: tsb-mp\ngit: {url: https://git.example.com/fleet.git}\nnats: {url: nats://nats:4222}\nforge: {mode: branch}\n"

// with replaces one top-level line of minimal (a key may appear only once).
func with(key, line string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(minimal), "\n") {
		if strings.HasPrefix(l, key+":") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(append(out, line), "\n") + "\n"
}

func TestLoadExample(t *testing.T) {
	t.Parallel()
	c, err := agent.Load("testdata/east.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.HeartbeatInterval.Duration != 5*time.Second || c.Postgres.MaxLag.Duration != 45*time.Second {
		t.Errorf("durations: heartbeat %s, maxLag %s", c.HeartbeatInterval.Duration, c.Postgres.MaxLag.Duration)
	}
	if diff := cmp.Diff([]string{"iam-signing-key", "tsb-iam-jwks", "tsb-certs"}, c.Secrets.Names); diff != "" {
		t.Errorf("an explicit secrets list is kept as given (-want +got):\n%s", diff)
	}
	if c.Standby.Overrides["image.registry"] != "registry.west.example.com" {
		t.Errorf("standby.overrides: %v", c.Standby.Overrides)
	}
	if !c.NATS.RequireSignedEvents || c.Forge.Kind != "gitea" || !c.SelfFence {
		t.Errorf("fields lost: %+v", c)
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := agent.Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	want := agent.Config{
		Cluster: "east", Pair: "tsb-mp",
		Kubernetes:    agent.Kubernetes{Namespace: "tsb", HelmRelease: "mp", InstallModel: "helm"},
		Secrets:       agent.Secrets{Names: []string{"iam-signing-key", "tsb-iam-jwks"}, HMACKeySecret: "mpha-hmac"},
		SealedSecrets: agent.SealedSecrets{ControllerNamespace: "kube-system", ControllerName: "sealed-secrets-controller"},
		Git:           agent.Git{URL: "https://git.example.com/fleet.git", Branch: "main", Root: "mpha", AuthSecret: "mpha-git"},
		Forge:         agent.Forge{Kind: "none", Mode: "branch"},
		NATS:          agent.NATS{URL: "nats://nats:4222"},
		Postgres:      agent.Postgres{Topology: "auto", Database: "tsb", MaxLagBytes: 16 << 20},
		Health:        agent.Health{Failures: 3, Recoveries: 3, Port: 8443},
		Alerts:        agent.Alerts{Path: "/alerts"},
		Standby: agent.Standby{ChartRepository: "https://charts.dl.tetrate.io/public/helm/charts/", RoleMode: "manifest",
			Deployments: []string{"tsb", "iam"}, RestoreCronJob: "tsb-restore", SecretValues: "strip"},
		Flux: agent.Flux{Namespace: "flux-system", Kustomization: "mpha", GitRepository: "mpha"},
	}
	want.HeartbeatInterval.Duration = 10 * time.Second
	want.Postgres.MaxLag.Duration = 30 * time.Second
	want.Postgres.MaxImportAge.Duration = 25 * time.Hour
	want.Postgres.Replication, want.Postgres.MaxSlotAge.Duration = "none", time.Hour
	want.Health.Interval.Duration = 10 * time.Second
	want.Health.Timeout.Duration = 5 * time.Second
	want.Alerts.Remember.Duration = 24 * time.Hour
	want.Forge.MergePollInterval.Duration = 30 * time.Second
	if diff := cmp.Diff(want, *c); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	gen, err := agent.Parse([]byte(with("kubernetes", "kubernetes: {installModel: generic}")))
	if err != nil {
		t.Fatal(err)
	}
	if len(gen.Secrets.Names) != 12 {
		t.Errorf("generic model exports %d secrets by default, want 12: %v", len(gen.Secrets.Names), gen.Secrets.Names)
	}
}

// Every problem is reported with its key; nothing that may be a credential is echoed.
func TestValidationNamesTheKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"unknown key", minimal + "colour: blue\n", []string{`unknown field "colour"`}},
		{"unknown nested key", minimal + "postgres: {maxlag: 3s}\n", []string{`unknown field "postgres.maxlag"`}},
		{"duplicate key", minimal + "cluster: west\n", []string{`"cluster" already set`}},
		{"missing everything", "{}", []string{"cluster: required", "pair: required", "git.url: required", "nats.url: required", "forge.mode:"}},
		{"bad enums", minimal + "kubernetes: {installModel: rpm}\npostgres: {topology: magic}\n",
			[]string{`kubernetes.installModel: "rpm"`, `postgres.topology: "magic"`}},
		{"bad names", strings.Replace(minimal, "cluster: east", "cluster: East_1", 1) + "secrets: {names: [ok, ../etc]}\n",
			[]string{`cluster: cluster name "East_1"`, "secrets.names[1]"}},
		{"bad durations", minimal + "heartbeatInterval: -1s\nhealth: {failures: -2}\n", []string{"heartbeatInterval: must be a positive", "health.failures"}},
		{"merge poll interval", with("forge", "forge: {kind: gitea, url: https://g, tokenSecret: t, mergePollInterval: -5s}"),
			[]string{"forge.mergePollInterval: must be a positive"}},
		{"forge needs url and token", with("forge", "forge: {kind: github, mode: pr}"), []string{"forge.url: required", "forge.tokenSecret"}},
		{"signed events need keys", with("nats", "nats: {url: nats://n:4222, requireSignedEvents: true}"), []string{"nats.trustedKeys"}},
		{"root outside repo", with("git", "git: {url: https://g/x.git, root: ../up}"), []string{"git.root"}},
		{"standby overrides outside the allow-list", minimal + "standby: {overrides: {spec.dataStore.postgres.address: x:5432}, roleMode: magic}\n",
			[]string{`standby.overrides: override "spec.dataStore.postgres.address": not an allowed path`, `standby.roleMode: "magic"`}},
		{"health probes and port", minimal + "health: {port: 70000, probes: [{name: s, path: status}], recoveries: -1, caSecret: Bad_Name}\n",
			[]string{"health.port: must be a TCP port", "health.probes[0]: needs a name and a path", "health.recoveries", "health.caSecret"}},
		{"an open alert bridge", minimal + "alerts: {enabled: true, path: /metrics}\n",
			[]string{"alerts.path", "alerts.authSecret: must name", "alerts.rules: an enabled bridge"}},
		{"bad alert rules", minimal + "alerts: {enabled: true, authSecret: am, rules: [{action: fix, target: West, mode: now}]}\n",
			[]string{"alerts.rules[0].alert", `alerts.rules[0].action: "fix"`, "alerts.rules[0].target", `alerts.rules[0].mode: "now"`}},
		{"postgres limits and promotion", minimal + "postgres: {topology: independent, maxLagBytes: -1, maxImportAge: 0s, promoteOnFailover: true, database: " +
			strings.Repeat("d", 64) + "}\n", []string{"postgres.maxLagBytes: must be positive", `postgres.promoteOnFailover: promotes a streaming replica: not for topology "independent"`,
			"postgres.promoteOnFailover: needs postgres.dsnSecret", "postgres.database: must be a Postgres database name"}},
		{"postgres sync before a failover", minimal + "postgres: {topology: streaming, syncOnFailover: true, dsnSecret: mpha-postgres}\n",
			[]string{`postgres.syncOnFailover: copies between independent databases: not for topology "streaming"`,
				"postgres.syncOnFailover: needs postgres.dsnSecret (the copy's target) and postgres.peerDSNSecret"}},
		{"logical replication's needs", minimal + "postgres: {topology: streaming, replication: logical, maxSlotAge: -1s}\n",
			[]string{`postgres.replication: logical replicates between independent servers: not for topology "streaming"`, "postgres.maxSlotAge: must be a positive"}},
		{"logical replication without DSNs", minimal + "postgres: {replication: logical, dsnSecret: mpha-postgres}\n",
			[]string{"postgres.replication: logical needs postgres.dsnSecret (this site's database) and postgres.peerDSNSecret"}},
		{"logical replication or a sync", minimal + "postgres: {replication: logical, dsnSecret: a, peerDSNSecret: b, syncOnFailover: true}\n",
			[]string{"postgres.syncOnFailover: copies the whole database before a failover; with replication logical the standby follows continually: choose one"}},
		{"logical replication or a promotion", minimal + "postgres: {replication: logical, dsnSecret: a, peerDSNSecret: b, promoteOnFailover: true}\n",
			[]string{"postgres.promoteOnFailover: promotes a streaming replica; with replication logical the subscription is promoted: choose one"}},
		{"unknown replication", minimal + "postgres: {replication: physical}\n", []string{`postgres.replication: "physical"`}},
		{"wrong scheme", with("git", "git: {url: ftp://g/x.git}"), []string{`git.url: want a [https http ssh] URL`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := agent.Parse([]byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// The errors a person sees for a missing key or a value of the wrong form: the key's path and
// what is wrong in plain words, not a regular expression nor Go's type names.
func TestErrorTexts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc string
		want      string
	}{
		{"missing cluster", strings.Replace(minimal, "cluster: east\n", "", 1), "cluster: required"},
		{"empty cluster", strings.Replace(minimal, "cluster: east", `cluster: ""`, 1), "cluster: required"},
		{"missing pair", strings.Replace(minimal, "pair: tsb-mp\n", "", 1), "pair: required"},
		{"missing git url", with("git", "git: {branch: main}"), "git.url: required"},
		{"a duration that does not parse", minimal + "heartbeatInterval: banana\n", `decoding config: heartbeatInterval: invalid duration "banana"`},
		{"a nested duration", minimal + "health: {timeout: soon}\n", `decoding config: health.timeout: invalid duration "soon"`},
		{"a number for a duration", minimal + "postgres: {maxLag: 30}\n", `decoding config: postgres.maxLag: want a duration such as "10s" or "1m30s", got the number 30`},
		{"a string for an integer", minimal + "health: {failures: three}\n", "decoding config: health.failures: want an integer (64 bits), got a string"},
		{"a list for a string", with("git", "git: {url: https://g/x.git, branch: [main]}"), "decoding config: git.branch: want a string, got a list"},
		{"a list element", minimal + "secrets: {names: [a, {b: c}]}\n", "decoding config: secrets.names[1]: want a string, got a map"},
		{"a map for a bool", minimal + "selfFence: {yes: no}\n", "decoding config: selfFence: want true or false, got a map"},
		{"a list for the document", "- cluster\n", "decoding config: the document: want a map, got a list"},
		{"a value for a section", minimal + "postgres: streaming\n", "decoding config: postgres: want a map, got a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := agent.Parse([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			for _, noise := range []string{"regex", "Go struct field", "time: ", "json: "} {
				if strings.Contains(err.Error(), noise) {
					t.Errorf("error %q holds %q", err, noise)
				}
			}
		})
	}
}

// A config file over the size limit is refused after reading at most the limit: a 1 GiB sparse
// file (and an endless device) takes no time and no memory.
func TestLoadRefusesAHugeFileQuickly(t *testing.T) {
	t.Parallel()
	huge := filepath.Join(t.TempDir(), "huge.yaml")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(minimal + "# "); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{huge, "/dev/zero"} {
		start := time.Now()
		_, err := agent.Load(path)
		if !errors.Is(err, agent.ErrConfigTooLarge) || !strings.Contains(err.Error(), "larger than the limit of 1048576 bytes (1 MiB)") {
			t.Errorf("%s: %v, want the size limit named", path, err)
		}
		if _, err := agent.LoadWithOverrides(path, []string{"forge.mode=branch"}); !errors.Is(err, agent.ErrConfigTooLarge) {
			t.Errorf("%s with overrides: %v", path, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: refused after %s: it was read, not refused", path, d)
		}
	}
	// Just at the limit is fine (padded with a comment).
	at := filepath.Join(t.TempDir(), "at.yaml")
	pad := agent.MaxConfigSize - len(minimal) - 3
	if err := os.WriteFile(at, []byte(minimal+"# "+strings.Repeat("x", pad)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.Load(at); err != nil {
		t.Errorf("a file of exactly the limit: %v", err)
	}
	if _, err := agent.Parse(make([]byte, agent.MaxConfigSize+1)); !errors.Is(err, agent.ErrConfigTooLarge) {
		t.Errorf("Parse: %v", err)
	}
}

func TestLoadWithOverridesRefusesDuplicateKeys(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "dup.yaml")
	if err := os.WriteFile(p, []byte(minimal+"cluster: west\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.LoadWithOverrides(p, []string{"forge.mode=branch"}); err == nil || !strings.Contains(err.Error(), `key "cluster" already set`) {
		t.Errorf("got %v", err)
	}
}

func TestStandbySecretValues(t *testing.T) {
	t.Parallel()
	c, err := agent.Parse([]byte(minimal + "standby: {secretValues: refuse, notSecret: [\"*Token\", \"spec.x[].y\"]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := c.Standby.RenderOptions()
	if o.SecretValues != "refuse" || len(o.NotSecret) != 2 {
		t.Errorf("render options: %+v", o)
	}
	_, err = agent.Parse([]byte(minimal + "standby: {secretValues: keep, notSecret: [a..b]}\n"))
	for _, w := range []string{`standby.secretValues: "keep" is not one of [strip refuse]`, `standby.notSecret: "a..b": empty path segment`} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("got %v, want %q", err, w)
		}
	}
}

func TestCredentialsInURLsAreRefusedWithoutEchoingThem(t *testing.T) {
	t.Parallel()
	const token = "ghp_S3cretT0ken"
	_, err := agent.Parse([]byte(strings.Replace(minimal, "https://git.example.com", "https://bot:"+token+"@git.example.com", 1)))
	if err == nil || !strings.Contains(err.Error(), "git.url: holds a password") {
		t.Fatalf("err = %v, want a refusal naming git.url", err)
	}
	_, err2 := agent.Parse([]byte(strings.Replace(minimal, "https://git.example.com", "https://bot:"+token+"@git.example.com:bad port", 1)))
	for _, e := range []error{err, err2} {
		if e != nil && strings.Contains(e.Error(), token) {
			t.Errorf("the error echoes the token: %v", e)
		}
	}
}

// FuzzParse: no input panics, and a configuration that parses survives format → parse unchanged.
func FuzzParse(f *testing.F) {
	example, err := os.ReadFile("testdata/east.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{string(example), minimal, "{}", "cluster: [", "heartbeatInterval: 1h\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := agent.Parse(b)
		if err != nil {
			return
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		again, err := agent.Parse(out)
		if err != nil {
			t.Fatalf("formatted config does not parse: %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, again); diff != "" {
			t.Errorf("format → parse changed the config (-first +second):\n%s", diff)
		}
	})
}

// --set overrides apply to the file before it is validated: values are typed as Helm types
// them, and an unknown key is refused with its name, like in the file.
func TestLoadWithOverrides(t *testing.T) {
	t.Parallel()
	c, err := agent.LoadWithOverrides("testdata/east.yaml", []string{"forge.mode=branch", "health.failures=5",
		"health.interval=30s", "selfFence=false", "secrets.names={iam-signing-key,tsb-iam-jwks}"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Forge.Mode != "branch" || c.Health.Failures != 5 || c.Health.Interval.Duration != 30*time.Second || c.SelfFence ||
		len(c.Secrets.Names) != 2 || c.Cluster != "east" {
		t.Errorf("overrides not applied: %+v", c)
	}
	for _, tc := range []struct{ set, want string }{
		{"colour=blue", `unknown field "colour"`},
		{"health.failures=0x", "health.failures"},
		{"forge.mode=sideways", `forge.mode: "sideways"`},
	} {
		if _, err := agent.LoadWithOverrides("testdata/east.yaml", []string{tc.set}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--set %s: %v, want an error with %q", tc.set, err, tc.want)
		}
	}
}
