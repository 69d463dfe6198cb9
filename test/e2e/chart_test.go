//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/agent/readiness"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// The agents run as the chart installs them: release mpha in the agent's namespace.
const (
	chartDir    = "../../charts/mpha"
	releaseName = "mpha"
)

// agentValues is s's values file for the mpha chart, shaped like
// manifests/fleet/clusters/<cluster>/mpha-agent/values.yaml: config holds the agent's
// configuration (agentConfig: add keys there and they flow through), the rest are the chart's
// own settings the drill needs (short leases, Git over plain http).
func (p *pair) agentValues(t testing.TB, s *site) map[string]any {
	t.Helper()
	return map[string]any{
		"config":                  configValues(t, p.agentConfig(s)),
		"leaderElection":          map[string]any{"leaseDuration": "4s", "renewDeadline": "3s", "retryPeriod": "500ms"},
		"logFormat":               "json",
		"insecureHTTPCredentials": true,
	}
}

// configValues is c as a user writes it under config: without its empty keys.
func configValues(t testing.TB, c agent.Config) map[string]any {
	t.Helper()
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return pruneEmpty(m)
}

// rendered is what the chart renders for one cluster, in the pieces the drill uses.
type rendered struct {
	// config is config.yaml of the agent's ConfigMap: the file a pod mounts.
	config []byte
	// container is the Deployment's agent container: its args and env.
	container corev1.Container
	// serviceAccount names the agent's ServiceAccount.
	serviceAccount string
	// rbac are the ServiceAccount, Role and RoleBinding documents, as Helm would apply them.
	rbac [][]byte
}

// renderChart renders charts/mpha from the values file at path as `helm template` does (the
// values schema included), into the agent's namespace.
func renderChart(t testing.TB, valuesFile string) rendered {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	vals, err := chartutil.ReadValuesFile(valuesFile)
	if err != nil {
		t.Fatalf("reading %s: %v", valuesFile, err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: releaseName, Namespace: agentNS, IsInstall: true}, nil)
	if err != nil {
		t.Fatalf("the chart refuses %s: %v", valuesFile, err)
	}
	files, err := engine.Render(ch, rv)
	if err != nil {
		t.Fatalf("rendering the chart with %s: %v", valuesFile, err)
	}
	var r rendered
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !strings.HasSuffix(name, ".yaml") || strings.Contains(name, "/_") {
			continue
		}
		for _, doc := range splitDocs(t, name, files[name]) {
			r.add(t, name, doc)
		}
	}
	if r.config == nil || len(r.container.Args) == 0 || r.serviceAccount == "" || len(r.rbac) < 5 {
		t.Fatalf("the chart rendered no ConfigMap, Deployment, ServiceAccount or Roles with %s", valuesFile)
	}
	return r
}

// add keeps what the drill needs of one rendered object.
func (r *rendered) add(t testing.TB, file string, doc []byte) {
	t.Helper()
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	switch meta.Kind {
	case "ConfigMap":
		var cm corev1.ConfigMap
		if err := yaml.Unmarshal(doc, &cm); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		r.config = []byte(cm.Data["config.yaml"])
	case "Deployment":
		var d appsv1.Deployment
		if err := yaml.Unmarshal(doc, &d); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		r.container = d.Spec.Template.Spec.Containers[0]
	case "ServiceAccount":
		var sa corev1.ServiceAccount
		if err := yaml.Unmarshal(doc, &sa); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		r.serviceAccount = sa.Name
		r.rbac = append(r.rbac, doc)
	case "Role", "RoleBinding":
		r.rbac = append(r.rbac, doc)
	}
}

func splitDocs(t testing.TB, file, body string) [][]byte {
	t.Helper()
	var out [][]byte
	rd := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(body)))
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if len(bytes.TrimSpace(doc)) > 0 {
			out = append(out, doc)
		}
	}
}

