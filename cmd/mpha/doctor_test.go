package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/mpha-dev/mpha/agent/readiness"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/seal/sealtest"
	"github.com/mpha-dev/mpha/gitops/values"
	"github.com/mpha-dev/mpha/internal/helmtest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

const doctorFQDN = "active.tsb.example.com"

// mergeKubeconfigs writes one kubeconfig holding every cluster's context (named after it).
func mergeKubeconfigs(t *testing.T, clusters ...*testrig.Cluster) string {
	t.Helper()
	merged := clientcmdapi.NewConfig()
	for _, c := range clusters {
		cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range cfg.Clusters {
			merged.Clusters[k] = v
		}
		for k, v := range cfg.AuthInfos {
			merged.AuthInfos[k] = v
		}
		for k, v := range cfg.Contexts {
			merged.Contexts[k] = v
		}
	}
	merged.CurrentContext = clusters[0].Name
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*merged, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// putSecrets creates or replaces secrets in the tsb namespace of c.
func putSecrets(t *testing.T, ctx context.Context, c *testrig.Cluster, secrets ...*corev1.Secret) {
	t.Helper()
	api := c.Clientset.CoreV1().Secrets("tsb")
	for _, s := range secrets {
		s = s.DeepCopy()
		cur, err := api.Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			if _, err := api.Create(ctx, s, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		s.ResourceVersion = cur.ResourceVersion
		if _, err := api.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// doctorExit is the exit status main gives run's error.
func doctorExit(err error) int {
	if err == nil {
		return 0
	}
	return exitCode(err)
}

// `mpha doctor` against two real clusters with real Secrets and Helm releases: everything
// matching passes; a kid mismatch, another CA, a missing floating SAN and a self-signed issuer
// each fail root-ca or signing-key-kid with exit status 2; -o json parses; nothing secret is
// printed.
func TestDoctor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two clusters")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := testrig.StartClusters(t, "east", "west")
	east, west := cs[0], cs[1]
	kubeconfig := mergeKubeconfigs(t, east, west)
	leaks := &sealtest.Leaks{}
	ca := sealtest.NewCA(t, "shared root")
	secrets := sealtest.Site{Namespace: "tsb", SigningKid: "sig-1", JWKSKid: "jwks-1", CA: ca,
		DNSNames: []string{"mp1.tsb.example.com", "mp2.tsb.example.com", doctorFQDN}}.Secrets(t, leaks)
	byName := map[string]*corev1.Secret{}
	for _, s := range secrets {
		// As the sealed-secrets controller needs them to replace the copies after a failover.
		s.Annotations = map[string]string{seal.ManagedAnnotation: "true"}
		byName[s.Name] = s
	}
	for _, c := range cs {
		c.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tsb\n"))
		putSecrets(t, ctx, c, secrets...)
	}

	// East's release carries secrets in its values (the Helm model); west runs the rendered values
	// with its registry overridden, as the agent configuration says.
	activeValues := helmtest.Values()
	adminPassword := sealtest.Random(t, "admin-password")
	leaks.Add(adminPassword)
	activeValues["secrets"].(map[string]any)["tsb"].(map[string]any)["adminPassword"] = string(adminPassword)
	helmtest.Install(t, kubeconfig, "tsb", "mp", activeValues)
	overrides := values.Overrides{"image.registry": "registry.west.example.com"}
	rendered, err := values.Render(activeValues, values.Options{Overrides: overrides})
	if err != nil {
		t.Fatal(err)
	}
	standbyValues := rendered.Values
	westKubeconfig := west.Kubeconfig
	helmtest.Install(t, westKubeconfig, "tsb", "mp", standbyValues)
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfg, []byte(`cluster: east
pair: tsb-mp
git: {url: "https://git.example.com/fleet.git"}
nats: {url: "nats://127.0.0.1:4222"}
forge: {mode: branch}
secrets: {names: [iam-signing-key, tsb-iam-jwks, postgres-credentials]}
standby: {overrides: {image.registry: registry.west.example.com}}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--kubeconfig", kubeconfig, "doctor", "--active", "east", "--standby", "west", "--floating-fqdn", doctorFQDN, "--config", cfg}

	doctor := func(t *testing.T, wantExit int, extra ...string) (string, map[string]readiness.Result) {
		t.Helper()
		out, errOut, err := run(t, append(append([]string{}, base...), extra...)...)
		leaks.Scan(t, "doctor's output", out+errOut)
		if got := doctorExit(err); got != wantExit {
			t.Fatalf("exit status %d (%v), want %d\n%s", got, err, wantExit, out)
		}
		rep, err := jsonReport(t, extra, out)
		if err != nil {
			return out, nil
		}
		return out, rep
	}
	expect := func(t *testing.T, got map[string]readiness.Result, want map[string]readiness.Status, evidence map[string]string) {
		t.Helper()
		for _, c := range readiness.Checks() {
			w := readiness.Pass
			if s, ok := want[c]; ok {
				w = s
			}
			if got[c].Status != w {
				t.Errorf("%s: %s, want %s: %s", c, got[c].Status, w, got[c].Evidence)
			}
		}
		for c, e := range evidence {
			if !strings.Contains(got[c].Evidence, e) {
				t.Errorf("%s: evidence lacks %q: %s", c, e, got[c].Evidence)
			}
		}
	}

	t.Run("everything matches", func(t *testing.T) {
		out, _ := doctor(t, 0)
		for _, want := range []string{"CHECK", "signing-key-kid  pass", "root-ca          pass", "values-drift     pass", "east → west: pass"} {
			if !strings.Contains(out, want) {
				t.Errorf("the table lacks %q:\n%s", want, out)
			}
		}
		_, rep := doctor(t, 0, "-o", "json")
		expect(t, rep, nil, map[string]string{readiness.SecretsInSync: "3 secret(s) equal"})
	})

	t.Run("kid mismatch", func(t *testing.T) {
		s := byName["iam-signing-key"].DeepCopy()
		s.Data["kid"] = []byte("sig-west")
		putSecrets(t, ctx, west, s)
		defer putSecrets(t, ctx, west, byName["iam-signing-key"])
		out, rep := doctor(t, exitChecksFailed, "-o", "json")
		expect(t, rep, map[string]readiness.Status{readiness.SigningKeyKid: readiness.Fail, readiness.SecretsInSync: readiness.Fail},
			map[string]string{readiness.SigningKeyKid: "east (active) has sig-1, west (standby) has sig-west"})
		var parsed readiness.Report
		if err := json.Unmarshal([]byte(out), &parsed); err != nil || parsed.Status != readiness.Fail || parsed.Active != "east" {
			t.Errorf("-o json: %v %+v", err, parsed)
		}
	})

	t.Run("different CA", func(t *testing.T) {
		other := sealtest.NewCA(t, "west's own root")
		changed := reissued(t, leaks, byName, other, "mp2.tsb.example.com", doctorFQDN)
		putSecrets(t, ctx, west, changed...)
		defer putSecrets(t, ctx, west, byName["tsb-certs"], byName["xcp-central-cert"])
		_, rep := doctor(t, exitChecksFailed, "-o", "json")
		expect(t, rep, map[string]readiness.Status{readiness.RootCA: readiness.Fail},
			map[string]string{readiness.RootCA: "different root CAs: CA "})
		if e := rep[readiness.RootCA].Evidence; !strings.Contains(e, ca.Fingerprint()[:16]) || !strings.Contains(e, other.Fingerprint()[:16]) {
			t.Errorf("root-ca evidence lacks the fingerprints: %s", e)
		}
	})

	t.Run("missing floating SAN", func(t *testing.T) {
		putSecrets(t, ctx, west, reissued(t, leaks, byName, ca, "mp2.tsb.example.com")...)
		defer putSecrets(t, ctx, west, byName["tsb-certs"], byName["xcp-central-cert"])
		out, _ := doctor(t, exitChecksFailed)
		if !strings.Contains(out, "root-ca          fail") || !strings.Contains(out, "lack the floating FQDN "+doctorFQDN) {
			t.Errorf("table:\n%s", out)
		}
	})

	t.Run("selfSigned set", func(t *testing.T) {
		r, err := values.Render(activeValues, values.Options{Overrides: overrides})
		if err != nil {
			t.Fatal(err)
		}
		selfSigned := r.Values
		selfSigned["spec"].(map[string]any)["certIssuer"] = map[string]any{"selfSigned": map[string]any{}}
		helmtest.Install(t, westKubeconfig, "tsb", "mp", selfSigned)
		defer helmtest.Install(t, westKubeconfig, "tsb", "mp", standbyValues)
		_, rep := doctor(t, exitChecksFailed, "-o", "json")
		expect(t, rep, map[string]readiness.Status{readiness.RootCA: readiness.Fail, readiness.ValuesDrift: readiness.Fail},
			map[string]string{readiness.RootCA: "spec.certIssuer.selfSigned is set in west (standby)'s Helm values",
				readiness.ValuesDrift: "spec.certIssuer"})
	})

	t.Run("drift without the config's overrides", func(t *testing.T) {
		_, rep := doctor(t, exitChecksFailed, "-o", "json", "--config", "", "--secrets", "iam-signing-key")
		expect(t, rep, map[string]readiness.Status{readiness.ValuesDrift: readiness.Fail},
			map[string]string{readiness.ValuesDrift: "image.registry (values not shown)", readiness.SecretsInSync: "1 secret(s)"})
	})

	// A real install: the active's own TSB Secrets lack the managed annotation. Doctor warns
	// (exit 0), names them (never their data) and prints the fix; applying the fix clears it.
	t.Run("exported secrets not managed by sealed-secrets", func(t *testing.T) {
		var bare []*corev1.Secret
		for _, n := range []string{"iam-signing-key", "tsb-iam-jwks"} {
			s := byName[n].DeepCopy()
			s.Annotations = nil
			bare = append(bare, s)
		}
		putSecrets(t, ctx, east, bare...)
		defer putSecrets(t, ctx, east, byName["iam-signing-key"], byName["tsb-iam-jwks"])
		fix := "kubectl -n tsb annotate secret iam-signing-key tsb-iam-jwks sealedsecrets.bitnami.com/managed=true (in east)"
		out, _ := doctor(t, 0)
		if !strings.Contains(out, "secrets-managed  warn") || !strings.Contains(out, fix) {
			t.Errorf("table:\n%s", out)
		}
		_, rep := doctor(t, 0, "-o", "json")
		expect(t, rep, map[string]readiness.Status{readiness.SecretsManaged: readiness.Warn},
			map[string]string{readiness.SecretsManaged: "on east (active), sealed-secrets may not replace iam-signing-key and tsb-iam-jwks"})
		if e := rep[readiness.SecretsManaged].Evidence; strings.Contains(e, "postgres-credentials") || strings.Contains(e, "west (standby),") {
			t.Errorf("secrets-managed names a managed secret or site: %s", e)
		}

		// The printed fix, as the annotation it sets.
		for _, s := range bare {
			s.Annotations = map[string]string{seal.ManagedAnnotation: "true"}
		}
		putSecrets(t, ctx, east, bare...)
		_, rep = doctor(t, 0, "-o", "json")
		expect(t, rep, nil, nil)
	})

	t.Run("errors", func(t *testing.T) {
		for name, args := range map[string][]string{
			"no standby":      {"--kubeconfig", kubeconfig, "doctor", "--active", "east"},
			"same context":    {"--kubeconfig", kubeconfig, "doctor", "--active", "east", "--standby", "east"},
			"unknown context": {"--kubeconfig", kubeconfig, "doctor", "--active", "east", "--standby", "north"},
			"bad output":      {"--kubeconfig", kubeconfig, "doctor", "--active", "east", "--standby", "west", "-o", "yaml"},
		} {
			_, _, err := run(t, args...)
			if got := doctorExit(err); got != 1 {
				t.Errorf("%s: exit status %d (%v), want 1", name, got, err)
			}
		}
	})
}

// reissued returns copies of tsb-certs and xcp-central-cert with leaves from ca for dns.
func reissued(t *testing.T, leaks *sealtest.Leaks, byName map[string]*corev1.Secret, ca *sealtest.CA, dns ...string) []*corev1.Secret {
	t.Helper()
	var out []*corev1.Secret
	for _, n := range []string{"tsb-certs", "xcp-central-cert"} {
		s := byName[n].DeepCopy()
		crt, key := ca.Leaf(t, dns...)
		leaks.Add(key)
		s.Data["tls.crt"], s.Data["tls.key"], s.Data["ca.crt"] = crt, key, ca.PEM
		out = append(out, s)
	}
	return out
}

// jsonReport decodes doctor's -o json output into results by check.
func jsonReport(t *testing.T, args []string, out string) (map[string]readiness.Result, error) {
	t.Helper()
	if !strings.Contains(strings.Join(args, " "), "-o json") {
		return nil, errors.New("not JSON")
	}
	var rep readiness.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("-o json is not a report: %v\n%s", err, out)
	}
	byCheck := map[string]readiness.Result{}
	for _, r := range rep.Checks {
		byCheck[r.Check] = r
	}
	return byCheck, nil
}
