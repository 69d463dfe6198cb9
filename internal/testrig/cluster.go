package testrig

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
)

// Cluster is a Kubernetes API server (no scheduler, controller-manager or kubelet: objects are
// stored and served, Deployments never get pods). The caller is system:masters; test least
// privilege by impersonating (rest.Config.Impersonate).
type Cluster struct {
	Name string
	// Config is an admin client configuration for the cluster.
	Config *rest.Config
	// Kubeconfig is a kubeconfig file for Config, with the context named Name.
	Kubeconfig string
	// Clientset is a typed client built from Config.
	Clientset kubernetes.Interface
	// CA is the PEM bundle that verifies the API server's certificate.
	CA []byte
	// Token is the admin's bearer token.
	Token string
	// Host and Port are where the API server listens.
	Host string
	Port int
	// Etcd stores the cluster (shared with the clusters started alongside it).
	Etcd *Etcd

	proc *Process
	dir  string
}

// StartCluster starts one cluster with its own etcd.
func StartCluster(t testing.TB, name string) *Cluster {
	t.Helper()
	return StartClusters(t, name)[0]
}

// StartClusters starts one API server per name, sharing one etcd under separate prefixes: the
// clusters see nothing of each other. They start in parallel.
func StartClusters(t testing.TB, names ...string) []*Cluster {
	t.Helper()
	etcd := StartEtcd(t)
	out := make([]*Cluster, len(names))
	for i, n := range names {
		out[i] = launchCluster(t, etcd, n)
	}
	for _, c := range out {
		c.waitReady(t)
	}
	return out
}

func launchCluster(t testing.TB, etcd *Etcd, name string) *Cluster {
	t.Helper()
	dir := t.TempDir()
	c := &Cluster{Name: name, Host: "127.0.0.1", Port: freePort(t), dir: dir, Token: randomHex(t, 16), Etcd: etcd}
	certPEM, keyPEM, err := certutil.GenerateSelfSignedCertKey(c.Host, []net.IP{net.ParseIP(c.Host)}, []string{"localhost", "kubernetes.default.svc"})
	if err != nil {
		t.Fatalf("cluster %s: generating serving certificate: %v", name, err)
	}
	c.CA = certPEM // the serving certificate followed by the CA that signed it
	saKey, saPub := serviceAccountKeys(t)
	files := map[string][]byte{
		"apiserver.crt": certPEM, "apiserver.key": keyPEM, "sa.key": saKey, "sa.pub": saPub,
		"tokens.csv": []byte(c.Token + ",admin,admin,system:masters\n"),
	}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.proc = startProcess(t, procSpec{
		name: "kube-apiserver-" + name,
		path: Bin(t, "kube-apiserver"),
		args: []string{
			"--etcd-servers", etcd.URL, "--etcd-prefix", "/registry-" + name,
			"--bind-address", c.Host, "--advertise-address", c.Host, "--secure-port", fmt.Sprint(c.Port),
			"--tls-cert-file", filepath.Join(dir, "apiserver.crt"), "--tls-private-key-file", filepath.Join(dir, "apiserver.key"),
			"--cert-dir", filepath.Join(dir, "certs"),
			"--service-account-key-file", filepath.Join(dir, "sa.pub"),
			"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
			"--service-account-issuer", "https://kubernetes.default.svc",
			"--token-auth-file", filepath.Join(dir, "tokens.csv"),
			"--authorization-mode", "RBAC",
			"--service-cluster-ip-range", "10.0.0.0/24",
			// No controller-manager creates ServiceAccounts, and no kubernetes Service endpoints
			// can point at loopback.
			"--disable-admission-plugins", "ServiceAccount",
			"--endpoint-reconciler-type", "none",
			"--profiling=false", "-v", "0",
		},
		logDir: logDir(t, dir),
		// The server drains open watches for up to a minute; a test stopping it wants it gone.
		stopGrace: 5 * time.Second,
	})
	c.Config = &rest.Config{
		Host:            fmt.Sprintf("https://%s:%d", c.Host, c.Port),
		BearerToken:     c.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CA},
		QPS:             100, Burst: 200,
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := c.writeKubeconfig(c.Kubeconfig); err != nil {
		t.Fatalf("cluster %s: %v", name, err)
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatalf("cluster %s: client: %v", name, err)
	}
	c.Clientset = cs
	return c
}

func (c *Cluster) waitReady(t testing.TB) {
	t.Helper()
	waitFor(t, "kube-apiserver "+c.Name+" /readyz", 90*time.Second, c.proc, func(ctx context.Context) error {
		_, err := c.Clientset.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	})
}

func (c *Cluster) writeKubeconfig(path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[c.Name] = &clientcmdapi.Cluster{Server: c.Config.Host, CertificateAuthorityData: c.CA}
	cfg.AuthInfos[c.Name] = &clientcmdapi.AuthInfo{Token: c.Token}
	cfg.Contexts[c.Name] = &clientcmdapi.Context{Cluster: c.Name, AuthInfo: c.Name}
	cfg.CurrentContext = c.Name
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("writing kubeconfig: %w", err)
	}
	return nil
}

// Stop stops the API server (the cluster "fails"); its data stays in etcd.
func (c *Cluster) Stop(t testing.TB) {
	t.Helper()
	if err := c.proc.Stop(); err != nil {
		t.Fatal(err)
	}
}

// Restart starts a stopped API server again on the same port and waits until it is ready.
func (c *Cluster) Restart(t testing.TB) {
	t.Helper()
	if err := c.proc.Restart(); err != nil {
		t.Fatal(err)
	}
	c.waitReady(t)
}

// Process is the API server's process, for fault tests.
func (c *Cluster) Process() *Process { return c.proc }

func serviceAccountKeys(t testing.TB) (keyPEM, pubPEM []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