// chartAgent is how startAgent runs s's agent: the chart rendered from s's values file, its
// ServiceAccount and Roles installed in s, the ConfigMap's config.yaml as the agent's file, and
// the Deployment's args and env adapted to a process outside a pod: the config file's path,
// listen, and a kubeconfig holding a token of the chart's ServiceAccount (what a pod's mounted
// token is), so the agent has only what the chart grants. It returns the args and env.
func (p *pair) chartAgent(t *testing.T, s *site, listen string) (args, env []string) {
	t.Helper()
	valuesFile := filepath.Join(p.dir, s.name+"-values.yaml")
	b, err := yaml.Marshal(p.agentValues(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(valuesFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := renderChart(t, valuesFile)
	if _, err := agent.Parse(r.config); err != nil {
		t.Fatalf("the agent refuses the chart's config.yaml: %v\n%s", err, r.config)
	}
	if err := os.WriteFile(s.config, r.config, 0o600); err != nil {
		t.Fatal(err)
	}
	s.cluster.Apply(t, r.rbac...)
	kubeconfig := p.serviceAccountKubeconfig(t, s, r.serviceAccount)

	for _, a := range r.container.Args {
		switch {
		case strings.HasPrefix(a, "--config="):
			a = "--config=" + s.config
		case strings.HasPrefix(a, "--listen="):
			a = "--listen=" + listen
		}
		args = append(args, a)
	}
	args = append(args, "--kubeconfig="+kubeconfig)
	for _, e := range r.container.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			switch e.ValueFrom.FieldRef.FieldPath {
			case "metadata.namespace":
				v = agentNS
			case "metadata.name":
				v = releaseName + "-" + s.name + "-0" // a pod's name
			default:
				t.Fatalf("the chart's Deployment sets %s from %s, which the drill does not know", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		} else if e.ValueFrom != nil {
			t.Fatalf("the chart's Deployment sets %s from a source the drill does not know", e.Name)
		}
		env = append(env, e.Name+"="+v)
	}
	return args, env
}

// serviceAccountKubeconfig writes a kubeconfig for s's API server that authenticates as the
// ServiceAccount sa of the agent's namespace, with a token from the TokenRequest API (as the
// kubelet mounts one), and returns its path. The token is added to the leak scan.
func (p *pair) serviceAccountKubeconfig(t *testing.T, s *site, sa string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
	defer cancel()
	// Longer than any drill: a pod's kubelet would refresh it, nothing here does.
	ttl := int64((2 * time.Hour).Seconds())
	tr, err := s.cluster.Clientset.CoreV1().ServiceAccounts(agentNS).CreateToken(ctx, sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("%s: a token for ServiceAccount %s/%s: %v", s.name, agentNS, sa, err)
	}
	p.leaks.Add([]byte(tr.Status.Token))
	dir := filepath.Join(p.dir, s.name+"-serviceaccount")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	name := s.name + "-" + sa
	cfg.Clusters[s.name] = &clientcmdapi.Cluster{Server: s.cluster.Config.Host, CertificateAuthorityData: s.cluster.CA}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{TokenFile: tokenFile}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: s.name, AuthInfo: name, Namespace: agentNS}
	cfg.CurrentContext = name
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	// The token answers as the ServiceAccount, not as an administrator.
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkIdentity(ctx, rc, fmt.Sprintf("system:serviceaccount:%s:%s", agentNS, sa)); err != nil {
		t.Fatalf("%s: %v", s.name, err)
	}
	return path
}

// checkIdentity checks that rc authenticates as user and is not allowed what the chart never
// grants (listing the management plane's Secrets).
func checkIdentity(ctx context.Context, rc *rest.Config, user string) error {
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	who, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("who the token is: %w", err)
	}
	if got := who.Status.UserInfo.Username; got != user {
		return fmt.Errorf("the token authenticates as %q, want %q", got, user)
	}
	review, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: mpNS, Verb: "list", Resource: "secrets"}}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("reviewing the token's access: %w", err)
	}
	if review.Status.Allowed {
		return fmt.Errorf("%s may list the Secrets in %s: not the chart's least privilege", user, mpNS)
	}
	return nil
}

