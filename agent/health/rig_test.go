package health_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/health"
	"github.com/mpha-dev/mpha/agent/heartbeat"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/seal/sealtest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

const (
	pairName = "tsb-mp"
	org      = "tetrate"
	// The FQDNs of ../../gitops/testdata/pair.yaml: east (mp1) is active at epoch 7.
	floatingFQDN = "active.tsb.example.com"
	eastFQDN     = "mp1.tsb.example.com"
)

// staticPair is a PairSource serving one pair.yaml.
type staticPair struct{ p *gitops.Pair }

func (s staticPair) Pair(context.Context) (*gitops.Pair, error) {
	if s.p == nil {
		return nil, errors.New("no pair.yaml")
	}
	return s.p, nil
}

// nopPublisher publishes nothing (for tests that never reach NATS).
type nopPublisher struct{}

func (nopPublisher) PublishMsg(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return nil, errors.New("not connected")
}

// clock is a test clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// mpServer answers like TSB's front-envoy: the two health endpoints of tsb-mp-ha.md §6, behind
// basic auth or a bearer token, on TLS with a certificate for the pair's FQDNs.
type mpServer struct {
	srv  *httptest.Server
	down atomic.Bool // answer 503, as front-envoy does with no healthy upstream
	html atomic.Bool // answer 200 with a login page
	// denied counts requests refused for their credentials.
	denied atomic.Int64
}

func (s *mpServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, pass, basic := r.BasicAuth()
	if !(basic && user == testUser && pass == testPassword) && r.Header.Get("Authorization") != "Bearer "+testToken {
		s.denied.Add(1)
		http.Error(w, `{"code":16,"message":"UNAUTHENTICATED"}`, http.StatusUnauthorized)
		return
	}
	switch {
	case s.down.Load():
		http.Error(w, "no healthy upstream", http.StatusServiceUnavailable)
	case s.html.Load():
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body>Sign in</body></html>")
	case r.Method != http.MethodGet:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	case r.URL.Path == "/v2/organizations/"+org+"/status":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"READY","message":"organization tetrate"}`)
	case r.URL.Path == "/promql/api/v1/labels":
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"success","data":["__name__","job","service"]}`)
	default:
		http.NotFound(w, r)
	}
}

// The probe credentials, remembered by the leak scan.
const (
	testUser     = "mpha-probe"
	testPassword = "probe-pw-6f1c2a9e8b7d"
	testToken    = "probe-token-3a5e7c9b1d2f"
)

// rig is NATS with the pair's stream, and the active MP (east) as two front-envoys: one for
// the floating FQDN and one for east's own FQDN. The monitor runs as west, the standby.
type rig struct {
	ctx      context.Context
	js       jetstream.JetStream
	subj     event.Subjects
	pair     *gitops.Pair
	ca       *sealtest.CA
	floating *mpServer
	instance *mpServer
	logs     *testrig.LogBuffer
	leaks    sealtest.Leaks

	mu     sync.Mutex
	routes map[string]string // host:port → the address dialled
}

