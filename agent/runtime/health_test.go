package runtime_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/health"
	"github.com/mpha-dev/mpha/agent/heartbeat"
	"github.com/mpha-dev/mpha/gitops/seal/sealtest"
	"github.com/mpha-dev/mpha/gitops/values"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// Credentials the leak scan looks for in logs and events.
const (
	probeToken = "probe-token-5d1e9a7c3b"
	alertToken = "alert-token-8f2b6c4a1e"
	signingKid = "kid-2026-11"
	signingKey = "signing-key-material-0f9e8d7c6b5a"
)

// fakeMP answers like front-envoy: JSON on any path with the probe token, 503 while down.
type fakeMP struct {
	srv  *httptest.Server
	down atomic.Bool
}

func startMP(t *testing.T, ca *sealtest.CA) *fakeMP {
	t.Helper()
	certPEM, keyPEM := ca.Leaf(t, "localhost")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMP{}
	m.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer "+probeToken:
			http.Error(w, `{"message":"UNAUTHENTICATED"}`, http.StatusUnauthorized)
		case m.down.Load():
			http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"status":"READY"}`)
		}
	}))
	m.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	m.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	m.srv.StartTLS()
	t.Cleanup(m.srv.Close)
	return m
}

// url is the server's address under the name its certificate holds.
func (m *fakeMP) url() string {
	return fmt.Sprintf("https://localhost:%d", m.srv.Listener.Addr().(*net.TCPAddr).Port)
}

// East (active) and west (standby) agents, each with its own namespace in one API server, watch
// each other through their heartbeats and west's probes:
//   - east's heartbeat carries its own MP's health, its signing key's kid and its CA;
//   - west's probes failing while east vouches for its MP is "I cannot reach it": no suggestion;
//   - east's MP failing too is "down": exactly one suggestion;
//   - west's alert bridge turns an Alertmanager notification into a suggestion on the leader,
//     refuses bad credentials and malformed payloads, and a follower answers 503;
//   - /metrics carries the operations series, parsed with the Prometheus text parser;
//   - no credential reaches a log or an event.
func TestWatchHeartbeatsAndAlertBridge(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server, NATS, a Git server and HTTPS servers")
	}
	c := testrig.StartCluster(t, "pair")
	n := testrig.StartNATS(t)
	js := n.JetStream(t)
	srv := testrig.StartGitServer(t)
	// West's HelmRelease as the active rendered it: west's configuration names no organization,
	// so west's watch takes the MP's from there.
	hr, err := values.Release{Name: "mp", Namespace: "tsb", Chart: "managementplane", Version: "1.12.0",
		RepositoryURL: "https://charts.example.com/tsb", Values: map[string]any{"spec": map[string]any{"organization": "tetrate"}}}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	srv.CreateRepo(t, "org/fleet.git", "main", map[string]string{"mpha/pair.yaml": pairYAML, "mpha/clusters/west/mp/helmrelease.yaml": string(hr)})
	certPEM := rsaCert(t)
	certSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(certPEM) }))
	t.Cleanup(certSrv.Close)
	ca := sealtest.NewCA(t, "tsb root CA")
	eastMP, westView := startMP(t, ca), startMP(t, ca)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cs := c.Clientset

	c.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tsb\n"))
	secret := func(ns, name string, data map[string][]byte) {
		t.Helper()
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: data},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	secret("tsb", "iam-signing-key", map[string][]byte{"kid": []byte(signingKid), "private.key": []byte(signingKey)})
	secret("tsb", "tsb-certs", map[string][]byte{"ca.crt": ca.PEM})
	pg := testrig.StartPostgres(t)
	for _, ns := range []string{"mpha-east", "mpha-west"} {
		c.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+ns+"\n"))
		secret(ns, "mpha-git", srv.Credentials())
		secret(ns, "mpha-hmac", map[string][]byte{"key": bytes.Repeat([]byte("k"), 32)})
		secret(ns, "mpha-probe", map[string][]byte{"token": []byte(probeToken)})
		secret(ns, "mpha-probe-ca", map[string][]byte{"ca.crt": ca.PEM})
		secret(ns, "mpha-alertmanager", map[string][]byte{"token": []byte(alertToken)})
	}
	secret("mpha-east", "mpha-db", map[string][]byte{"dsn": []byte(pg.DSN("postgres"))})
	config := func(cluster, extra string) *agent.Config {
		cfg, err := agent.Parse([]byte(fmt.Sprintf(`cluster: %s
