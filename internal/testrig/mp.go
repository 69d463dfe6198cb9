package testrig

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/informers"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// What the MP stand-in reads of its cluster (tsb-mp-ha.md §2): the Deployment failover scales, the
// secret front-envoy serves, and the IAM key that signs and validates tokens.
const (
	// DefaultMPNamespace is TSB's namespace.
	DefaultMPNamespace = "tsb"
	// DefaultOrg is the organization the stand-in answers for unless told otherwise.
	DefaultOrg = "tetrate"
	// MPDeployment is TSB's API server Deployment: the stand-in serves while its spec.replicas > 0.
	MPDeployment = "tsb"
	// MPCertSecret holds front-envoy's serving certificate (tls.crt, tls.key).
	MPCertSecret = "tsb-certs"
	// MPSigningKeySecret holds the IAM signing key: its kid (KidData) and private key
	// (SigningKeyData).
	MPSigningKeySecret = "iam-signing-key"
	KidData            = "kid"
	SigningKeyData     = "private.key"
)

// unread is the resource version remembered before a secret was first read.
const unread = "unread"

// MPOptions configure StartMP.
type MPOptions struct {
	// Cluster is the MP's cluster; its tsb Deployment and secrets drive the stand-in.
	Cluster *Cluster
	// Namespace holds the Deployment and secrets (default DefaultMPNamespace).
	Namespace string
	// Addr is the loopback IPv4 address the stand-in listens on, one per MP (e.g. 127.0.10.1): the
	// address the MP's own name resolves to.
	Addr string
	// Port is the HTTPS port. Both MPs of a pair listen on the same one (the floating name's
	// clients dial one port): FreePortOn finds it.
	Port int
	// Org is the organization served (default DefaultOrg).
	Org string
	// DSN is the MP's own database, where the settings row is read (WriteMPSetting).
	DSN string
	// Name is what the stand-in calls itself in its answers (default Cluster.Name).
	Name string
}

// MP stands in for a TSB management plane as its clients see it through front-envoy: it serves
// HTTPS on Addr only while the cluster's tsb Deployment has spec.replicas > 0 (as Flux applied
// role.yaml; the rig has no kubelet, so spec alone decides), with the certificate of the cluster's
// tsb-certs Secret and no other, and accepts a bearer JWT only when its kid is iam-signing-key's
// kid and its signature verifies with that key. Both secrets are re-read when they change (the
// sealed-secrets controller replaces them), so what it enforces is what mpha copied.
//
// API, under /v2/organizations/<org>/:
//
//	GET status          200 MPStatus: which cluster answered
//	GET settings/<key>  200 MPSetting: the row of the MP's own database (404 when absent)
//
// Anything else about TSB (IAM's token exchange, XCP, the UI) is not reproduced.
type MP struct {
	// Name names the MP in answers and logs; Org is the organization served.
	Name, Org string
	// Host and Port are where it listens when up; Addr is host:port.
	Host string
	Port int
	Addr string

	cluster   *Cluster
	namespace string
	dsn       atomic.Pointer[string] // SetDSN: an operator rebuilds the MP's database elsewhere
	log       *slog.Logger
	logPath   string

	deployments appslisters.DeploymentNamespaceLister
	secrets     corelisters.SecretNamespaceLister

	cert atomic.Pointer[tls.Certificate]
	key  atomic.Pointer[verifyingKey]

	mu      sync.Mutex
	srv     *http.Server // non-nil while serving
	ln      net.Listener // srv's listener, closed by down itself: srv.Close misses it until Serve has begun
	serving sync.WaitGroup
	certRV  string // resource versions last loaded ("" absent, unread before the first), to log each change once
	keyRV   string
	retry   *time.Timer
	synced  bool // both caches have synced: before, a missing object may only be unread
	closed  bool
	halted  string // why the stand-in is down whatever its Deployment says (Halt), "" when not
	upSince time.Time
}

