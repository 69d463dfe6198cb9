package readiness_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/mpha-dev/mpha/agent/readiness"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/seal/sealtest"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/gitops/values"
	"github.com/mpha-dev/mpha/internal/helmtest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

const pairYAML = `apiVersion: mpha.dev/v1alpha1
kind: Pair
name: tsb-mp
floatingFQDN: ` + floating + `
clusters: [{name: east, mpFQDN: mp1.tsb.example.com}, {name: west, mpFQDN: mp2.tsb.example.com}]
active: east
epoch: 3
`

// monitorRig is the standby "west": a real API server with the TSB secrets and a Helm release, and
// a Git repository holding what the active "east" committed for it.
type monitorRig struct {
	west    *testrig.Cluster
	writer  *gitrepo.Writer
	layout  gitops.Layout
	leaks   *sealtest.Leaks
	secrets []*corev1.Secret
}

func newMonitorRig(t *testing.T, ctx context.Context) *monitorRig {
	t.Helper()
	r := &monitorRig{west: testrig.StartCluster(t, "west"), leaks: &sealtest.Leaks{}}
	var err error
	if r.layout, err = gitops.NewLayout(""); err != nil {
		t.Fatal(err)
	}
	ca := sealtest.NewCA(t, "shared root")
	r.secrets = sealtest.Site{Namespace: "tsb", SigningKid: "sig-1", JWKSKid: "jwks-1", CA: ca,
		DNSNames: []string{"mp1.tsb.example.com", "mp2.tsb.example.com", floating}}.Secrets(t, r.leaks)

	// What east's agent committed: SealedSecrets with the public facts, and the rendered values.
	active := helmtest.Values()
	out, err := values.Render(active, values.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rendered := out.Values
	hr, err := values.Release{Name: "mp", Namespace: "tsb", Chart: helmtest.ChartName, Version: helmtest.ChartVersion,
		RepositoryURL: values.DefaultChartRepository, Values: rendered}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{r.layout.Pair(): pairYAML, r.layout.HelmRelease("west"): string(hr)}
	certPEM, _ := testrig.SealingKeyPair(t, "west")
	cert, err := seal.ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range r.secrets {
		files[r.layout.Secret("west", s.Name)] = sealedFile(t, cert, s)
	}
	srv := testrig.StartGitServer(t)
	srv.CreateRepo(t, "org/fleet.git", "main", files)
	auth, err := gitrepo.NewAuth(srv.URL("org/fleet.git"), srv.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	r.writer, err = gitrepo.New(gitrepo.Options{URL: srv.URL("org/fleet.git"), Auth: auth, AllowHTTPCredentials: true,
		Author: git.Signature{Name: "test", Email: "test@example.invalid"}})
	if err != nil {
		t.Fatal(err)
	}

	// West: the same secrets (as if unsealed), and its MP installed from the rendered values.
	for _, ns := range []string{"tsb", "mpha", "mpha-east", "mpha-run"} {
		r.west.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+ns+"\n"))
	}
	for _, s := range r.secrets {
		s = s.DeepCopy()
		s.Annotations = map[string]string{seal.ManagedAnnotation: "true"} // sealed-secrets may replace them
		if _, err := r.west.Clientset.CoreV1().Secrets("tsb").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	helmtest.Install(t, r.west.Kubeconfig, "tsb", "mp", rendered)
	return r
}

// sealedFile is what the exporter commits: the SealedSecret with the digest and the public facts.
func sealedFile(t *testing.T, cert seal.Cert, s *corev1.Secret) string {
	t.Helper()
	ss, err := seal.Seal(cert, key, s)
	if err != nil {
		t.Fatal(err)
	}
	facts, err := seal.SecretFacts(key, s)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range seal.Annotations(facts) {
		ss.Annotations[k] = v
	}
	b, err := seal.Marshal(ss)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (r *monitorRig) setKid(t *testing.T, ctx context.Context, kid string, private []byte) {
	t.Helper()
	s, err := r.west.Clientset.CoreV1().Secrets("tsb").Get(ctx, "iam-signing-key", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["kid"], s.Data["private.key"] = []byte(kid), private
	if _, err := r.west.Clientset.CoreV1().Secrets("tsb").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (r *monitorRig) events(t *testing.T, ctx context.Context, ns string) []corev1.Event {
	t.Helper()
	list, err := r.west.Clientset.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", readiness.ConfigMapName).String()})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func (r *monitorRig) report(t *testing.T, ctx context.Context, ns string) (readiness.Report, string) {
	t.Helper()
	cm, err := r.west.Clientset.CoreV1().ConfigMaps(ns).Get(ctx, readiness.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var rep readiness.Report
	if err := json.Unmarshal([]byte(cm.Data[readiness.ReportKey]), &rep); err != nil {
		t.Fatalf("the ConfigMap's report: %v\n%s", err, cm.Data[readiness.ReportKey])
	}
	return rep, cm.Data[readiness.ReportKey]
}

func metricsText(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

func statusesOf(results []readiness.Result) map[string]readiness.Status {
	out := map[string]readiness.Status{}
	for _, r := range results {
		out[r.Check] = r.Status
	}
	return out
}

// The monitor on a real cluster (the standby, west) and Git server, one rig for three parts that
// each write their status into their own namespace.
func TestMonitor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a Git server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r := newMonitorRig(t, ctx)
	t.Run("standby", func(t *testing.T) { testMonitorStandby(t, ctx, r) })
	t.Run("active", func(t *testing.T) { testMonitorActive(t, ctx, r) })
	t.Run("run", func(t *testing.T) { testMonitorRun(t, ctx, r) })
}

// On the standby: a first round that passes writes the ConfigMap and no Event; a kid change fails
// two checks with one Event each, an unchanged round adds none, the fix one Passed Event each; the
// metrics follow; nothing secret leaks.
func testMonitorStandby(t *testing.T, ctx context.Context, r *monitorRig) {
	reg := prometheus.NewRegistry()
	logs := &testrig.LogBuffer{}
	m, err := readiness.New(r.west.Clientset, r.writer, readiness.Options{
		Self: "west", StatusNamespace: "mpha", Names: []string{"iam-signing-key", "tsb-iam-jwks", "postgres-credentials"},
		Key: key, Layout: r.layout, Registerer: reg,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	round := func(want map[string]readiness.Status) []readiness.Result {
		t.Helper()
		res, err := m.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := statusesOf(res)
		for check, w := range want {
			if got[check] != w {
				t.Errorf("%s: %s, want %s (%v)", check, got[check], w, res)
			}
		}
		return res
	}
	allPass := map[string]readiness.Status{}
	for _, c := range readiness.Checks() {
		allPass[c] = readiness.Pass
	}

	// 1. Everything matches.
	res := round(allPass)
	rep, _ := r.report(t, ctx, "mpha")
	if rep.Status != readiness.Pass || rep.Active != "east" || rep.Standby != "west" || rep.At == nil || len(rep.Checks) != len(res) {
		t.Errorf("ConfigMap report: %+v", rep)
	}
	if ev := r.events(t, ctx, "mpha"); len(ev) != 0 {
		t.Errorf("a first round that passes emitted %d events", len(ev))
	}

	// 2. West's signing key is replaced (its operator generated its own): two checks fail.
	private := sealtest.Random(t, "west-own-key")
	r.leaks.Add(private)
	r.setKid(t, ctx, "sig-west", private)
	res = round(map[string]readiness.Status{readiness.SigningKeyKid: readiness.Fail, readiness.SecretsInSync: readiness.Fail, readiness.RootCA: readiness.Pass})
	ev := r.events(t, ctx, "mpha")
	if reasons := eventReasons(ev); reasons[readiness.ReasonFailed] != 2 || len(ev) != 2 {
		t.Errorf("after the change: events %v, want 2 %s", reasons, readiness.ReasonFailed)
	}
	for _, e := range ev {
		if e.Type != corev1.EventTypeWarning || e.InvolvedObject.Kind != "ConfigMap" || !strings.Contains(e.Message, "(was pass)") {
			t.Errorf("event %s: %s %s %q", e.Name, e.Type, e.InvolvedObject.Kind, e.Message)
		}
	}
	if !strings.Contains(resultOf(res, readiness.SigningKeyKid).Evidence, "west (standby) has sig-west") {
		t.Errorf("evidence: %s", resultOf(res, readiness.SigningKeyKid).Evidence)
	}
	text := metricsText(t, reg)
	for _, want := range []string{
		`mpha_readiness_check{check="signing-key-kid",status="fail"} 1`,
		`mpha_readiness_check{check="signing-key-kid",status="pass"} 0`,
		`mpha_readiness_check{check="root-ca",status="pass"} 1`,
		`mpha_readiness_last_run_timestamp_seconds `,
		`mpha_readiness_run_errors_total 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}

	// 3. Nothing changed: no new Event.
	round(map[string]readiness.Status{readiness.SigningKeyKid: readiness.Fail})
	if n := len(r.events(t, ctx, "mpha")); n != 2 {
		t.Errorf("an unchanged round: %d events, want still 2", n)
	}

	// 4. Fixed: one Passed event per recovered check.
	var orig *corev1.Secret
	for _, s := range r.secrets {
		if s.Name == "iam-signing-key" {
			orig = s
		}
	}
	r.setKid(t, ctx, "sig-1", orig.Data["private.key"])
	round(allPass)
	ev = r.events(t, ctx, "mpha")
	if reasons := eventReasons(ev); reasons[readiness.ReasonPassed] != 2 || len(ev) != 4 {
		t.Errorf("after the fix: events %v, want 2 %s more", reasons, readiness.ReasonPassed)
	}
	if !strings.Contains(metricsText(t, reg), `mpha_readiness_check{check="signing-key-kid",status="pass"} 1`) {
		t.Error("the metrics did not follow the fix")
	}

	r.factsFileCompared(t, ctx, round, allPass)

	// The leak scan: the ConfigMap, the Events, the metrics and the logs.
	_, body := r.report(t, ctx, "mpha")
	r.leaks.Scan(t, "the ConfigMap", body)
	for _, e := range r.events(t, ctx, "mpha") {
		r.leaks.Scan(t, "event "+e.Name, e.Message)
	}
	r.leaks.Scan(t, "the metrics", metricsText(t, reg))
	r.leaks.Scan(t, "the logs", logs.String())
	for _, v := range []string{"fixture-admin-password", "fixture-postgres-password"} {
		if strings.Contains(body+logs.String(), v) {
			t.Errorf("the Helm values' secret %q leaked", v)
		}
	}
	if !strings.Contains(logs.String(), "readiness check changed") {
		t.Errorf("no transition logged:\n%s", logs.String())
	}
}

// factsFileCompared: the active exports neither iam-signing-key nor its certificates (each MP's own
// in the Helm model), so only its facts file (Layout.Facts) says their kid and CA. Matching, every
// check passes; a standby with its own signing key, or a certificate of another CA, fails
// signing-key-kid or root-ca, where without the file both would only warn.
func (r *monitorRig) factsFileCompared(t *testing.T, ctx context.Context, round func(map[string]readiness.Status) []readiness.Result,
	allPass map[string]readiness.Status) {
	t.Helper()
	facts := map[string]seal.Facts{}
	for _, s := range r.secrets {
		f, err := seal.SecretFacts(key, s)
		if err != nil {
			t.Fatal(err)
		}
		facts[s.Name] = f
	}
	write := func(facts map[string]seal.Facts, del ...string) {
		t.Helper()
		b, err := seal.MarshalFactsFile("east", facts)
		if err != nil {
			t.Fatal(err)
		}
		ch := gitops.Change{Files: map[string][]byte{r.layout.Facts("east"): append([]byte(gitops.Header), b...)}, Message: "east's facts",
			Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "secrets"}}}
		for _, n := range del {
			ch.Delete = append(ch.Delete, r.layout.Secret("west", n))
		}
		if _, err := r.writer.Apply(ctx, ch); err != nil {
			t.Fatal(err)
		}
	}
	write(facts, "iam-signing-key", "tsb-certs", "xcp-central-cert")
	// iam-signing-key is still in secrets.names: with no SealedSecret, there is no digest to
	// compare, and secrets-in-sync warns; the rest passes on the facts file.
	factsPass := maps.Clone(allPass)
	factsPass[readiness.SecretsInSync] = readiness.Warn
	round(factsPass)

	// West with its own signing key: the kid in east's facts file differs.
	var orig *corev1.Secret
	for _, s := range r.secrets {
		if s.Name == "iam-signing-key" {
			orig = s
		}
	}
	own := sealtest.NewSigningKey(t).PEM
	r.leaks.Add(own)
	r.setKid(t, ctx, "sig-west", own)
	res := round(map[string]readiness.Status{readiness.SigningKeyKid: readiness.Fail})
	if ev := resultOf(res, readiness.SigningKeyKid).Evidence; !strings.Contains(ev, "east (active, as exported to Git) has sig-1") {
		t.Errorf("evidence from the facts file: %s", ev)
	}
	r.setKid(t, ctx, "sig-1", orig.Data["private.key"])

	// East's certificates from another CA, as its facts file says.
	other := sealtest.NewCA(t, "east's other CA")
	moved := maps.Clone(facts)
	for _, n := range []string{"tsb-certs", "xcp-central-cert"} {
		f := moved[n]
		f.CA = other.Fingerprint()
		moved[n] = f
	}
	write(moved)
	res = round(map[string]readiness.Status{readiness.RootCA: readiness.Fail, readiness.SigningKeyKid: readiness.Pass, readiness.JWKSKid: readiness.Pass})
	if ev := resultOf(res, readiness.RootCA).Evidence; !strings.Contains(ev, "different root CAs") {
		t.Errorf("root-ca evidence from the facts file: %s", ev)
	}
	write(facts)
	round(factsPass)
}

// The active's monitor sees no live facts of the standby yet: the comparing checks warn, the local
// ones still pass.
func testMonitorActive(t *testing.T, ctx context.Context, r *monitorRig) {
	// The same API server plays east here: pair.yaml makes it active.
	m, err := readiness.New(r.west.Clientset, r.writer, readiness.Options{
		Self: "east", StatusNamespace: "mpha-east", Names: []string{"iam-signing-key"}, Key: key, Layout: r.layout,
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := m.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]readiness.Status{readiness.SigningKeyKid: readiness.Warn, readiness.JWKSKid: readiness.Warn,
		readiness.SecretsInSync: readiness.Warn, readiness.RootCA: readiness.Warn, readiness.ValuesDrift: readiness.Warn,
		readiness.SecretsManaged: readiness.Pass}
	warns := 0
	for _, res := range res {
		if res.Status != want[res.Check] {
			t.Errorf("%s: %s, want %s: %s", res.Check, res.Status, want[res.Check], res.Evidence)
		}
		if res.Status != readiness.Warn {
			continue
		}
		warns++
		if res.Check != readiness.ValuesDrift && !strings.Contains(res.Evidence, "heartbeats") {
			t.Errorf("%s: evidence does not say why: %s", res.Check, res.Evidence)
		}
	}
	// A first round announces what does not pass.
	if ev := r.events(t, ctx, "mpha-east"); warns != 5 || len(ev) != warns || eventReasons(ev)[readiness.ReasonWarning] != warns {
		t.Errorf("first round on the active: events %v", eventReasons(ev))
	}
}

// flakyRepo fails its first reads, as a Git outage would.
type flakyRepo struct {
	*gitrepo.Writer
	failures atomic.Int32
}

func (f *flakyRepo) Read(ctx context.Context, paths ...string) (gitrepo.Snapshot, error) {
	if f.failures.Add(-1) >= 0 {
		return gitrepo.Snapshot{}, errors.New("git is down")
	}
	return f.Writer.Read(ctx, paths...)
}

// Run survives failed rounds and stops cleanly with its context; a wrong peer is a failed round.
func testMonitorRun(t *testing.T, ctx context.Context, r *monitorRig) {
	repo := &flakyRepo{Writer: r.writer}
	repo.failures.Store(2)
	reg := prometheus.NewRegistry()
	logs := &testrig.LogBuffer{}
	m, err := readiness.New(r.west.Clientset, repo, readiness.Options{
		Self: "west", StatusNamespace: "mpha-run", Names: []string{"iam-signing-key"}, Key: key, Layout: r.layout,
		Interval: 100 * time.Millisecond, Registerer: reg, Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	testrig.Eventually(t, "a round after two failed ones", time.Minute, func(ctx context.Context) error {
		_, err := r.west.Clientset.CoreV1().ConfigMaps("mpha-run").Get(ctx, readiness.ConfigMapName, metav1.GetOptions{})
		return err
	})
	stop()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v", err)
	}
	if !strings.Contains(metricsText(t, reg), "mpha_readiness_run_errors_total 2") {
		t.Errorf("errors not counted:\n%s", metricsText(t, reg))
	}
	if !strings.Contains(logs.String(), "readiness round failed; retrying") {
		t.Errorf("failed rounds not logged:\n%s", logs.String())
	}

	wrong, err := readiness.New(r.west.Clientset, r.writer, readiness.Options{Self: "west", Peer: "north", StatusNamespace: "mpha", Key: key, Layout: r.layout})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.RunOnce(ctx); err == nil || !strings.Contains(err.Error(), `"north"`) {
		t.Errorf("a wrong peer: err = %v", err)
	}
}

func TestNewRefuses(t *testing.T) {
	l, _ := gitops.NewLayout("")
	for name, o := range map[string]readiness.Options{
		"no cluster":   {StatusNamespace: "mpha", Key: key, Layout: l},
		"no namespace": {Self: "west", Key: key, Layout: l},
		"short key":    {Self: "west", StatusNamespace: "mpha", Key: []byte("k"), Layout: l},
		"no layout":    {Self: "west", StatusNamespace: "mpha", Key: key},
	} {
		if _, err := readiness.New(nil, nil, o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	reg := prometheus.NewRegistry()
	o := readiness.Options{Self: "west", StatusNamespace: "mpha", Key: key, Layout: l, Registerer: reg}
	if _, err := readiness.New(nil, nil, o); err != nil {
		t.Fatal(err)
	}
	if _, err := readiness.New(nil, nil, o); err == nil {
		t.Error("registering the metrics twice was accepted")
	}
}

func eventReasons(evs []corev1.Event) map[string]int {
	out := map[string]int{}
	for _, e := range evs {
		out[e.Reason]++
	}
	return out
}

func resultOf(rs []readiness.Result, check string) readiness.Result {
	for _, r := range rs {
		if r.Check == check {
			return r
		}
	}
	return readiness.Result{Check: check, Evidence: fmt.Sprintf("no %s result", check)}
}
