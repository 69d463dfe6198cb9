package natsconn_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
	"github.com/spf13/pflag"

	"github.com/mpha-dev/mpha/internal/natsconn"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

const password = "pa55-w0rd-never-shown"

func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts nats-server")
	}
}

// connect connects with o and checks the server answers; the connection closes with t.
func connect(t *testing.T, o natsconn.Options) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := natsconn.Connect(ctx, o, nil)
	if err != nil {
		t.Fatalf("connect (auth %s): %v", o.Auth(), err)
	}
	defer nc.Close()
	if err := nc.FlushTimeout(10 * time.Second); err != nil {
		t.Fatalf("flush (auth %s): %v", o.Auth(), err)
	}
}

// refused connects with o and returns the error it must give.
func refused(t *testing.T, o natsconn.Options) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := natsconn.Connect(ctx, o, nil)
	if err == nil {
		nc.Close()
		t.Fatalf("connected with auth %s; want a refusal", o.Auth())
	}
	t.Logf("refused: %v", err)
	return err
}

func fromSecret(t *testing.T, data map[string][]byte) natsconn.Options {
	t.Helper()
	o, err := natsconn.FromSecret(data)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// User and password: right ones connect (flags or Secret), a wrong password is refused without
// being quoted, and so is no password at all.
func TestNatsconnUserPassword(t *testing.T) {
	integration(t)
	t.Parallel()
	n := testrig.StartNATSWith(t, testrig.NATSOptions{Users: []*server.User{{Username: "agent", Password: password}}})
	connect(t, natsconn.Options{URL: n.URL, User: "agent", Password: password, Name: "test"})
	o := fromSecret(t, map[string][]byte{"username": []byte("agent"), "password": []byte(password + "\n")})
	o.URL = n.URL
	connect(t, o)

	err := refused(t, natsconn.Options{URL: n.URL, User: "agent", Password: "wrong-" + password})
	if strings.Contains(err.Error(), password) {
		t.Errorf("the error quotes the password: %v", err)
	}
	if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Errorf("err = %v, want an authorization violation", err)
	}
	refused(t, natsconn.Options{URL: n.URL})
}