// StartMP starts the stand-in for o.Cluster and returns once it has read the Deployment and
// secrets (serving already if the Deployment is scaled up); it stops when t ends.
func StartMP(t testing.TB, o MPOptions) *MP {
	t.Helper()
	if o.Cluster == nil || o.Addr == "" || o.Port == 0 || o.DSN == "" {
		t.Fatalf("mp: Cluster, Addr, Port and DSN are required (got addr %q, port %d)", o.Addr, o.Port)
	}
	m := &MP{Name: o.Name, Org: o.Org, Host: o.Addr, Port: o.Port, Addr: net.JoinHostPort(o.Addr, strconv.Itoa(o.Port)),
		cluster: o.Cluster, namespace: o.Namespace, certRV: unread, keyRV: unread}
	m.dsn.Store(&o.DSN)
	if m.Name == "" {
		m.Name = o.Cluster.Name
	}
	if m.Org == "" {
		m.Org = DefaultOrg
	}
	if m.namespace == "" {
		m.namespace = DefaultMPNamespace
	}
	m.openLog(t)

	ctx, cancel := context.WithCancel(context.Background())
	f := informers.NewSharedInformerFactoryWithOptions(o.Cluster.Clientset, 0, informers.WithNamespace(m.namespace))
	m.deployments = f.Apps().V1().Deployments().Lister().Deployments(m.namespace)
	m.secrets = f.Core().V1().Secrets().Lister().Secrets(m.namespace)
	// Level-triggered: any change to either kind re-reads all three objects from the cache.
	onChange := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { m.sync() },
		UpdateFunc: func(any, any) { m.sync() },
		DeleteFunc: func(any) { m.sync() },
	}
	for _, inf := range []cache.SharedIndexInformer{f.Apps().V1().Deployments().Informer(), f.Core().V1().Secrets().Informer()} {
		if _, err := inf.AddEventHandler(onChange); err != nil {
			cancel()
			t.Fatalf("mp %s: %v", m.Name, err)
		}
	}
	t.Cleanup(func() {
		cancel()
		f.Shutdown()
		m.close()
		if t.Failed() {
			reportLog(t, "mp-"+m.Name, m.logPath)
		}
	})
	f.Start(ctx.Done())
	syncCtx, syncCancel := context.WithTimeout(ctx, time.Minute)
	defer syncCancel()
	for typ, ok := range f.WaitForCacheSync(syncCtx.Done()) {
		if !ok {
			t.Fatalf("mp %s: the %v informer did not sync within a minute", m.Name, typ)
		}
	}
	m.mu.Lock()
	m.synced = true
	m.mu.Unlock()
	m.sync()
	return m
}

// openLog writes the stand-in's log to mp-<name>.log (in $MPHA_RIG_LOGS when set).
func (m *MP) openLog(t testing.TB) {
	t.Helper()
	dir := logDir(t, t.TempDir())
	m.logPath = filepath.Join(dir, "mp-"+m.Name+".log")
	f, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("mp %s: %v", m.Name, err)
	}
	t.Cleanup(func() { f.Close() })
	m.log = slog.New(slog.NewTextHandler(f, nil)).With("mp", m.Name)
}

// URL is the stand-in's base URL by its address (clients of the floating name use the name).
func (m *MP) URL() string { return "https://" + m.Addr }

// LogPath is the stand-in's log file.
func (m *MP) LogPath() string { return m.logPath }

// Serving reports whether the stand-in accepts connections now.
func (m *MP) Serving() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.srv != nil
}

// sync reads the Deployment and both secrets from the informers' cache and brings the stand-in in
// line: certificate and key reloaded, listener opened or closed.
func (m *MP) sync() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || !m.synced || m.halted != "" {
		return
	}
	m.loadCert()
	m.loadKey()
	replicas, err := m.replicas()
	if err != nil {
		m.log.Error("reading the deployment", "deployment", MPDeployment, "err", err)
		return
	}
	switch {
	case replicas > 0 && m.srv == nil:
		m.up(replicas)
	case replicas == 0 && m.srv != nil:
		m.down("deployment " + MPDeployment + " scaled to 0")
	}
}

// replicas is the Deployment's spec.replicas: 0 when it does not exist, 1 when unset (the API
// server's default).
func (m *MP) replicas() (int32, error) {
	d, err := m.deployments.Get(MPDeployment)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if d.Spec.Replicas == nil {
		return 1, nil
	}
	return *d.Spec.Replicas, nil
}

// up opens the listener; when the port cannot be had (another process holds it for a moment) it
// tries again shortly.
func (m *MP) up(replicas int32) {
	ln, err := net.Listen("tcp", m.Addr)
	if err != nil {
		m.log.Error("listening", "addr", m.Addr, "err", err)
		if m.retry == nil {
			m.retry = time.AfterFunc(500*time.Millisecond, func() {
				m.mu.Lock()
				m.retry = nil
				m.mu.Unlock()
				m.sync()
			})
		}
		return
	}
	srv := &http.Server{
		Handler:           m.handler(),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: m.certificate},
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
	}
	m.srv, m.ln, m.upSince = srv, ln, time.Now()
	m.serving.Add(1)
	go func() {
		defer m.serving.Done()
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("serving", "err", err)
		}
	}()
	m.log.Info("serving", "addr", m.Addr, "replicas", replicas)
}

