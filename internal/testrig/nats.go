package testrig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// NATS is a nats-server with JetStream, embedded in the test binary, on a fixed loopback port and
// a file store that survive Restart.
type NATS struct {
	// URL is the client URL (nats://127.0.0.1:PORT).
	URL string
	// StoreDir holds JetStream's file storage.
	StoreDir string
	// CAFile is the PEM of the CA that signed the server's certificate (NATSOptions.TLS), and
	// ClientCertFile and ClientKeyFile a client certificate it signed (for VerifyClients).
	CAFile, ClientCertFile, ClientKeyFile string
	// CredsFile holds a user's JWT and nkey seed, the decorated .creds format
	// (NATSOptions.Operator).
	CredsFile string

	opts server.Options
	mu   sync.Mutex
	srv  *server.Server
}

// NATSOptions configure StartNATSWith. The zero value is StartNATS's server: no authentication,
// no TLS.
type NATSOptions struct {
	// Users (username and password) and Nkeys (public user nkeys) may connect; without
	// Permissions they may do anything. They live in the global account, which has JetStream.
	Users []*server.User
	Nkeys []*server.NkeyUser
	// Token, if set, is the token every client must present (not with Users or Nkeys).
	Token string
	// TLS makes the server require TLS, with a certificate for 127.0.0.1 and localhost signed
	// by a CA made for this server (NATS.CAFile).
	TLS bool
	// VerifyClients, with TLS, also requires a client certificate signed by that CA; one is in
	// NATS.ClientCertFile and NATS.ClientKeyFile.
	VerifyClients bool
	// Operator runs the server in operator (decentralized JWT) mode: an operator, a system
	// account, one account with JetStream and one user of it, whose credentials are in
	// NATS.CredsFile. Not with Users, Nkeys or Token.
	Operator bool
}

// StartNATS starts the server; it shuts down when t ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	return StartNATSWith(t, NATSOptions{})
}

// StartNATSWith starts the server with authentication and TLS as o says; it shuts down when t
// ends. Certificates and credentials are made for this server and kept in its temp directory.
func StartNATSWith(t testing.TB, o NATSOptions) *NATS {
	t.Helper()
	dir := t.TempDir()
	port := freePort(t)
	n := &NATS{
		URL:      fmt.Sprintf("nats://127.0.0.1:%d", port),
		StoreDir: filepath.Join(dir, "jetstream"),
		opts: server.Options{
			ServerName: "rig", Host: "127.0.0.1", Port: port,
			JetStream: true, StoreDir: filepath.Join(dir, "jetstream"),
			NoSigs: true, LogFile: filepath.Join(logDir(t, dir), "nats.log"), Logtime: true,
			Users: o.Users, Nkeys: o.Nkeys, Authorization: o.Token,
			// Above the 1 MiB default, so tests can send the agents oversized requests that the
			// agent, not the server, must refuse.
			MaxPayload: 4 << 20,
		},
	}
	if o.TLS {
		if err := n.configureTLS(dir, o.VerifyClients); err != nil {
			t.Fatal(err)
		}
	}
	if o.Operator {
		if err := n.configureOperator(dir); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			reportLog(t, "nats", n.opts.LogFile)
		}
	})
	return n
}

func (n *NATS) start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	opts := n.opts // the server keeps and mutates its options
	opts.Users = append([]*server.User(nil), n.opts.Users...)
	opts.Nkeys = append([]*server.NkeyUser(nil), n.opts.Nkeys...)
	s, err := server.NewServer(&opts)
	if err != nil {
		return fmt.Errorf("nats: %w", err)
	}
	s.ConfigureLogger()
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("nats: not ready on %s after 15s (see %s)", n.URL, n.opts.LogFile)
	}
	n.srv = s
	return nil
}

