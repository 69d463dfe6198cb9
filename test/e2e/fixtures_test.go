//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/role"
	"github.com/mpha-dev/mpha/gitops/seal/sealtest"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/helmtest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

var (
	dnsEndpoints  = schema.GroupVersionResource{Group: "externaldns.k8s.io", Version: "v1alpha1", Resource: "dnsendpoints"}
	helmReleases  = schema.GroupVersionResource{Group: "helm.toolkit.fluxcd.io", Version: "v2", Resource: "helmreleases"}
	sealedSecrets = schema.GroupVersionResource{Group: "bitnami.com", Version: "v1alpha1", Resource: "sealedsecrets"}
)

// The TSB stand-ins' shapes: what role.yaml must repeat from the live objects.
var (
	mpDeployments  = []string{"tsb", "iam"}
	restoreCronJob = role.Restore{Name: "tsb-restore", Schedule: "*/15 * * * *"}
)

// fixtures creates what TSB would have in s: namespaces, the TSB secrets (east holds all of
// them; west only its own certificates, issued by the same CA, and waits for the exported ones),
// the tsb and iam Deployments at 1, the tsb-restore CronJob, and on east the MP's Helm release.
func (p *pair) fixtures(t *testing.T, s *site, ca *sealtest.CA) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
	defer cancel()
	cs := s.cluster.Clientset
	for _, ns := range []string{mpNS, agentNS} {
		s.cluster.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+ns+"\n"))
	}
	site := sealtest.Site{Namespace: mpNS, SigningKid: "iam-key-2026-1", JWKSKid: "jwks-2026-1", CA: ca,
		DNSNames: []string{s.fqdn, floatingFQDN}}
	own := map[string]bool{"tsb-certs": true, "xcp-central-cert": true} // what west holds before the export
	if s == p.west && p.opts.westOwnKey {
		site.SigningKid, own["iam-signing-key"] = westOwnKid, true
	}
	if s == p.west && p.opts.westCA {
		site.CA = sealtest.NewCA(t, "west's own CA")
	}
	for _, sec := range site.Secrets(t, p.leaks) {
		if s == p.west && !own[sec.Name] {
			continue
		}
		// Like a real install's, none says sealed-secrets may replace it: before step c, doctor
		// finds that and its fix is applied (managedFix).
		if _, err := cs.CoreV1().Secrets(mpNS).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: creating secret %s: %v", s.name, sec.Name, err)
		}
	}
	for _, name := range mpDeployments {
		if _, err := cs.AppsV1().Deployments(mpNS).Create(ctx, deployment(name), metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: creating Deployment %s: %v", s.name, name, err)
		}
	}
	if _, err := cs.BatchV1().CronJobs(mpNS).Create(ctx, cronJob(), metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: creating CronJob %s: %v", s.name, restoreCronJob.Name, err)
	}
	if s == p.east {
		vals := helmtest.Values()
		for _, v := range []string{"fixture-admin-password", "fixture-postgres-password"} {
			p.leaks.Add([]byte(v))
		}
		rel := helmtest.Install(t, s.cluster.Kubeconfig, mpNS, "mp", vals)
		p.say("Cluster east: Helm release %s of the fixture managementplane chart", helmtest.String(rel))
	}
}

func deployment(name string) *appsv1.Deployment {
	one := int32(1)
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: mpNS, Labels: labels},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "tetrate/" + name + ":fixture"}}}}},
	}
}

func cronJob() *batchv1.CronJob {
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: restoreCronJob.Name, Namespace: mpNS},
		Spec: batchv1.CronJobSpec{Schedule: restoreCronJob.Schedule, JobTemplate: batchv1.JobTemplateSpec{
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "restore", Image: "tetrate/tsb-restore:fixture"}}}}}}},
	}
}