// down closes the listener and every open connection: the pods are gone.
func (m *MP) down(why string) {
	if err := m.srv.Close(); err != nil {
		m.log.Warn("closing", "err", err)
	}
	// The serving goroutine may not have reached Serve yet, and then srv.Close does not know
	// the listener: closing it here makes "down" refuse connections when down returns.
	_ = m.ln.Close()
	m.srv, m.ln = nil, nil
	m.log.Info("stopped serving", "why", why, "served", time.Since(m.upSince).Round(time.Millisecond))
}

// Halt takes the stand-in down whatever its Deployment says, as when its whole cluster fails:
// the pods go with the nodes, while the informers keep the last state they saw.
func (m *MP) Halt(why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.halted = why
	if m.srv != nil {
		m.down(why)
	}
	m.log.Info("halted", "why", why)
}

// Resume ends Halt: the stand-in follows its Deployment again (the cluster is back, its pods
// with the replicas the Deployment had when it went down).
func (m *MP) Resume() {
	m.mu.Lock()
	m.halted = ""
	m.mu.Unlock()
	m.log.Info("resumed")
	m.sync()
}

// SetDSN points the settings reads at another database: the operator rebuilt the MP's database
// on a new server and reconfigured the MP.
func (m *MP) SetDSN(dsn string) { m.dsn.Store(&dsn) }

func (m *MP) close() {
	m.mu.Lock()
	m.closed = true
	if m.retry != nil {
		m.retry.Stop()
	}
	if m.srv != nil {
		m.down("test ended")
	}
	m.mu.Unlock()
	m.serving.Wait()
}

// loadCert takes tsb-certs' tls.crt and tls.key; without them (absent, or not a key pair) the
// stand-in has no certificate and every handshake fails: it never serves another.
func (m *MP) loadCert() {
	s, err := m.secrets.Get(MPCertSecret)
	rv := ""
	if err == nil {
		rv = s.ResourceVersion
	}
	if rv == m.certRV {
		return
	}
	m.certRV = rv
	if err != nil {
		m.cert.Store(nil)
		m.log.Warn("no serving certificate", "secret", MPCertSecret, "err", err)
		return
	}
	c, err := tls.X509KeyPair(s.Data["tls.crt"], s.Data["tls.key"])
	if err != nil {
		m.cert.Store(nil)
		m.log.Warn("no serving certificate", "secret", MPCertSecret, "err", err)
		return
	}
	m.cert.Store(&c)
	m.log.Info("serving certificate loaded", "secret", MPCertSecret, "resourceVersion", rv,
		"subject", c.Leaf.Subject.CommonName, "issuer", c.Leaf.Issuer.CommonName, "dnsNames", c.Leaf.DNSNames)
}

// loadKey takes iam-signing-key's kid and the public part of its private key; without them every
// token is refused.
func (m *MP) loadKey() {
	s, err := m.secrets.Get(MPSigningKeySecret)
	rv := ""
	if err == nil {
		rv = s.ResourceVersion
	}
	if rv == m.keyRV {
		return
	}
	m.keyRV = rv
	if err != nil {
		m.key.Store(nil)
		m.log.Warn("no signing key: every token is refused", "secret", MPSigningKeySecret, "err", err)
		return
	}
	k, err := parseVerifyingKey(s.Data)
	if err != nil {
		m.key.Store(nil)
		m.log.Warn("no signing key: every token is refused", "secret", MPSigningKeySecret, "err", err)
		return
	}
	m.key.Store(k)
	m.log.Info("signing key loaded", "secret", MPSigningKeySecret, "resourceVersion", rv, "kid", k.kid)
}

func (m *MP) certificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := m.cert.Load(); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no certificate: secret %s/%s is absent or holds no key pair", m.namespace, MPCertSecret)
}

// FreePortOn returns a TCP port free on every one of hosts (loopback addresses): the MPs of a
// pair listen on distinct addresses and one port.
func FreePortOn(t testing.TB, hosts ...string) int {
	t.Helper()
	for range 20 {
		if p, ok := tryPortOn(hosts); ok {
			return p
		}
	}
	t.Fatalf("finding a port free on %v: none in 20 tries", hosts)
	return 0
}

func tryPortOn(hosts []string) (int, bool) {
	first, err := net.Listen("tcp", net.JoinHostPort(hosts[0], "0"))
	if err != nil {
		return 0, false
	}
	defer first.Close()
	port := first.Addr().(*net.TCPAddr).Port
	for _, h := range hosts[1:] {
		l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
		if err != nil {
			return 0, false
		}
		defer l.Close()
	}
	return port, true
}