pair: tsb-mp
heartbeatInterval: 1s
git: {url: %q}
forge: {kind: none, mode: branch}
nats: {url: %q}
sealedSecrets: {certURL: %q}
health: {organization: tetrate, credentialsSecret: mpha-probe, caSecret: mpha-probe-ca, interval: 300ms, timeout: 1s, failures: 3}
%s`, cluster, srv.URL("org/fleet.git"), n.URL, certSrv.URL, extra)))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	east := config("east", "postgres: {dsnSecret: mpha-db, database: postgres}\n")
	east.Health.SelfURL = eastMP.url()
	west := config("west", `alerts:
  enabled: true
  authSecret: mpha-alertmanager
  rules: [{alert: TSBManagementPlaneDown, labels: {cluster: east}, action: suggest, target: west}]
`)
	west.Health.ProbeURL = westView.url() + "/v2/organizations/tetrate/status"
	west.Health.Organization = ""

	logs := &testrig.LogBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- agent logs ---\n%s", logs)
		}
	})
	run := func(cfg *agent.Config, ns, name string, elect bool) *replica {
		r := startReplica(ctx, t, c, cfg, ns, name, elect, logs)
		t.Cleanup(func() { r.stop(); <-r.done })
		return r
	}
	e := run(east, "mpha-east", "east-a", false)
	w := run(west, "mpha-west", "west-a", true)
	testrig.Eventually(t, "west-a to lead", time.Minute, func(context.Context) error {
		if v := gauge(scrape(t, w.url+"/metrics"), "mpha_leader", nil); v != 1 {
			return fmt.Errorf("mpha_leader %v", v)
		}
		return nil
	})

	// 1. East's heartbeat: its MP healthy, its signing key's kid, its CA, its database's position.
	beats, err := heartbeat.NewReader(js, "tsb-mp", heartbeat.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, "east's heartbeat with its facts", time.Minute, func(ctx context.Context) error {
		b, err := beats.Last(ctx, "east")
		hb := b.Heartbeat
		switch {
		case err != nil:
			return err
		case hb.MP == nil || !hb.MP.Healthy:
			return fmt.Errorf("mp %+v", hb.MP)
		case hb.Kids["iam-signing-key"] != signingKid:
			return fmt.Errorf("kids %v", hb.Kids)
		case len(hb.CAFingerprints) != 1 || hb.CAFingerprints[0] != ca.Fingerprint():
			return fmt.Errorf("CAs %v", hb.CAFingerprints)
		case hb.Postgres == nil || hb.Postgres.Role != "primary" || hb.Postgres.LSN == "" || hb.Postgres.SystemID == "":
			return fmt.Errorf("postgres %+v", hb.Postgres)
		}
		return nil
	})
	if b, err := beats.Last(ctx, "west"); err != nil || b.Heartbeat.MP != nil {
		t.Errorf("west (standby) heartbeat: MP %+v, %v; a standby vouches for no MP", b.Heartbeat.MP, err)
	}

	// 2. West reaches east's MP through its probe URL: up and reachable.
	testrig.Eventually(t, "west to see east's MP up", time.Minute, func(context.Context) error {
		fams := scrape(t, w.url+"/metrics")
		if up, reach := gauge(fams, "mpha_active_mp_up", map[string]string{"active": "east"}),
			gauge(fams, "mpha_active_mp_reachable", map[string]string{"active": "east"}); up != 1 || reach != 1 {
			return fmt.Errorf("up %v reachable %v", up, reach)
		}
		return nil
	})
	if !strings.Contains(logs.String(), "organization=tetrate file=mpha/clusters/west/mp/helmrelease.yaml") {
		t.Error("west's watch did not say it took the organization from its committed HelmRelease")
	}

	// 3. West's view breaks, east still vouches for its MP: "I cannot reach it", for many rounds.
	westView.down.Store(true)
	base := counter(scrape(t, w.url+"/metrics"), "mpha_active_mp_probe_failures_total", map[string]string{"target": "url"})
	testrig.Eventually(t, "west to find east's MP unreachable for 6 rounds", time.Minute, func(context.Context) error {
		fams := scrape(t, w.url+"/metrics")
		if up, reach := gauge(fams, "mpha_active_mp_up", map[string]string{"active": "east"}),
			gauge(fams, "mpha_active_mp_reachable", map[string]string{"active": "east"}); up != 1 || reach != 0 {
			return fmt.Errorf("up %v reachable %v", up, reach)
		}
		if f := counter(fams, "mpha_active_mp_probe_failures_total", map[string]string{"target": "url"}); f < base+6 {
			return fmt.Errorf("%v failed url probes since the cut", f-base)
		}
		return nil
	})
	if s := suggestions(t, js); len(s) != 0 {
		t.Fatalf("suggested while east vouched for its MP: %+v", s)
	}

	// 4. East's MP fails too: its heartbeat says so, and west suggests, once.
	eastMP.down.Store(true)
	testrig.Eventually(t, "a suggestion", time.Minute, func(context.Context) error {
		if s := suggestions(t, js); len(s) == 0 {
			return errors.New("none yet")
		}
		return nil
	})
	testrig.Eventually(t, "mpha_failover_suggested", 10*time.Second, func(context.Context) error {
		if v := gauge(scrape(t, w.url+"/metrics"), "mpha_failover_suggested", map[string]string{"cluster": "west"}); v != 1 {
			return fmt.Errorf("%v", v)
		}
		return nil
	})
	if s := suggestions(t, js); len(s) != 1 || s[0].Target != "west" || s[0].From != "east" {
		t.Fatalf("suggestions: %+v", s)
	}

	// 5. The alert bridge on west's leader.
	payload, err := os.ReadFile("../alerts/testdata/firing.json")
	if err != nil {
		t.Fatal(err)
	}
	if code := post(t, w.url+"/alerts", "wrong-token", payload); code != http.StatusUnauthorized {
		t.Errorf("bad token: %d, want 401", code)
	}
	if code := post(t, w.url+"/alerts", alertToken, []byte(`{"alerts": [`)); code != http.StatusBadRequest {
		t.Errorf("malformed payload: %d, want 400", code)
	}
	if code := post(t, w.url+"/alerts", alertToken, payload); code != http.StatusOK {
		t.Fatalf("firing alert: %d, want 200", code)
	}
	if s := suggestions(t, js); len(s) != 2 || s[1].Target != "west" {
		t.Errorf("after the alert: %+v", s)
	}
	follower := run(west, "mpha-west", "west-b", true)
	if code := post(t, follower.url+"/alerts", alertToken, payload); code != http.StatusServiceUnavailable {
		t.Errorf("the follower answered %d, want 503", code)
	}

	// 6. The operations series, as Prometheus reads them.
	testrig.Eventually(t, "east's export metrics", time.Minute, func(context.Context) error {
		if v := gauge(scrape(t, e.url+"/metrics"), "mpha_export_last_sync_timestamp_seconds",
			map[string]string{"secret": "iam-signing-key", "peer": "west"}); v < float64(time.Now().Add(-time.Hour).Unix()) {
			return fmt.Errorf("last sync %v", v)
		}
		return nil
	})
	exposed := map[string]bool{}
	for _, r := range []*replica{e, w} {
		for name := range scrape(t, r.url+"/metrics") {
			exposed[name] = true
		}
	}
	// Logical replication's series, which these agents do not run (postgres.replication none):
	// the names the agent's replicator registers.
	rec := &recordingRegisterer{names: exposed}
	if _, err := database.NewReplicator(database.ReplicationOptions{Self: "postgres://a/tsb", Peer: "postgres://b/tsb",
		Active: func(context.Context, bool) (bool, int64, error) { return false, 0, nil }, Registerer: rec}); err != nil {
		t.Fatal(err)
	}
	checkMonitoring(t, exposed)
	for _, tc := range []struct {
		replica *replica
		series  []string
	}{
		{e, []string{"mpha_leader", "mpha_readiness_check", "mpha_readiness_last_run_timestamp_seconds",
			"mpha_export_last_sync_timestamp_seconds", "mpha_export_runs_total", "mpha_heartbeat_age_seconds",
			"mpha_git_push_retries_total", "mpha_failover_status_total", "mpha_failover_rejected_total",
			"mpha_failover_phase_seconds", "mpha_own_mp_up", "mpha_split_brain", "mpha_loop_restarts_total"}},
		{w, []string{"mpha_leader", "mpha_readiness_check", "mpha_heartbeat_age_seconds", "mpha_active_mp_up",
			"mpha_active_mp_reachable", "mpha_failover_suggested", "mpha_active_mp_probe_failures_total",
			"mpha_alerts_received_total"}},
	} {
		fams := scrape(t, tc.replica.url+"/metrics")
		for _, s := range tc.series {
			if _, ok := fams[s]; !ok {
				t.Errorf("%s /metrics: no %s", tc.replica.name, s)
			}
		}
		for _, cl := range []string{"east", "west"} {
			if age := gauge(fams, "mpha_heartbeat_age_seconds", map[string]string{"cluster": cl}); age < 0 || age > 30 {
				t.Errorf("%s: heartbeat age of %s = %v", tc.replica.name, cl, age)
			}
		}
	}

	// Nothing secret in the logs or the stream.
	leaks := sealtest.Leaks{}
	leaks.Add([]byte(probeToken), []byte(alertToken), []byte(signingKey), []byte(srv.Password))
	leaks.Scan(t, "the agents' logs", logs.String())
	subj, _ := event.NewSubjects("tsb-mp")
	for _, m := range testrig.StreamMessages(t, ctx, js, subj.Stream(), subj.All()) {
		leaks.Scan(t, "event on "+m.Subject, string(m.Data))
	}
}

// checkMonitoring reads manifests/monitoring: the PrometheusRule's alerts each have an expression
// and a severity, the dashboard's panels each a query, and every mpha_ series they name is one
// the agents expose.
func checkMonitoring(t *testing.T, exposed map[string]bool) {
	t.Helper()
	rules, err := os.ReadFile("../../manifests/monitoring/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pr struct {
		Kind string `json:"kind"`
		Spec struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Alert  string            `json:"alert"`
					Expr   string            `json:"expr"`
					Labels map[string]string `json:"labels"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(rules, &pr); err != nil {
		t.Fatalf("prometheusrule.yaml: %v", err)
	}
	alerts := 0
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			alerts++
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" {
				t.Errorf("rule %q in %s: an alert, an expr and a severity are required", r.Alert, g.Name)
			}
		}
	}
	if pr.Kind != "PrometheusRule" || alerts < 10 {
		t.Errorf("prometheusrule.yaml: kind %q with %d alerts", pr.Kind, alerts)
	}
	board, err := os.ReadFile("../../manifests/monitoring/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(board, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 || p.Targets[0].Expr == "" {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
	names := regexp.MustCompile(`mpha_[a-z0-9_]+`).FindAllString(string(rules)+string(board), -1)
	if len(names) < 15 {
		t.Errorf("the monitoring files name %d series", len(names))
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")
		if !exposed[n] && !exposed[base] {
			t.Errorf("manifests/monitoring uses %s, which no agent exposes", n)
		}
	}
}