// bootstrap is the repository as the platform team seeds it (manifests/ of the delivery issue):
// pair.yaml with east active and the floating record's TTL (floatingTTL), the floating name on
// east with that TTL, west's standby role naming its restore job (whose shape only a person knows
// before the first failover), and a folder per cluster for Flux. It returns the commit.
func (p *pair) bootstrap(t *testing.T) string {
	t.Helper()
	l := p.layout
	pr := gitops.Pair{APIVersion: gitops.PairAPIVersion, Kind: gitops.PairKind, Name: pairName, FloatingFQDN: floatingFQDN,
		FloatingTTL: &metav1.Duration{Duration: floatingTTL},
		Clusters:    []gitops.ClusterRef{{Name: "east", MPFQDN: p.east.fqdn}, {Name: "west", MPFQDN: p.west.fqdn}},
		Active:      "east", Epoch: 1}
	pairYAML, err := pr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var workloads []role.Workload
	for _, d := range mpDeployments {
		workloads = append(workloads, role.Workload{Name: d, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": d}}})
	}
	restore := restoreCronJob
	westRole, err := role.Standby(mpNS, workloads, &restore, false).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		l.Pair():                pairYAML,
		l.FloatingDNS():         floatingDNS(p.east.fqdn, pr.RecordTTL()),
		l.Role("west"):          westRole,
		l.Root() + "/README.md": []byte("The pair " + pairName + ", kept by mpha: see pair.yaml.\n"),
	}
	for _, s := range p.sites() {
		files[l.ClusterDir(s.name)+"/README.md"] = []byte("What Flux in " + s.name + " applies.\n")
	}
	res, err := p.repo.Apply(p.ctx, gitrepoChange(files, "Bootstrap the pair "+pairName))
	if err != nil {
		t.Fatalf("bootstrapping the repository: %v", err)
	}
	p.say("Bootstrapped %s on branch main (commit %s): pair.yaml says east is active at epoch 1, floatingTTL %s", p.gitURL, short(res.Commit), pr.RecordTTL())
	return res.Commit
}

// floatingDNS is dns/floating.yaml as mpha writes it, with pair.yaml's TTL.
func floatingDNS(target string, ttl time.Duration) []byte {
	return []byte(gitops.Header + `apiVersion: externaldns.k8s.io/v1alpha1
kind: DNSEndpoint
metadata:
  labels:
    app.kubernetes.io/managed-by: mpha
  name: mpha-floating
  namespace: ` + agentNS + `
spec:
  endpoints:
    - dnsName: ` + floatingFQDN + `
      recordTTL: ` + strconv.Itoa(int(ttl/time.Second)) + `
      recordType: CNAME
      targets:
        - ` + target + `
`)
}

// cnameTarget is the floating name's target in s's DNSEndpoint.
func cnameTarget(ctx context.Context, s *site) (string, error) {
	o, err := s.dynamic.Resource(dnsEndpoints).Namespace(agentNS).Get(ctx, "mpha-floating", metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	eps, _, _ := unstructured.NestedSlice(o.Object, "spec", "endpoints")
	for _, e := range eps {
		m, _ := e.(map[string]any)
		if m["dnsName"] == floatingFQDN {
			if ts, _ := m["targets"].([]any); len(ts) == 1 {
				return fmt.Sprint(ts[0]), nil
			}
		}
	}
	return "", fmt.Errorf("%s has no single CNAME target in %s's DNSEndpoint", floatingFQDN, s.name)
}

// agentConfig is the agent's configuration as a user writes it for s under config: in the chart's
// values file (agentValues): only the keys that differ from the defaults.
func (p *pair) agentConfig(s *site) agent.Config {
	return agent.Config{
		Cluster: s.name, Pair: pairName,
		HeartbeatInterval: metav1.Duration{Duration: 2 * time.Second},
		SealedSecrets:     agent.SealedSecrets{CertURL: s.sealed.CertURL},
		Git:               agent.Git{URL: p.gitURL, AuthSecret: "mpha-git"},
		Forge:             agent.Forge{Kind: "gitea", URL: p.gitea.URL, TokenSecret: "mpha-forge", Mode: "pr", MergePollInterval: metav1.Duration{Duration: p.opts.mergePoll}},
		NATS:              agent.NATS{URL: p.nats.URL},
		Health:            agent.Health{ProbeURL: p.probe.URL},
		Secrets:           agent.Secrets{Names: p.opts.exportNames},
		Postgres:          p.postgresConfig(),
		Standby:           agent.Standby{ChartRepository: "https://charts.example.invalid/tsb"},
	}
}

// pruneEmpty drops zero values ("", 0, false, null, "0s", empty maps and lists).
func pruneEmpty(m map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		switch x := v.(type) {
		case map[string]any:
			if x = pruneEmpty(x); len(x) > 0 {
				out[k] = x
			}
		case []any:
			if len(x) > 0 {
				out[k] = x
			}
		case string:
			if x != "" && x != "0s" {
				out[k] = x
			}
		case bool:
			if x {
				out[k] = x
			}
		case float64:
			if x != 0 {
				out[k] = x
			}
		case nil:
		default:
			out[k] = x
		}
	}
	return out
}

// startAgent writes s's agent Secrets, installs the chart's ServiceAccount and Roles, and starts
// `mpha agent` as the chart's Deployment would (chartAgent) against s's API server; it returns
// once /readyz answers.
func (p *pair) startAgent(t *testing.T, s *site) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, time.Minute)
	defer cancel()
	for name, data := range map[string]map[string][]byte{
		"mpha-git":   p.gitCreds(),
		"mpha-hmac":  {"key": p.hmacKey},
		"mpha-forge": {"token": []byte(p.gitea.Token)},
	} {
		sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: agentNS}, Data: maps.Clone(data)}
		if _, err := s.cluster.Clientset.CoreV1().Secrets(agentNS).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: creating secret %s: %v", s.name, name, err)
		}
	}
	s.config = filepath.Join(p.dir, s.name+"-agent.yaml")
	listen := freeAddr(t)
	s.agentURL = "http://" + listen
	args, env := p.chartAgent(t, s, listen)
	s.agent = testrig.StartCommand(t, testrig.Command{
		Name: "mpha-agent-" + s.name, Path: p.mpha, Args: args, Env: env,
		StopGrace: 10 * time.Second,
	})
	testrig.Eventually(t, s.name+"'s agent /readyz", time.Minute, func(ctx context.Context) error {
		select {
		case <-s.agent.Done():
			t.Fatalf("%s's agent exited; see %s", s.name, s.agent.LogPath())
		default:
		}
		return testrig.HTTPOK(ctx, s.agentURL+"/readyz")
	})
	p.say("Cluster %s: `mpha agent --config %s` runs as the chart's ServiceAccount, configured from %s (log %s)",
		s.name, s.config, filepath.Join(p.dir, s.name+"-values.yaml"), s.agent.LogPath())
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// agentLogs is everything both agents logged so far.
func (p *pair) agentLogs(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	for _, s := range p.sites() {
		if s.agent == nil {
			continue
		}
		raw, err := os.ReadFile(s.agent.LogPath())
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
	}
	return b.String()
}

// gitrepoChange is a commit by the platform team onto main.
func gitrepoChange(files map[string][]byte, message string) gitops.Change {
	return gitops.Change{Files: files, Message: message, Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "bootstrap"}}}
}

// runKubelet stands in for the controller-manager and kubelets the rig does not run: the tsb and
// iam Deployments' ready replicas follow their spec, so an MP scaled up serves (the probe and the
// split-brain detector look at ready replicas). It stops when t ends.
func (p *pair) runKubelet(t *testing.T, s *site) {
	t.Helper()
	ctx, cancel := context.WithCancel(p.ctx)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			for _, name := range mpDeployments {
				d, err := s.cluster.Clientset.AppsV1().Deployments(mpNS).Get(ctx, name, metav1.GetOptions{})
				if err != nil || d.Spec.Replicas == nil || d.Status.ReadyReplicas == *d.Spec.Replicas {
					continue // a cluster that is down, or nothing to do
				}
				n := *d.Spec.Replicas
				d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas, d.Status.UpdatedReplicas = n, n, n, n
				_, _ = s.cluster.Clientset.AppsV1().Deployments(mpNS).UpdateStatus(ctx, d, metav1.UpdateOptions{})
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}