// A user nkey seed, from a file or from the Secret.
func TestNatsconnNKey(t *testing.T) {
	integration(t)
	t.Parallel()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	n := testrig.StartNATSWith(t, testrig.NATSOptions{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	connect(t, natsconn.Options{URL: n.URL, NKeyFile: writeFile(t, "user.nk", seed)})
	o := fromSecret(t, map[string][]byte{"nkey": append(seed, '\n')})
	o.URL = n.URL
	connect(t, o)

	other, _ := nkeys.CreateUser()
	otherSeed, _ := other.Seed()
	err = refused(t, natsconn.Options{URL: n.URL, NKeySeed: otherSeed})
	if strings.Contains(err.Error(), string(otherSeed)) {
		t.Errorf("the error quotes the seed: %v", err)
	}
	if _, err := natsconn.Connect(context.Background(), natsconn.Options{URL: n.URL, NKeySeed: []byte("not a seed")}, nil); err == nil {
		t.Error("a malformed seed was accepted")
	}
}

// A .creds file (JWT and seed) against a server in operator mode, from a file or the Secret.
func TestNatsconnCreds(t *testing.T) {
	integration(t)
	t.Parallel()
	n := testrig.StartNATSWith(t, testrig.NATSOptions{Operator: true})
	connect(t, natsconn.Options{URL: n.URL, CredsFile: n.CredsFile})
	creds, err := os.ReadFile(n.CredsFile)
	if err != nil {
		t.Fatal(err)
	}
	o := fromSecret(t, map[string][]byte{"creds": creds})
	o.URL = n.URL
	connect(t, o)
	refused(t, natsconn.Options{URL: n.URL})
}

func TestNatsconnToken(t *testing.T) {
	integration(t)
	t.Parallel()
	n := testrig.StartNATSWith(t, testrig.NATSOptions{Token: password})
	connect(t, natsconn.Options{URL: n.URL, Token: password})
	err := refused(t, natsconn.Options{URL: n.URL, Token: "x" + password})
	if strings.Contains(err.Error(), password) {
		t.Errorf("the error quotes the token: %v", err)
	}
}

// TLS: the rig's CA verifies the server (file or Secret); without it the server's certificate is
// unknown. With client verification, the client certificate (files or Secret) is required.
func TestNatsconnTLS(t *testing.T) {
	integration(t)
	t.Parallel()
	n := testrig.StartNATSWith(t, testrig.NATSOptions{TLS: true})
	connect(t, natsconn.Options{URL: n.URL, CAFile: n.CAFile})
	tlsURL := strings.Replace(n.URL, "nats://", "tls://", 1)
	connect(t, natsconn.Options{URL: tlsURL, CAFile: n.CAFile})
	ca := read(t, n.CAFile)
	o := fromSecret(t, map[string][]byte{"ca.crt": ca})
	o.URL = n.URL
	connect(t, o)
	if err := refused(t, natsconn.Options{URL: n.URL}); !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: err = %v, want a certificate error", err)
	}
	refused(t, natsconn.Options{URL: tlsURL})

	m := testrig.StartNATSWith(t, testrig.NATSOptions{TLS: true, VerifyClients: true})
	connect(t, natsconn.Options{URL: m.URL, CAFile: m.CAFile, CertFile: m.ClientCertFile, KeyFile: m.ClientKeyFile})
	o = fromSecret(t, map[string][]byte{"ca.crt": read(t, m.CAFile), "tls.crt": read(t, m.ClientCertFile), "tls.key": read(t, m.ClientKeyFile)})
	o.URL = m.URL
	connect(t, o)
	refused(t, natsconn.Options{URL: m.URL, CAFile: m.CAFile})
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The connection outlives a server restart, and the log says so without any secret. With
// RetryOnFailedConnect, Connect succeeds while the server is down and connects once it is up;
// without, it fails at once.
func TestNatsconnReconnects(t *testing.T) {
	integration(t)
	t.Parallel()
	n := testrig.StartNATSWith(t, testrig.NATSOptions{Users: []*server.User{{Username: "agent", Password: password}}})
	var logs testrig.LogBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o := natsconn.Options{URL: n.URL, User: "agent", Password: password, Name: "reconnect-test"}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := natsconn.Connect(ctx, o, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	n.Restart(t)
	testrig.Eventually(t, "the reconnection", 30*time.Second, func(context.Context) error {
		if !strings.Contains(logs.String(), "NATS reconnected") {
			return errors.New("not reconnected yet")
		}
		return nc.FlushTimeout(time.Second)
	})
	if !strings.Contains(logs.String(), "NATS disconnected") {
		t.Errorf("the disconnection was not logged:\n%s", logs.String())
	}

	n.Stop()
	if _, err := natsconn.Connect(ctx, o, nil); err == nil {
		t.Error("connected to a stopped server")
	}
	o.RetryOnFailedConnect = true
	late, err := natsconn.Connect(ctx, o, logger)
	if err != nil {
		t.Fatalf("RetryOnFailedConnect: %v", err)
	}
	defer late.Close()
	n.Restart(t)
	testrig.Eventually(t, "the late connection", 30*time.Second, func(context.Context) error {
		if !late.IsConnected() {
			return errors.New("not connected yet")
		}
		return nil
	})
	if strings.Contains(logs.String(), password) {
		t.Errorf("the log holds the password:\n%s", logs.String())
	}
}

// Options that cannot work are refused before any connection, naming the problem.
func TestNatsconnValidate(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	const url = "nats://127.0.0.1:4222"
	tests := []struct {
		name     string
		o        natsconn.Options
		want     string
		conflict bool
	}{
		{"no URL", natsconn.Options{}, "a NATS URL is required", false},
		{"bad scheme", natsconn.Options{URL: "http://127.0.0.1:4222"}, `scheme "http"`, false},
		{"password in URL", natsconn.Options{URL: "nats://agent:" + password + "@127.0.0.1:4222"}, "holds credentials", false},
		{"creds and token", natsconn.Options{URL: url, CredsFile: missing, Token: password}, "creds and token", true},
		{"user and nkey", natsconn.Options{URL: url, User: "u", Password: password, NKeySeed: []byte("SU")}, "nkey and user", true},
		{"file and inline", natsconn.Options{URL: url, CAFile: missing, CA: []byte("pem")}, "CA given both", true},
		{"user without password", natsconn.Options{URL: url, User: "u"}, "user and password go together", false},
		{"password without user", natsconn.Options{URL: url, Password: password}, "user and password go together", false},
		{"cert without key", natsconn.Options{URL: url, Cert: []byte("pem")}, "client certificate and its key", false},
		{"unreadable file", natsconn.Options{URL: url, NKeyFile: missing}, "nkey file: open " + missing, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if errors.Is(err, natsconn.ErrConflict) != tc.conflict {
				t.Errorf("errors.Is(err, ErrConflict) = %v, want %v", !tc.conflict, tc.conflict)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("the error quotes the password: %v", err)
			}
			if _, cerr := natsconn.Connect(context.Background(), tc.o, nil); cerr == nil || cerr.Error() != err.Error() {
				t.Errorf("Connect: err = %v, want Validate's", cerr)
			}
		})
	}
}

func TestNatsconnFromSecret(t *testing.T) {
	o, err := natsconn.FromSecret(map[string][]byte{
		"user": []byte("agent\n"), "password": []byte(password + "\r\n"),
		"ca.crt": []byte("ca"), "tls.crt": []byte("crt"), "tls.key": []byte("key"), "token": []byte("\n"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := natsconn.Options{User: "agent", Password: password, CA: []byte("ca"), Cert: []byte("crt"), Key: []byte("key")}
	if diff := cmp.Diff(want, o); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	bad := []struct {
		name string
		data map[string][]byte
		want string
	}{
		{"unknown key", map[string][]byte{"nats.creds": []byte("x"), "pasword": []byte(password)}, "unknown keys nats.creds, pasword"},
		{"two ways", map[string][]byte{"creds": []byte("x"), "token": []byte(password)}, "creds and token"},
		{"user and username", map[string][]byte{"user": []byte("a"), "username": []byte("b"), "password": []byte(password)}, "user and username differ"},
		{"key without cert", map[string][]byte{"tls.key": []byte(password)}, "client certificate and its key"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := natsconn.FromSecret(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("the error quotes a secret: %v", err)
			}
		})
	}
}

func TestNatsconnBindFlags(t *testing.T) {
	var o natsconn.Options
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.BindFlags(fs)
	err := fs.Parse([]string{"--nats-url", "tls://nats:4222", "--nats-creds", "a.creds", "--nats-nkey", "a.nk",
		"--nats-user", "u", "--nats-password", "p", "--nats-token", "t", "--nats-ca", "ca.pem", "--nats-cert", "c.pem", "--nats-key", "k.pem"})
	if err != nil {
		t.Fatal(err)
	}
	want := natsconn.Options{URL: "tls://nats:4222", CredsFile: "a.creds", NKeyFile: "a.nk", User: "u", Password: "p",
		Token: "t", CAFile: "ca.pem", CertFile: "c.pem", KeyFile: "k.pem"}
	if diff := cmp.Diff(want, o); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
}

// Logging Options shows how they authenticate, never with what.
func TestNatsconnLogValueHidesSecrets(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	for _, o := range []natsconn.Options{
		{URL: "nats://n:4222", User: "agent", Password: password},
		{URL: "nats://n:4222", Token: password, CA: []byte(password)},
		{URL: "nats://n:4222", NKeySeed: []byte(password)},
		{URL: "nats://n:4222", Creds: []byte(password), Cert: []byte(password), Key: []byte(password)},
	} {
		logger.Info("connecting", "options", o)
	}
	if strings.Contains(buf.String(), password) {
		t.Errorf("the log holds a secret:\n%s", buf.String())
	}
	for _, want := range []string{`"auth":"user"`, `"auth":"token"`, `"auth":"nkey"`, `"auth":"creds"`, `"user":"agent"`, `"clientCert":true`} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("the log lacks %s:\n%s", want, buf.String())
		}
	}
}
