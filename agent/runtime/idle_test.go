package runtime_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/gitops/seal/sealtest"
	"github.com/mpha-dev/mpha/internal/helmtest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// BenchmarkAgentIdle runs `mpha agent`, built as the image builds it, as the active of a pair
// with nothing to do: the TSB secrets exported, Postgres reporting in the heartbeat. Each op is
// a quiet window (MPHA_BENCH_IDLE_WINDOW, default 10s); it reports the process's CPU in % of one
// core over the windows and its memory at the end (RSS split into the binary's mapped pages and
// its own), once with the chart's default timings and once with the drill's (heartbeat 2s,
// lease retry 500ms). Where the CPU goes is printed from a CPU profile of the last window.
func BenchmarkAgentIdle(b *testing.B) {
	if testing.Short() {
		b.Skip("starts an API server, NATS, a Git server and Postgres")
	}
	bin := filepath.Join(b.TempDir(), "mpha")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "github.com/mpha-dev/mpha/cmd/mpha")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building mpha: %v\n%s", err, out)
	}
	window := 10 * time.Second
	if v := os.Getenv("MPHA_BENCH_IDLE_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("MPHA_BENCH_IDLE_WINDOW: %v", err)
		}
		window = d
	}
	for _, tc := range []struct {
		name   string
		config string
		args   []string
	}{
		{"chart-defaults", "", nil},
		{"drill-timings", "heartbeatInterval: 2s\n", []string{"--lease-duration=4s", "--renew-deadline=3s", "--retry-period=500ms"}},
	} {
		b.Run(tc.name, func(b *testing.B) { idleAgent(b, bin, tc.config, tc.args, window) })
	}
}

func idleAgent(b *testing.B, bin, extraConfig string, args []string, window time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := testrig.StartCluster(b, "east")
	n := testrig.StartNATS(b)
	srv := testrig.StartGitServer(b)
	testrig.InstallFluxCRDs(b, c)
	certPEM := rsaCert(b)
	srv.CreateRepo(b, "org/fleet.git", "main", map[string]string{"mpha/pair.yaml": pairYAML,
		"mpha/clusters/west/sealing-cert.pem": string(rsaCert(b))})
	pg := testrig.StartPostgres(b)
	createDatabase(ctx, b, pg.DSN("postgres"), "tsb")
	certSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(certPEM) })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go certSrv.Serve(ln)
	b.Cleanup(func() { certSrv.Close() })

	c.Apply(b, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: mpha\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: tsb\n"))
	create := func(s *corev1.Secret) {
		if _, err := c.Clientset.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	for name, data := range map[string]map[string][]byte{
		"mpha-git":      srv.Credentials(),
		"mpha-hmac":     {"key": []byte(strings.Repeat("k", 32))},
		"mpha-postgres": {"dsn": []byte(pg.DSN("tsb"))},
	} {
		create(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "mpha"}, Data: data})
	}
	ca := sealtest.NewCA(b, "root")
	for _, s := range (sealtest.Site{Namespace: "tsb", SigningKid: "sig-1", JWKSKid: "jwks-1", CA: ca,
		DNSNames: []string{"mp1.tsb.example.com", "active.tsb.example.com"}}).Secrets(b, &sealtest.Leaks{}) {
		create(s)
	}
	helmtest.Install(b, c.Kubeconfig, "tsb", "mp", helmtest.Values())
	dir := b.TempDir()
	cfgPath := filepath.Join(dir, "agent.yaml")
	cfg := fmt.Sprintf(`cluster: east
pair: tsb-mp
git: {url: %q}
forge: {kind: none, mode: branch}
nats: {url: %q}
sealedSecrets: {certURL: "http://%s/"}
postgres: {dsnSecret: mpha-postgres, database: tsb}
`, srv.URL("org/fleet.git"), n.URL, ln.Addr()) + extraConfig
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	listen := freeAddr(b)
	p := testrig.StartCommand(b, testrig.Command{Name: "mpha-agent", Path: bin,
		Args: append([]string{"agent", "--config", cfgPath, "--kubeconfig", c.Kubeconfig, "--namespace", "mpha",
			"--listen", listen, "--enable-pprof", "--insecure-http-credentials", "--git-cache-dir", filepath.Join(dir, "git")}, args...)})
	url := "http://" + listen
	// Busy until the export committed the secrets and the values their file; then the agent
	// has nothing left to do.
	testrig.Eventually(b, "the export's and the values' commits", time.Minute, func(context.Context) error {
		for _, kind := range []string{"secrets", "values"} {
			if n := kindCommits(b, srv, kind); n == 0 {
				return fmt.Errorf("no %s commit yet", kind)
			}
		}
		return nil
	})
	time.Sleep(5 * time.Second)

	profile := make(chan []byte, 1)
	var cpu time.Duration
	var wall time.Duration
	var last testrig.Usage
	for i := 0; b.Loop(); i++ {
		before, err := p.Usage()
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			profile <- fetch(b, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", url, int(window.Seconds())))
		}()
		time.Sleep(window)
		last, err = p.Usage()
		if err != nil {
			b.Fatal(err)
		}
		cpu += last.CPU - before.CPU
		wall += last.At.Sub(before.At)
		if raw := <-profile; i == 0 {
			topOfProfile(b, "CPU", raw, "-cum")
		}
	}
	select {
	case <-p.Done():
		b.Fatalf("the agent exited; see %s", p.LogPath())
	default:
	}
	topOfProfile(b, "heap", fetch(b, url+"/debug/pprof/heap"), "-sample_index=inuse_space")
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%core")
	b.ReportMetric(float64(last.RSS)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(last.File)/(1<<20), "file-MiB")
	b.ReportMetric(float64(last.Anon)/(1<<20), "anon-MiB")
	b.ReportMetric(float64(last.HWM)/(1<<20), "peak-MiB")
}

func fetch(t testing.TB, url string) []byte {
	resp, err := http.Get(url)
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("%s: %d %v", url, resp.StatusCode, err)
	}
	return b
}

// topOfProfile prints the top of a profile of the agent (go tool pprof -top).
func topOfProfile(t testing.TB, what string, raw []byte, flags ...string) {
	f := filepath.Join(t.TempDir(), what+".pprof")
	if err := os.WriteFile(f, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("go", append(append([]string{"tool", "pprof", "-top", "-nodecount=25"}, flags...), f)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof: %v\n%s", err, out)
	}
	fmt.Printf("%s of %s, idle (go tool pprof -top %s):\n%s\n", what, t.Name(), strings.Join(flags, " "), out)
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func createDatabase(ctx context.Context, t testing.TB, dsn, name string) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
}
