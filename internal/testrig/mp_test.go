package testrig_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/gitops/seal/sealtest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// The stand-in serves only while tsb is scaled up, with tsb-certs' certificate (which a client of
// another CA refuses), accepts only tokens of iam-signing-key's kid and key, reads its settings
// row from its own database, and follows both secrets when the sealed-secrets controller would
// replace them.
func TestMPStandIn(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	east := testrig.StartCluster(t, "east")
	pg := testrig.StartPostgres(t)
	testrig.ExecSQL(ctx, t, pg.DSN("postgres"), "CREATE DATABASE mp_east")
	root, otherCA := sealtest.NewCA(t, "shared root"), sealtest.NewCA(t, "another root")
	leaks := &sealtest.Leaks{}
	site := sealtest.Site{Namespace: "tsb", SigningKid: "iam-2026-1", JWKSKid: "iam-2026-1", CA: root,
		DNSNames: []string{"mp-east.tsb.example.com", floatingName}}
	secrets := site.Secrets(t, leaks)
	setupMP(ctx, t, east, secrets, 0)

	host := "127.0.10.1"
	start := time.Now()
	mp := testrig.StartMP(t, testrig.MPOptions{Cluster: east, Addr: host, Port: testrig.FreePortOn(t, host), DSN: pg.DSN("mp_east")})
	t.Logf("figure: the stand-in started (informers synced) in %s", time.Since(start).Round(time.Millisecond))

	if mp.Serving() {
		t.Fatal("serving while tsb has 0 replicas")
	}
	if _, err := net.DialTimeout("tcp", mp.Addr, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dialing the stand-in at 0 replicas: %v, want connection refused", err)
	}
	scaled := time.Now()
	scaleMP(ctx, t, east, 1)
	t.Logf("figure: kubectl scale to 1 (the call included) → accepting connections in %s", untilDial(t, mp.Addr, true, scaled))

	good := caller{addr: mp.Addr, ca: root.PEM, serverName: floatingName}
	token := mp.IssueToken(t, "admin")
	leaks.Add([]byte(token))
	var st testrig.MPStatus
	if code := good.getJSON(ctx, t, token, "/v2/organizations/tetrate/status", &st); code != http.StatusOK {
		t.Fatalf("status with a token of east's key: %d", code)
	}
	if st.Cluster != "east" || st.Subject != "admin" || st.Kid != "iam-2026-1" || st.Organization != "tetrate" {
		t.Errorf("status = %+v", st)
	}

	// TLS: the certificate is tsb-certs', verified by the root CA under both names; a client of
	// another CA refuses it, and so does one expecting a name outside its SANs.
	if code, _, err := (caller{addr: mp.Addr, ca: root.PEM, serverName: "mp-east.tsb.example.com"}).get(ctx, token, "/v2/organizations/tetrate/status"); err != nil || code != http.StatusOK {
		t.Errorf("by the MP's own name: %d, %v", code, err)
	}
	var verifyErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	if _, _, err := (caller{addr: mp.Addr, ca: otherCA.PEM, serverName: floatingName}).get(ctx, token, "/v2/organizations/tetrate/status"); !errors.As(err, &verifyErr) || !errors.As(err, &unknownCA) {
		t.Errorf("a client trusting another CA: %v, want an unknown authority", err)
	}
	var hostErr x509.HostnameError
	if _, _, err := (caller{addr: mp.Addr, ca: root.PEM, serverName: "elsewhere.example.com"}).get(ctx, token, "/v2/organizations/tetrate/status"); !errors.As(err, &hostErr) {
		t.Errorf("a name outside the SANs: %v, want a hostname error", err)
	}

	checkRefusals(ctx, t, good, secrets)

	// The settings row: absent (no table yet: what a database copied before it existed shows),
	// then written and read back; another organization is not served.
	var missing testrig.MPError
	if code := good.getJSON(ctx, t, token, "/v2/organizations/tetrate/settings/greeting", &missing); code != http.StatusNotFound || missing.Cluster != "east" {
		t.Errorf("a setting before the table exists: %d %+v, want 404 from east", code, missing)
	}
	mp.WriteSetting(ctx, t, "greeting", "hello")
	var set testrig.MPSetting
	if code := good.getJSON(ctx, t, token, "/v2/organizations/tetrate/settings/greeting", &set); code != http.StatusOK || set.Value != "hello" || set.Cluster != "east" {
		t.Errorf("the setting written: %d %+v, want 200 hello from east", code, set)
	}
	if code := good.getJSON(ctx, t, token, "/v2/organizations/tetrate/settings/other", &missing); code != http.StatusNotFound {
		t.Errorf("an absent row: %d, want 404", code)
	}
	if code := good.getJSON(ctx, t, token, "/v2/organizations/acme/status", &missing); code != http.StatusNotFound {
		t.Errorf("another organization: %d, want 404", code)
	}

	rotateSigningKey(ctx, t, east, mp, good, token, leaks)
	replaceCertificate(ctx, t, east, good, otherCA)

	scaled = time.Now()
	scaleMP(ctx, t, east, 0)
	t.Logf("figure: kubectl scale to 0 (the call included) → refusing connections in %s", untilDial(t, mp.Addr, false, scaled))
	scaleMP(ctx, t, east, 2)
	untilDial(t, mp.Addr, true, time.Now())

	// Halt: the whole cluster fails; the Deployment still says 2, the stand-in refuses until
	// Resume, and then serves again.
	mp.Halt("the test's cluster failure")
	if _, err := net.DialTimeout("tcp", mp.Addr, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dialing a halted stand-in: %v, want connection refused", err)
	}
	scaleMP(ctx, t, east, 3) // a change while halted is seen, not served
	time.Sleep(200 * time.Millisecond)
	if mp.Serving() {
		t.Fatal("serving while halted")
	}
	mp.Resume()
	untilDial(t, mp.Addr, true, time.Now())

	// SetDSN: the MP's database rebuilt elsewhere; the settings are read from there.
	testrig.ExecSQL(ctx, t, pg.DSN("postgres"), "CREATE DATABASE mp_east_rebuilt")
	testrig.WriteMPSetting(ctx, t, pg.DSN("mp_east_rebuilt"), "tetrate", "greeting", "rebuilt")
	mp.SetDSN(pg.DSN("mp_east_rebuilt"))
	tok := mp.IssueToken(t, "admin")
	leaks.Add([]byte(tok))
	if code := good.getJSON(ctx, t, tok, "/v2/organizations/tetrate/settings/greeting", &set); code != http.StatusOK || set.Value != "rebuilt" {
		t.Errorf("the setting after SetDSN: %d %+v, want 200 rebuilt", code, set)
	}

	log, err := os.ReadFile(mp.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	leaks.Scan(t, "the stand-in's log", string(log))
	if !strings.Contains(string(log), "unknown kid") {
		t.Errorf("the log does not say why a token was refused:\n%s", log)
	}
}

// checkRefusals: every token that is not from iam-signing-key's kid and key gets 401, with the
// reason in the body.
func checkRefusals(ctx context.Context, t *testing.T, c caller, secrets []*corev1.Secret) {
	t.Helper()
	signing := byName(secrets)["iam-signing-key"]
	kid, keyPEM := string(signing.Data["kid"]), signing.Data["private.key"]
	sign := func(key []byte, kid string, ttl time.Duration) string {
		tok, err := testrig.SignToken(key, kid, "intruder", ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	otherKey := sealtest.NewSigningKey(t).PEM
	for _, tc := range []struct{ name, token, why string }{
		{"no token", "", "no bearer token"},
		{"unknown kid", sign(keyPEM, "iam-2025-9", time.Hour), "unknown kid"},
		{"another key under the same kid", sign(otherKey, kid, time.Hour), "signature does not verify"},
		{"an RSA key under the same kid", sign(rsaKeyPEM(t), kid, time.Hour), "signature does not verify"},
		{"expired", sign(keyPEM, kid, -time.Hour), "expired"},
		{"not a JWT", "not-a-token", "malformed"},
	} {
		var e testrig.MPError
		if code := c.getJSON(ctx, t, tc.token, "/v2/organizations/tetrate/status", &e); code != http.StatusUnauthorized || !strings.Contains(e.Error, tc.why) || e.Cluster != "east" {
			t.Errorf("%s: %d %+v, want 401 from east saying %q", tc.name, code, e, tc.why)
		}
	}
}

// rotateSigningKey replaces iam-signing-key as the sealed-secrets controller would: tokens of the
// old kid are refused from then on, tokens of the new key accepted; an RSA key works as well.
func rotateSigningKey(ctx context.Context, t *testing.T, cl *testrig.Cluster, mp *testrig.MP, c caller, oldToken string, leaks *sealtest.Leaks) {
	t.Helper()
	for _, k := range []struct {
		kid string
		pem []byte
	}{{"iam-2026-2", sealtest.NewSigningKey(t).PEM}, {"iam-2026-3-rsa", rsaKeyPEM(t)}} {
		leaks.Add(k.pem)
		updateSecret(ctx, t, cl, "iam-signing-key", map[string][]byte{"kid": []byte(k.kid), "private.key": k.pem})
		testrig.Eventually(t, "the old token to be refused after rotating to "+k.kid, 30*time.Second, func(ctx context.Context) error {
			code, body, err := c.get(ctx, oldToken, "/v2/organizations/tetrate/status")
			if err != nil || code != http.StatusUnauthorized || !strings.Contains(string(body), "unknown kid") {
				return fmt.Errorf("old token: %d %s %v", code, body, err)
			}
			return nil
		})
		tok := mp.IssueToken(t, "admin")
		leaks.Add([]byte(tok))
		var st testrig.MPStatus
		if code := c.getJSON(ctx, t, tok, "/v2/organizations/tetrate/status", &st); code != http.StatusOK || st.Kid != k.kid {
			t.Errorf("a token of the new key %s: %d %+v", k.kid, code, st)
		}
		oldToken = tok
	}
}

// replaceCertificate swaps tsb-certs for a certificate of another CA (what a standby with its own
// CA would serve): root-CA clients then fail the handshake, until the right one is back.
func replaceCertificate(ctx context.Context, t *testing.T, c *testrig.Cluster, good caller, otherCA *sealtest.CA) {
	t.Helper()
	orig, err := c.Clientset.CoreV1().Secrets("tsb").Get(ctx, "tsb-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	crt, key := otherCA.Leaf(t, "mp-east.tsb.example.com", floatingName)
	s := orig.DeepCopy()
	s.Data = map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": otherCA.PEM}
	if _, err := c.Clientset.CoreV1().Secrets("tsb").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, "the handshake to fail with another CA's certificate", 30*time.Second, func(ctx context.Context) error {
		var unknownCA x509.UnknownAuthorityError
		if _, _, err := good.get(ctx, "", "/v2/organizations/tetrate/status"); !errors.As(err, &unknownCA) {
			return fmt.Errorf("got %v, want an unknown authority", err)
		}
		return nil
	})
	cur, err := c.Clientset.CoreV1().Secrets("tsb").Get(ctx, "tsb-certs", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Data = orig.Data
	if _, err := c.Clientset.CoreV1().Secrets("tsb").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, "the handshake to succeed again", 30*time.Second, func(ctx context.Context) error {
		code, _, err := good.get(ctx, "", "/v2/organizations/tetrate/status")
		if err != nil || code != http.StatusUnauthorized {
			return fmt.Errorf("got %d %v, want a handshake and 401", code, err)
		}
		return nil
	})
}

// caller talks to one stand-in by its address, naming serverName in TLS and trusting ca.
type caller struct {
	addr, serverName string
	ca               []byte
}

func (c caller) get(ctx context.Context, token, path string) (int, []byte, error) {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.ca)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, c.addr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: c.serverName},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+c.serverName+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// getJSON gets path and decodes the body into out, failing t when there is no answer.
func (c caller) getJSON(ctx context.Context, t *testing.T, token, path string, out any) int {
	t.Helper()
	code, body, err := c.get(ctx, token, path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %d %q: %v", path, code, body, err)
	}
	return code
}

// untilDial dials addr every 5ms until it accepts connections (accept) or refuses them, and
// returns the time since start (just before a scale: the time to follow it).
func untilDial(t *testing.T, addr string, accept bool, start time.Time) time.Duration {
	t.Helper()
	for time.Since(start) < 30*time.Second {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		if accept && err == nil || !accept && errors.Is(err, syscall.ECONNREFUSED) {
			return time.Since(start).Round(time.Millisecond)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: still not accepting=%v after 30s", addr, accept)
	return 0
}

// setupMP creates the tsb namespace, the secrets and the tsb Deployment at replicas.
func setupMP(ctx context.Context, t *testing.T, c *testrig.Cluster, secrets []*corev1.Secret, replicas int32) {
	t.Helper()
	if _, err := c.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tsb"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets {
		if _, err := c.Clientset.CoreV1().Secrets("tsb").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	labels := map[string]string{"app": "tsb"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "tsb", Namespace: "tsb"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "tsb", Image: "tsb:stand-in"}}}}},
	}
	if _, err := c.Clientset.AppsV1().Deployments("tsb").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// scaleMP sets tsb's replicas through the scale subresource, as kubectl scale does.
func scaleMP(ctx context.Context, t *testing.T, c *testrig.Cluster, n int32) {
	t.Helper()
	s := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "tsb", Namespace: "tsb"}, Spec: autoscalingv1.ScaleSpec{Replicas: n}}
	if _, err := c.Clientset.AppsV1().Deployments("tsb").UpdateScale(ctx, "tsb", s, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("scaling %s's tsb to %d: %v", c.Name, n, err)
	}
}

func updateSecret(ctx context.Context, t *testing.T, c *testrig.Cluster, name string, data map[string][]byte) {
	t.Helper()
	s, err := c.Clientset.CoreV1().Secrets("tsb").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data = data
	if _, err := c.Clientset.CoreV1().Secrets("tsb").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func byName(secrets []*corev1.Secret) map[string]*corev1.Secret {
	m := map[string]*corev1.Secret{}
	for _, s := range secrets {
		m[s.Name] = s
	}
	return m
}

// rsaKeyPEM is an RSA 2048 private key, PKCS#1 PEM.
func rsaKeyPEM(t *testing.T) []byte {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
}
