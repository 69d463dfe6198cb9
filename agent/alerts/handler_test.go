package alerts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mpha-dev/mpha/agent/alerts"
	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/health"
	"github.com/mpha-dev/mpha/internal/testrig"
)

const (
	pairName = "tsb-mp"
	// The credentials Alertmanager's http_config would send; the leak scan looks for them.
	testToken    = "am-token-5b8e1f0c7a2d4e69"
	testUser     = "alertmanager"
	testPassword = "am-password-9c3d7e1a5f0b"
)

// rules are the bridge's configuration in these tests: the MP down on east asks for a planned
// failover to west, its database down for an emergency one; OAP down only suggests.
func rules() []alerts.Rule {
	return []alerts.Rule{
		{Alert: "TSBManagementPlaneDown", Labels: map[string]string{"cluster": "east"}, Action: alerts.ActionRequest, Target: "west"},
		{Alert: "TSBPostgresDown", Labels: map[string]string{"cluster": "east"}, Action: alerts.ActionRequest, Target: "west", Mode: event.ModeEmergency},
		{Alert: "TSBOAPDown", Action: alerts.ActionSuggest, Target: "west"},
	}
}

// rig is NATS with the pair's stream and the bridge served by an httptest server.
type rig struct {
	ctx  context.Context
	nats *testrig.NATS
	js   jetstream.JetStream
	subj event.Subjects
	srv  *httptest.Server
	reg  *prometheus.Registry
	logs *testrig.LogBuffer
}