func startRig(t *testing.T) *rig {
	t.Helper()
	if testing.Short() {
		t.Skip("starts NATS and HTTPS servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	r := &rig{ctx: ctx, logs: &testrig.LogBuffer{}, routes: map[string]string{}}
	n := testrig.StartNATS(t)
	r.js = n.JetStream(t)
	if _, err := event.EnsureStream(ctx, r.js, pairName); err != nil {
		t.Fatal(err)
	}
	r.subj, _ = event.NewSubjects(pairName)
	b, err := os.ReadFile("../../gitops/testdata/pair.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if r.pair, err = gitops.ParsePair(b); err != nil {
		t.Fatal(err)
	}
	r.leaks.Add([]byte(testPassword), []byte(testToken))
	r.ca = sealtest.NewCA(t, "tsb root CA")
	r.floating, r.instance = r.startMP(t, floatingFQDN), r.startMP(t, eastFQDN)
	t.Cleanup(func() {
		r.scanForCredentials(t)
		if t.Failed() {
			t.Logf("--- monitor logs ---\n%s", r.logs)
		}
	})
	return r
}

// startMP starts a front-envoy for fqdn and routes fqdn:8443 to it.
func (r *rig) startMP(t *testing.T, fqdn string) *mpServer {
	t.Helper()
	certPEM, keyPEM := r.ca.Leaf(t, floatingFQDN, eastFQDN, "mp2.tsb.example.com")
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	s := &mpServer{}
	s.srv = httptest.NewUnstartedServer(s)
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the unknown-CA case makes handshakes fail
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	r.route(fqdn, s.srv.Listener.Addr().String())
	return s
}

func (r *rig) route(fqdn, addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes[net.JoinHostPort(fqdn, "8443")] = addr
}

// cut makes fqdn refuse connections: it routes it to a port where nothing listens.
func (r *rig) cut(t *testing.T, fqdn string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r.route(fqdn, addr)
}

// dial stands in for DNS: the pair's FQDNs lead to the rig's servers, nothing else resolves.
func (r *rig) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	r.mu.Lock()
	to, ok := r.routes[addr]
	r.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("dial %s: no such host", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, to)
}

// options are west's monitor options against the rig, basic auth, the rig's CA.
func (r *rig) options() health.Options {
	return health.Options{
		Cluster: "west", Pair: pairName, Organization: org,
		Credentials: health.Credentials{Username: testUser, Password: testPassword},
		CABundle:    r.ca.PEM, Timeout: 2 * time.Second, Dial: r.dial,
		Logger: slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// monitor returns a monitor with opts and its metrics' registry.
func (r *rig) monitor(t *testing.T, opts health.Options) (*health.Monitor, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	peers, err := heartbeat.NewReader(r.js, pairName, heartbeat.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := health.New(r.js, staticPair{r.pair}, peers, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// round runs one round and fails the test on an error.
func (r *rig) round(t *testing.T, m *health.Monitor) health.Round {
	t.Helper()
	round, err := m.RunOnce(r.ctx)
	if err != nil {
		t.Fatalf("RunOnce: %v", err)
	}
	return round
}

// heartbeat publishes east's heartbeat reporting its MP healthy or not.
func (r *rig) heartbeat(t *testing.T, healthy bool) {
	t.Helper()
	e, err := event.NewHeartbeat("mpha://agent/east", fmt.Sprintf("east-%d", time.Now().UnixNano()), event.Heartbeat{
		Cluster: "east", Role: "active", Epoch: 7, MP: &event.MPHealth{Healthy: healthy, Detail: "probed in-cluster"},
	})
	if err != nil {
		t.Fatal(err)
	}
	subject, _ := r.subj.Heartbeat("east")
	if _, err := event.Publish(r.ctx, r.js, subject, e); err != nil {
		t.Fatal(err)
	}
}

// messages returns what the stream holds on subject, oldest first.
func (r *rig) messages(t testing.TB, subject string) []*jetstream.RawStreamMsg {
	t.Helper()
	return testrig.StreamMessages(t, r.ctx, r.js, r.subj.Stream(), subject)
}

// suggestions decodes the suggestions published so far.
func (r *rig) suggestions(t testing.TB) []health.Suggestion {
	t.Helper()
	var out []health.Suggestion
	for _, m := range r.messages(t, health.SuggestedSubject(r.subj)) {
		_, s, err := health.DecodeSuggestion(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// scanForCredentials fails the test where a probe credential shows in the logs or any event.
func (r *rig) scanForCredentials(t *testing.T) {
	t.Helper()
	r.leaks.Scan(t, "the monitor's logs", r.logs.String())
	for _, m := range r.messages(t, r.subj.All()) {
		r.leaks.Scan(t, "event on "+m.Subject, string(m.Data))
	}
}

// metric returns the value of the series of name with label=value (a gauge or a counter summed
// over its other labels; every series when label is ""), or -1 when there is none.
func metric(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v, found := 0.0, false
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" {
				v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
				found = true
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
					found = true
				}
			}
		}
	}
	if !found {
		return -1
	}
	return v
}

func errorsOf(results []health.Result) string {
	var b strings.Builder
	for _, r := range results {
		fmt.Fprintf(&b, "%s; ", r)
	}
	return b.String()
}