// recordingRegisterer records the names of the series registered on it.
type recordingRegisterer struct{ names map[string]bool }

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := regexp.MustCompile(`fqName: "([a-z0-9_]+)"`).FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *recordingRegisterer) Unregister(prometheus.Collector) bool { return true }

func post(t *testing.T, url, token string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// suggestions decodes the failover suggestions in the pair's stream, oldest first.
func suggestions(t *testing.T, js jetstream.JetStream) []health.Suggestion {
	t.Helper()
	subj, err := event.NewSubjects("tsb-mp")
	if err != nil {
		t.Fatal(err)
	}
	var out []health.Suggestion
	for _, m := range testrig.StreamMessages(t, context.Background(), js, subj.Stream(), health.SuggestedSubject(subj)) {
		_, s, err := health.DecodeSuggestion(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// series returns the metrics of family name whose labels include want.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) []*dto.Metric {
	var out []*dto.Metric
	f, ok := fams[name]
	if !ok {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// gauge is the value of the one matching gauge series, -1 when there is none.
func gauge(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	s := series(fams, name, want)
	if len(s) != 1 {
		return -1
	}
	return s[0].GetGauge().GetValue()
}

// counter sums the matching counter series.
func counter(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	v := 0.0
	for _, m := range series(fams, name, want) {
		v += m.GetCounter().GetValue()
	}
	return v
}