// Stop shuts the server down (a NATS outage); it is a no-op when already stopped.
func (n *NATS) Stop() {
	n.mu.Lock()
	s := n.srv
	n.srv = nil
	n.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart stops the server if it runs and starts it again on the same port and store.
func (n *NATS) Restart(t testing.TB) {
	t.Helper()
	n.Stop()
	if err := n.start(); err != nil {
		t.Fatal(err)
	}
}

// configureTLS makes a CA, a server certificate and a client certificate in dir and sets the
// server to require TLS (and client certificates when verify).
func (n *NATS) configureTLS(dir string, verify bool) error {
	ca, caKey, err := newCert(nil, nil, pkix.Name{CommonName: "mpha rig NATS CA"}, nil)
	if err != nil {
		return err
	}
	srv, srvKey, err := newCert(ca, caKey, pkix.Name{CommonName: "nats"}, func(c *x509.Certificate) {
		c.DNSNames = []string{"localhost"}
		c.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	if err != nil {
		return err
	}
	client, clientKey, err := newCert(ca, caKey, pkix.Name{CommonName: "mpha-client"}, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
	if err != nil {
		return err
	}
	n.CAFile = filepath.Join(dir, "ca.crt")
	n.ClientCertFile, n.ClientKeyFile = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	for path, b := range map[string][]byte{
		n.CAFile: certPEM(ca), n.ClientCertFile: certPEM(client), n.ClientKeyFile: keyPEM(clientKey),
	} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return fmt.Errorf("nats TLS: %w", err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{srv.Raw}, PrivateKey: srvKey, Leaf: srv}},
		ClientCAs:    pool,
	}
	if verify {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	n.opts.TLS, n.opts.TLSVerify, n.opts.TLSConfig, n.opts.TLSTimeout = true, verify, cfg, 5
	return nil
}

// newCert makes an ECDSA P-256 certificate for subject, signed by parent (self-signed CA when
// parent is nil); edit adjusts the template.
func newCert(parent *x509.Certificate, parentKey *ecdsa.PrivateKey, subject pkix.Name, edit func(*x509.Certificate)) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("nats TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("nats TLS serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		parent, parentKey = tmpl, key
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("nats TLS certificate %s: %w", subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("nats TLS certificate %s: %w", subject.CommonName, err)
	}
	return cert, key, nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEM(k *ecdsa.PrivateKey) []byte {
	der, _ := x509.MarshalECPrivateKey(k) // cannot fail for a P-256 key
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// configureOperator makes an operator, a system account, an account with JetStream and a user of
// it, writes the user's credentials to dir/user.creds and trusts the operator.
func (n *NATS) configureOperator(dir string) error {
	op, err := nkeys.CreateOperator()
	if err != nil {
		return fmt.Errorf("nats operator: %w", err)
	}
	opPub, _ := op.PublicKey()
	resolver := &server.MemAccResolver{}
	sysPub, _, err := newAccount(op, resolver, "SYS", false)
	if err != nil {
		return err
	}
	_, acct, err := newAccount(op, resolver, "MPHA", true)
	if err != nil {
		return err
	}
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "rig"
	oc.SystemAccount = sysPub
	creds, err := newUserCreds(acct, "mpha")
	if err != nil {
		return err
	}
	n.CredsFile = filepath.Join(dir, "user.creds")
	if err := os.WriteFile(n.CredsFile, creds, 0o600); err != nil {
		return fmt.Errorf("nats operator: %w", err)
	}
	n.opts.TrustedOperators = []*jwt.OperatorClaims{oc}
	n.opts.AccountResolver = resolver
	n.opts.SystemAccount = sysPub
	return nil
}

// newAccount makes an account signed by op, stores its JWT in resolver and returns its public key
// and key pair; jetStream gives it unlimited JetStream.
func newAccount(op nkeys.KeyPair, resolver *server.MemAccResolver, name string, jetStream bool) (string, nkeys.KeyPair, error) {
	kp, err := nkeys.CreateAccount()
	if err != nil {
		return "", nil, fmt.Errorf("nats account %s: %w", name, err)
	}
	pub, _ := kp.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	if jetStream {
		ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	}
	token, err := ac.Encode(op)
	if err != nil {
		return "", nil, fmt.Errorf("nats account %s: %w", name, err)
	}
	if err := resolver.Store(pub, token); err != nil {
		return "", nil, fmt.Errorf("nats account %s: %w", name, err)
	}
	return pub, kp, nil
}

// newUserCreds makes a user of acct and returns its .creds file.
func newUserCreds(acct nkeys.KeyPair, name string) ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, fmt.Errorf("nats user %s: %w", name, err)
	}
	pub, _ := kp.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	token, err := uc.Encode(acct)
	if err != nil {
		return nil, fmt.Errorf("nats user %s: %w", name, err)
	}
	seed, _ := kp.Seed()
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		return nil, fmt.Errorf("nats user %s: %w", name, err)
	}
	return creds, nil
}