// The values file each agent is configured from renders, through the chart and its schema, into
// a config.yaml the agent loads with the drill's settings, a Deployment whose args carry the
// drill's lease timings, and the RBAC the agent runs under. No rig: it fails fast on a key the
// schema refuses.
func TestAgentValues(t *testing.T) {
	p := &pair{dir: t.TempDir(), gitURL: "http://127.0.0.1:3000/mpha/fleet.git",
		gitea: &testrig.Gitea{URL: "http://127.0.0.1:3000/"}, nats: &testrig.NATS{URL: "nats://127.0.0.1:4222"},
		probe: httptest.NewUnstartedServer(nil)}
	p.probe.URL = "http://127.0.0.1:8443/"
	s := &site{name: "west", sealed: &testrig.SealedSecrets{CertURL: "http://127.0.0.1:8081/v1/cert.pem"}}
	valuesFile := filepath.Join(p.dir, "values.yaml")
	b, err := yaml.Marshal(p.agentValues(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(valuesFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := renderChart(t, valuesFile)
	cfg, err := agent.Parse(r.config)
	if err != nil {
		t.Fatalf("the agent refuses the chart's config.yaml: %v\n%s", err, r.config)
	}
	want := p.agentConfig(s)
	if cfg.Cluster != "west" || cfg.Git.URL != want.Git.URL || cfg.SealedSecrets.CertURL != want.SealedSecrets.CertURL ||
		cfg.HeartbeatInterval != want.HeartbeatInterval || cfg.Forge.Kind != "gitea" || cfg.NATS.URL != want.NATS.URL {
		t.Errorf("config.yaml lost the drill's settings:\n%s", r.config)
	}
	for _, a := range []string{"agent", "--lease-duration=4s", "--renew-deadline=3s", "--retry-period=500ms",
		"--log-format=json", "--insecure-http-credentials", "--leader-elect=true"} {
		if !slices.Contains(r.container.Args, a) {
			t.Errorf("the Deployment's args %q lack %s", r.container.Args, a)
		}
	}
	if r.serviceAccount != releaseName {
		t.Errorf("ServiceAccount %q, want %q", r.serviceAccount, releaseName)
	}
}

// rbacSuffices: the agents ran every step as the chart's ServiceAccount, and the API server
// refused them nothing. The agents log a denied request (and retry or carry on), so a missing
// grant would otherwise only slow a step down: their logs must hold no "forbidden".
func (p *pair) rbacSuffices(t *testing.T) {
	for _, s := range p.sites() {
		raw, err := os.ReadFile(s.agent.LogPath())
		if err != nil {
			t.Fatal(err)
		}
		var denied []string
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.Contains(strings.ToLower(line), "forbidden") {
				denied = append(denied, line)
			}
		}
		if len(raw) == 0 {
			t.Errorf("%s's agent logged nothing", s.name)
		}
		if len(denied) > 0 {
			t.Errorf("%s's agent was refused %d request(s) under the chart's RBAC, e.g.:\n%s", s.name, len(denied),
				strings.Join(denied[:min(len(denied), 5)], "\n"))
		}
	}
	p.say("Both agents ran every step as ServiceAccount %s/%s with only the chart's Roles: no request refused", agentNS, releaseName)
}

// managedFix (before step c): like a real install, east's own TSB Secrets do not let the
// sealed-secrets controller replace them, so after a failover west's exports could not reach
// them. `mpha doctor` warns (secrets-managed), names exactly the exported ones, and prints the
// fix; the fix is applied as printed (its kubectl line read back) and doctor passes the check.
// Step e proves the fix suffices: west's exports replace east's copies.
func (p *pair) managedFix(t *testing.T) {
	res := p.doctorCheck(t, readiness.SecretsManaged)
	prefix := "on east (active), sealed-secrets may not replace " + strings.Join(exported, " and ")
	if res.Status != readiness.Warn || !strings.Contains(res.Evidence, prefix) || strings.Contains(res.Evidence, "west") {
		t.Fatalf("doctor's %s: %s: %s; want a warning naming east's %v only", res.Check, res.Status, res.Evidence, exported)
	}
	fix, ok := strings.CutSuffix(res.Evidence[strings.Index(res.Evidence, "fix: ")+len("fix: "):], " (in east)")
	if !ok {
		t.Fatalf("doctor's fix does not name the cluster: %s", res.Evidence)
	}
	annotate(t, p.ctx, p.east, fix)
	p.say("`mpha doctor` warned that east's %v are not managed by sealed-secrets; applied its fix `%s`", exported, fix)
	if res := p.doctorCheck(t, readiness.SecretsManaged); res.Status != readiness.Pass {
		t.Fatalf("after the fix, doctor's %s: %s: %s", res.Check, res.Status, res.Evidence)
	}
}

// doctorCheck runs `mpha doctor` east → west and returns one check's result.
func (p *pair) doctorCheck(t *testing.T, check string) readiness.Result {
	t.Helper()
	env := []string{"KUBECONFIG=" + p.east.cluster.Kubeconfig + ":" + p.west.cluster.Kubeconfig}
	out, code := p.cli(t, env, "doctor", "--active", "east", "--standby", "west", "--floating-fqdn", floatingFQDN, "-o", "json")
	// The report is the first JSON value; a failing doctor says so on stderr after it.
	var rep readiness.Report
	if err := json.NewDecoder(strings.NewReader(out)).Decode(&rep); err != nil {
		t.Fatalf("mpha doctor exited %d; -o json: %v\n%s", code, err, out)
	}
	for _, r := range rep.Checks {
		if r.Check == check {
			return r
		}
	}
	t.Fatalf("doctor ran no %s check:\n%s", check, out)
	return readiness.Result{}
}

// annotate does what `kubectl -n NS annotate secret NAME... KEY=VALUE` does, through the admin
// client (no kubectl here); anything else in line fails the test.
func annotate(t *testing.T, ctx context.Context, s *site, line string) {
	t.Helper()
	f := strings.Fields(line)
	if len(f) < 7 || f[0] != "kubectl" || f[1] != "-n" || f[3] != "annotate" || f[4] != "secret" {
		t.Fatalf("not a kubectl annotate line: %q", line)
	}
	key, value, ok := strings.Cut(f[len(f)-1], "=")
	if !ok {
		t.Fatalf("%q sets no annotation", line)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: value}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range f[5 : len(f)-1] {
		if _, err := s.cluster.Clientset.CoreV1().Secrets(f[2]).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
	}
}
