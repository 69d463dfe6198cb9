package runtime_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/agent/runtime"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

const pairYAML = gitops.Header + `apiVersion: mpha.dev/v1alpha1
kind: Pair
name: tsb-mp
floatingFQDN: active.tsb.example.com
clusters:
  - {name: east, mpFQDN: mp1.tsb.example.com}
  - {name: west, mpFQDN: mp2.tsb.example.com}
active: east
epoch: 7
`

// replica is one running agent replica.
type replica struct {
	name string
	addr chan string
	url  string
	stop context.CancelFunc
	done chan error
}

// Two replicas of east's agent against one API server: one leads (mpha_leader 1 on its /metrics,
// scraped and parsed with the Prometheus text parser), its loops publish east's sealing
// certificate once; stopping it hands the Lease to the other within the lease time, and the new
// leader commits nothing twice.
func TestTwoReplicasOneLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an API server, NATS and a Git server")
	}
	c := testrig.StartCluster(t, "east")
	n := testrig.StartNATS(t)
	srv := testrig.StartGitServer(t)
	srv.CreateRepo(t, "org/fleet.git", "main", map[string]string{"mpha/pair.yaml": pairYAML})
	certPEM := rsaCert(t)
	certSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(certPEM) }))
	t.Cleanup(certSrv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := c.Clientset
	c.Apply(t, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: mpha\n"))
	for name, data := range map[string]map[string][]byte{
		"mpha-git":  srv.Credentials(),
		"mpha-hmac": {"key": bytes.Repeat([]byte("k"), 32)},
	} {
		if _, err := cs.CoreV1().Secrets("mpha").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "mpha"}, Data: data},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := agent.Parse([]byte(fmt.Sprintf(`cluster: east
pair: tsb-mp
git: {url: %q}
forge: {kind: none, mode: branch}
nats: {url: %q}
sealedSecrets: {certURL: %q}
`, srv.URL("org/fleet.git"), n.URL, certSrv.URL)))
	if err != nil {
		t.Fatal(err)
	}
	logs := &testrig.LogBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- agent logs ---\n%s", logs)
		}
	})
	start := func(name string) *replica { return startReplica(ctx, t, c, cfg, "mpha", name, true, logs) }
	a, b := start("agent-a"), start("agent-b")
	for _, r := range []*replica{a, b} {
		for _, path := range []string{"/healthz", "/readyz"} {
			if code := get(t, r.url+path); code != http.StatusOK {
				t.Errorf("%s %s: %d", r.name, path, code)
			}
		}
	}
	var leader, follower *replica
	testrig.Eventually(t, "one leader", time.Minute, func(context.Context) error {
		la, lb := leaderMetric(t, a), leaderMetric(t, b)
		switch {
		case la == 1 && lb == 0:
			leader, follower = a, b
		case la == 0 && lb == 1:
			leader, follower = b, a
		default:
			return fmt.Errorf("mpha_leader: a %v, b %v", la, lb)
		}
		return nil
	})
	testrig.Eventually(t, "east's sealing certificate in Git", time.Minute, func(context.Context) error {
		if n := certCommits(t, srv); n != 1 {
			return fmt.Errorf("%d cert commits", n)
		}
		return nil
	})
	lease, err := cs.CoordinationV1().Leases("mpha").Get(ctx, runtime.LeaseName("east"), metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != leader.name {
		t.Fatalf("lease: %+v, %v", lease.Spec, err)
	}

	// Stopping the leader releases the Lease: the follower leads well within the lease time.
	stoppedAt := time.Now()
	leader.stop()
	if err := <-leader.done; err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("the stopped leader: %v", err)
	}
	testrig.Eventually(t, "the follower to lead", time.Minute, func(context.Context) error {
		if leaderMetric(t, follower) != 1 {
			return errors.New("not leading yet")
		}
		return nil
	})
	took := time.Since(stoppedAt)
	if took > 4*time.Second {
		t.Errorf("handover took %s, over the 4s lease", took)
	}
	t.Logf("handover took %s", took.Round(time.Millisecond))
	// The new leader's certificate loop finds the certificate committed: no second commit.
	time.Sleep(2 * time.Second)
	if n := certCommits(t, srv); n != 1 {
		t.Errorf("%d cert commits after the handover", n)
	}
	if strings.Contains(logs.String(), srv.Password) {
		t.Error("the Git password is in the logs")
	}
}

// startReplica runs one agent replica of cfg in namespace ns of cluster c (leader election with
// short lease timings when elect) and returns once it serves.
func startReplica(ctx context.Context, t *testing.T, c *testrig.Cluster, cfg *agent.Config, ns, name string, elect bool, logs io.Writer) *replica {
	t.Helper()
	r := &replica{name: name, addr: make(chan string, 1), done: make(chan error, 1)}
	rctx, stop := context.WithCancel(ctx)
	r.stop = stop
	go func() {
		r.done <- runtime.Run(rctx, runtime.Options{Config: cfg, Namespace: ns, Identity: name, Rest: c.Config,
			Listen: "127.0.0.1:0", LeaderElection: elect, InsecureHTTPCredentials: true,
			LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond,
			Logger:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test-replica", name),
			Started: func(addr string) { r.addr <- addr }})
	}()
	select {
	case a := <-r.addr:
		r.url = "http://" + a
	case err := <-r.done:
		t.Fatalf("replica %s: %v", name, err)
	}
	return r
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// leaderMetric scrapes r's /metrics and returns mpha_leader.
func leaderMetric(t *testing.T, r *replica) float64 {
	t.Helper()
	fams := scrape(t, r.url+"/metrics")
	f, ok := fams["mpha_leader"]
	if !ok || len(f.GetMetric()) != 1 {
		t.Fatalf("%s: no mpha_leader series", r.name)
	}
	m := f.GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["cluster"] != "east" || labels["replica"] != r.name {
		t.Errorf("mpha_leader labels %v", labels)
	}
	return m.GetGauge().GetValue()
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// certCommits counts the commits on main with Mpha-Kind: cert.
func certCommits(t *testing.T, srv *testrig.GitServer) int { return kindCommits(t, srv, "cert") }

// kindCommits counts the commits on main with the trailer Mpha-Kind: kind.
func kindCommits(t testing.TB, srv *testrig.GitServer, kind string) int {
	t.Helper()
	r, err := gogit.Clone(memory.NewStorage(), nil, &gogit.CloneOptions{URL: srv.URL("org/fleet.git"), Auth: srv.Auth()})
	if err != nil {
		t.Fatal(err)
	}
	head, err := r.Head()
	if err != nil {
		t.Fatal(err)
	}
	it, err := r.Log(&gogit.LogOptions{From: head.Hash()})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	_ = it.ForEach(func(c *object.Commit) error {
		if strings.Contains(c.Message, "Mpha-Kind: "+kind+"\n") || strings.HasSuffix(c.Message, "Mpha-Kind: "+kind) {
			n++
		}
		return nil
	})
	return n
}

// rsaCert is a self-signed RSA certificate, like the sealed-secrets controller's.
func rsaCert(t testing.TB) []byte {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sealed-secret"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), KeyUsage: x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