func startRig(t *testing.T, edit func(*alerts.Options)) *rig {
	t.Helper()
	if testing.Short() {
		t.Skip("starts NATS")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	r := &rig{ctx: ctx, nats: testrig.StartNATS(t), logs: &testrig.LogBuffer{}, reg: prometheus.NewRegistry()}
	r.js = r.nats.JetStream(t)
	if _, err := event.EnsureStream(ctx, r.js, pairName); err != nil {
		t.Fatal(err)
	}
	r.subj, _ = event.NewSubjects(pairName)
	opts := r.options()
	opts.Registerer = r.reg
	if edit != nil {
		edit(&opts)
	}
	h, err := alerts.New(r.js, opts)
	if err != nil {
		t.Fatal(err)
	}
	r.srv = httptest.NewServer(h)
	t.Cleanup(r.srv.Close)
	t.Cleanup(func() {
		r.scanForCredentials(t)
		if t.Failed() {
			t.Logf("--- bridge logs ---\n%s", r.logs)
		}
	})
	return r
}

func (r *rig) options() alerts.Options {
	return alerts.Options{
		Cluster: "west", Pair: pairName, Rules: rules(),
		Auth:   alerts.Auth{Token: testToken, Username: testUser, Password: testPassword},
		Logger: slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// post sends body as Alertmanager does, with the bearer token unless edit changes the request.
func (r *rig) post(t *testing.T, body []byte, edit func(*http.Request)) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(r.ctx, http.MethodPost, r.srv.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Alertmanager/0.28.1")
	req.Header.Set("Authorization", "Bearer "+testToken)
	if edit != nil {
		edit(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// messages returns what the stream holds on subject, oldest first.
func (r *rig) messages(t testing.TB, subject string) []*jetstream.RawStreamMsg {
	t.Helper()
	return testrig.StreamMessages(t, r.ctx, r.js, r.subj.Stream(), subject)
}

// requests decodes the failover requests in the stream as the agent would.
func (r *rig) requests(t testing.TB) []event.Request {
	t.Helper()
	var out []event.Request
	for _, m := range r.messages(t, r.subj.Requested()) {
		req, err := event.DecodeRequest(m.Data, event.Validation{Clusters: []string{"east", "west"}, Epoch: 7})
		if err != nil {
			t.Fatalf("the agent would refuse the request: %v", err)
		}
		out = append(out, req)
	}
	return out
}

func (r *rig) suggestions(t testing.TB) []health.Suggestion {
	t.Helper()
	var out []health.Suggestion
	for _, m := range r.messages(t, health.SuggestedSubject(r.subj)) {
		e, err := event.Decode(m.Data, health.TypeFailoverSuggested)
		if err != nil {
			t.Fatal(err)
		}
		var s health.Suggestion
		if err := e.DataAs(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// scanForCredentials fails the test where a credential shows in the logs or any event.
func (r *rig) scanForCredentials(t *testing.T) {
	t.Helper()
	texts := []string{r.logs.String()}
	for _, m := range r.messages(t, r.subj.All()) {
		texts = append(texts, string(m.Data))
	}
	for _, secret := range []string{testToken, testPassword} {
		for _, text := range texts {
			if strings.Contains(text, secret) {
				t.Errorf("a credential leaked into the logs or events")
			}
		}
	}
}

func (r *rig) counter(t *testing.T, name, label, value string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == name && l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// A firing alert matching a request rule becomes one failover.requested event that the agent
// accepts; Alertmanager re-sending the notification adds nothing, even to a restarted bridge.
func TestFiringAlertRequestsOnce(t *testing.T) {
	t.Parallel()
	r := startRig(t, nil)
	firing := fixture(t, "firing.json")
	code, body := r.post(t, firing, nil)
	if code != http.StatusOK {
		t.Fatalf("POST firing: %d %s", code, body)
	}
	var resp alerts.Response
	if err := json.Unmarshal([]byte(body), &resp); err != nil || len(resp.Events) != 1 || resp.Events[0].Duplicate {
		t.Fatalf("answer %s (%v)", body, err)
	}
	reqs := r.requests(t)
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	req := reqs[0]
	msg, _ := alerts.Decode(firing)
	if want := alerts.EventID(rules()[0], msg.Alerts[0]); req.Event.ID() != want || resp.Events[0].Event != want {
		t.Errorf("request id %s, answer %s, want %s", req.Event.ID(), resp.Events[0].Event, want)
	}
	d := req.Data
	if d.Target != "west" || d.Mode != event.ModePlanned || d.ExpectedEpoch != nil || d.DryRun || len(d.Force) != 0 ||
		d.RequestedBy != "alertmanager via mpha-agent/west" ||
		d.Reason != "alert TSBManagementPlaneDown firing since 2026-11-22T09:55:12Z: TSB management plane on east is down" {
		t.Errorf("request data %+v", d)
	}

	// Re-sent by Alertmanager (group_interval, repeat_interval, or a retry after a lost answer).
	for range 2 {
		code, body = r.post(t, firing, nil)
		if code != http.StatusOK || !strings.Contains(body, `"duplicate":true`) {
			t.Fatalf("re-sent: %d %s", code, body)
		}
	}
	// A second bridge (another replica, or after a restart) has no memory: the stream drops it.
	h2, err := alerts.New(r.js, r.options())
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(h2)
	defer srv2.Close()
	req2, _ := http.NewRequest(http.MethodPost, srv2.URL, bytes.NewReader(firing))
	req2.Header.Set("Authorization", "Bearer "+testToken)
	resp2, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := io.ReadAll(resp2.Body)
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusOK || !strings.Contains(string(b2), `"duplicate":true`) {
		t.Errorf("second bridge: %d %s", resp2.StatusCode, b2)
	}
	if n := len(r.requests(t)); n != 1 {
		t.Errorf("%d requests after re-sends, want 1", n)
	}
	if got := r.counter(t, "mpha_alerts_received_total", "status", "firing"); got != 3 { // the second bridge's are not registered
		t.Errorf("mpha_alerts_received_total{status=firing} = %v, want 3", got)
	}
	if got := r.counter(t, "mpha_alerts_events_total", "action", "request"); got != 1 {
		t.Errorf("mpha_alerts_events_total{action=request} = %v, want 1", got)
	}
}

// A resolved alert is logged and acts on nothing.
func TestResolvedAlertPublishesNothing(t *testing.T) {
	t.Parallel()
	r := startRig(t, nil)
	code, body := r.post(t, fixture(t, "resolved.json"), nil)
	if code != http.StatusOK || body != "{\"events\":[]}\n" {
		t.Fatalf("POST resolved: %d %s", code, body)
	}
	if msgs := r.messages(t, r.subj.All()); len(msgs) != 0 {
		t.Errorf("%d events published for a resolved alert", len(msgs))
	}
	if got := r.counter(t, "mpha_alerts_received_total", "status", "resolved"); got != 1 {
		t.Errorf("mpha_alerts_received_total{status=resolved} = %v", got)
	}
	if !strings.Contains(r.logs.String(), "alert resolved") {
		t.Errorf("the resolved alert is not logged:\n%s", r.logs)
	}
}

// A group of two firing alerts: each follows its own rule (an emergency request, a suggestion).
func TestGroupedAlertsEachFollowTheirRule(t *testing.T) {
	t.Parallel()
	r := startRig(t, nil)
	grouped := fixture(t, "grouped.json")
	code, body := r.post(t, grouped, nil)
	if code != http.StatusOK {
		t.Fatalf("POST grouped: %d %s", code, body)
	}
	reqs := r.requests(t)
	if len(reqs) != 1 || reqs[0].Data.Mode != event.ModeEmergency || reqs[0].Data.Target != "west" ||
		!strings.Contains(reqs[0].Data.Reason, "TSBPostgresDown") {
		t.Fatalf("requests: %+v", reqs)
	}
	sugs := r.suggestions(t)
	if len(sugs) != 1 {
		t.Fatalf("%d suggestions, want 1", len(sugs))
	}
	s := sugs[0]
	if s.Target != "west" || s.SuggestedBy != "alertmanager via mpha-agent/west" ||
		!s.Since.Equal(time.Date(2026, 11, 22, 10, 2, 44, 9e8, time.UTC)) ||
		!strings.Contains(s.Reason, "TSBOAPDown") || !strings.Contains(s.Reason, "metrics in the TSB UI are stale") ||
		!strings.Contains(strings.Join(s.Evidence, " "), "fingerprint=0f3e77b2c9d1a560") {
		t.Errorf("suggestion %+v", s)
	}
	msg, _ := alerts.Decode(grouped)
	if got, want := r.messages(t, health.SuggestedSubject(r.subj))[0].Header.Get("Nats-Msg-Id"), alerts.EventID(rules()[2], msg.Alerts[1]); got != want {
		t.Errorf("suggestion id %s, want %s", got, want)
	}
	// The same group again: nothing new.
	if code, _ := r.post(t, grouped, nil); code != http.StatusOK {
		t.Fatalf("re-sent: %d", code)
	}
	if n := len(r.messages(t, r.subj.All())); n != 2 {
		t.Errorf("%d events after the re-send, want 2", n)
	}
}

// What the bridge refuses, with the status Alertmanager sees; nothing is published.
func TestRefusals(t *testing.T) {
	t.Parallel()
	r := startRig(t, nil)
	firing := fixture(t, "firing.json")
	oversized := append([]byte(`{"version":"4","receiver":"`), bytes.Repeat([]byte("x"), alerts.MaxPayload)...)
	tests := []struct {
		name string
		body []byte
		edit func(*http.Request)
		want int
	}{
		{"malformed", fixture(t, "malformed.json"), nil, http.StatusBadRequest},
		{"wrong version", bytes.Replace(firing, []byte(`"version": "4"`), []byte(`"version": "5"`), 1), nil, http.StatusBadRequest},
		{"oversized", oversized, nil, http.StatusRequestEntityTooLarge},
		{"no credentials", firing, func(q *http.Request) { q.Header.Del("Authorization") }, http.StatusUnauthorized},
		{"wrong token", firing, func(q *http.Request) { q.Header.Set("Authorization", "Bearer "+testToken+"x") }, http.StatusUnauthorized},
		{"wrong password", firing, func(q *http.Request) { q.SetBasicAuth(testUser, "nope") }, http.StatusUnauthorized},
		{"wrong user", firing, func(q *http.Request) { q.SetBasicAuth("admin", testPassword) }, http.StatusUnauthorized},
		{"GET", nil, func(q *http.Request) { q.Method = http.MethodGet }, http.StatusMethodNotAllowed},
		{"PUT", firing, func(q *http.Request) { q.Method = http.MethodPut }, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := r.post(t, tt.body, tt.edit); code != tt.want {
				t.Errorf("status %d (%s), want %d", code, body, tt.want)
			}
		})
	}
	if msgs := r.messages(t, r.subj.All()); len(msgs) != 0 {
		t.Errorf("%d events published by refused notifications", len(msgs))
	}
	for reason, want := range map[string]float64{"malformed": 2, "too_large": 1, "unauthorized": 4, "method": 2} {
		if got := r.counter(t, "mpha_alerts_rejected_total", "reason", reason); got != want {
			t.Errorf("mpha_alerts_rejected_total{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	if n := strings.Count(r.logs.String(), "alert notification refused"); n != len(tests) {
		t.Errorf("%d refusals logged, want %d", n, len(tests))
	}
	// Basic auth is accepted as well as the token.
	if code, body := r.post(t, firing, func(q *http.Request) { q.SetBasicAuth(testUser, testPassword) }); code != http.StatusOK {
		t.Errorf("basic auth: %d %s", code, body)
	}
}

// With NATS down the bridge answers 503, so Alertmanager retries; the retry after NATS is back
// publishes the request once.
func TestNATSDownAsksForARetry(t *testing.T) {
	t.Parallel()
	r := startRig(t, func(o *alerts.Options) { o.Timeout = time.Second })
	firing := fixture(t, "firing.json")
	r.nats.Stop()
	if code, body := r.post(t, firing, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("with NATS down: %d %s", code, body)
	}
	r.nats.Restart(t)
	testrig.Eventually(t, "the retried notification accepted", 30*time.Second, func(ctx context.Context) error {
		if code, body := r.post(t, firing, nil); code != http.StatusOK {
			return errors.New(body)
		}
		return nil
	})
	if n := len(r.requests(t)); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	good := alerts.Options{Cluster: "west", Pair: pairName, Rules: rules(), Auth: alerts.Auth{Token: "t"}}
	tests := []struct {
		name, want string
		edit       func(*alerts.Options)
	}{
		{"no auth", "auth", func(o *alerts.Options) { o.Auth = alerts.Auth{} }},
		{"half basic auth", "both a username and a password", func(o *alerts.Options) { o.Auth = alerts.Auth{Username: "u"} }},
		{"no rules", "at least one rule", func(o *alerts.Options) { o.Rules = nil }},
		{"unknown action", "rules[0]: action", func(o *alerts.Options) { o.Rules = []alerts.Rule{{Alert: "A", Action: "failover", Target: "west"}} }},
		{"drill mode", "rules[0]: mode", func(o *alerts.Options) {
			o.Rules = []alerts.Rule{{Alert: "A", Action: alerts.ActionRequest, Target: "west", Mode: event.ModeDrill}}
		}},
		{"bad target", "rules[0]: target", func(o *alerts.Options) {
			o.Rules = []alerts.Rule{{Alert: "A", Action: alerts.ActionSuggest, Target: "West"}}
		}},
		{"no alertname", "rules[0]: alert", func(o *alerts.Options) { o.Rules = []alerts.Rule{{Action: alerts.ActionSuggest, Target: "west"}} }},
		{"bad cluster", "cluster", func(o *alerts.Options) { o.Cluster = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := good
			tt.edit(&o)
			if _, err := alerts.New(nopPublisher{}, o); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want an error about %q", err, tt.want)
			}
		})
	}
	if _, err := alerts.New(nopPublisher{}, good); err != nil {
		t.Errorf("New with good options: %v", err)
	}
}

type nopPublisher struct{}

func (nopPublisher) PublishMsg(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return nil, errors.New("not connected")
}

func TestRuleMatches(t *testing.T) {
	t.Parallel()
	rule := alerts.Rule{Alert: "TSBManagementPlaneDown", Labels: map[string]string{"cluster": "east"}}
	tests := []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"alertname": "TSBManagementPlaneDown", "cluster": "east", "severity": "critical"}, true},
		{map[string]string{"alertname": "TSBManagementPlaneDown", "cluster": "west"}, false},
		{map[string]string{"alertname": "TSBManagementPlaneDown"}, false},
		{map[string]string{"alertname": "TSBOAPDown", "cluster": "east"}, false},
		{nil, false},
	}
	for _, tt := range tests {
		if got := rule.Matches(tt.labels); got != tt.want {
			t.Errorf("Matches(%v) = %t, want %t", tt.labels, got, tt.want)
		}
	}
}

// An alert's ids: the same for a re-send, new when it fires anew, apart for suggestion and
// request, and valid event ids even from odd fingerprints.
func TestEventID(t *testing.T) {
	t.Parallel()
	a := alerts.Alert{Labels: map[string]string{"alertname": "X"}, Fingerprint: "6d2b5c0c8f4b7a31",
		StartsAt: time.Date(2026, 11, 22, 9, 55, 12, 0, time.UTC)}
	req := alerts.Rule{Alert: "X", Action: alerts.ActionRequest, Target: "west"}
	sug := alerts.Rule{Alert: "X", Action: alerts.ActionSuggest, Target: "west"}
	later := a
	later.StartsAt = later.StartsAt.Add(time.Hour)
	odd := a
	odd.Fingerprint = "../../refs/heads/main\n"
	noFP := a
	noFP.Fingerprint = ""
	id := alerts.EventID(req, a)
	if id != alerts.EventID(req, a) || id == alerts.EventID(req, later) || id == alerts.EventID(sug, a) ||
		!strings.HasPrefix(id, "alert-west-") || !strings.HasPrefix(alerts.EventID(sug, a), "alert-suggest-west-") {
		t.Errorf("ids: %s %s %s", id, alerts.EventID(req, later), alerts.EventID(sug, a))
	}
	for _, x := range []alerts.Alert{a, odd, noFP} {
		for _, rule := range []alerts.Rule{req, sug} {
			if err := event.ValidateID(alerts.EventID(rule, x)); err != nil {
				t.Error(err)
			}
		}
	}
}
