//go:build e2e && demo

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// DemoExitEnv makes the demo exit once it has shown the failover, instead of waiting for Ctrl-C:
// what CI runs, so that a broken demo fails CI.
const DemoExitEnv = "MPHA_DEMO_EXIT"

// TestDemo is `make demo`: the drill's rig and its first steps (firstSteps: secrets to the
// standby, the standby's values and role, doctor, a failover through a pull request), narrated
// for a person. It then keeps the rig running, with instructions to poke it, until Ctrl-C (or
// SIGTERM, or at once with MPHA_DEMO_EXIT=1), and cleans up. It has its own build tag (demo)
// besides e2e: `make e2e` never waits for a Ctrl-C.
//
// It is a test so that the rig (internal/testrig, built on testing.TB: clean-up, logs, no
// process left behind) serves the demo exactly as it serves the drill. `make demo` runs the
// compiled test binary without -test.v: the narration is printed, the components' logs go to a
// folder the demo names.
func TestDemo(t *testing.T) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	begin := time.Now()
	logs := demoLogs(t)
	say := func(format string, args ...any) {
		msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "\n           ")
		fmt.Printf("  [%4.0fs] %s\n", time.Since(begin).Seconds(), msg)
	}
	fmt.Printf("mpha demo: a standby TSB management plane kept ready by two agents, and a failover through a pull request.\n")
	fmt.Printf("Everything runs on this machine; the components' logs go to %s\n", logs)

	current := "the rig"
	t.Cleanup(func() {
		if t.Failed() {
			fmt.Printf("\nThe demo failed at: %s. The components' logs are kept in %s\n", current, logs)
		}
	})
	step := 0
	title := func(s string) { step++; current = s; fmt.Printf("\n[%d] %s\n", step, s) }

	title("The rig: two clusters, Flux and sealed-secrets in each, Gitea, NATS, Postgres, the mpha agents")
	p := startPair(t, say)
	say("Both agents are up and serve /readyz")
	for _, s := range p.firstSteps() {
		title(s.title)
		if !t.Run(s.name, s.run) {
			t.FailNow()
		}
	}
	current = "poking the pair"
	env := p.writeEnv(t)
	title("What the pair looks like now, from the operator's CLI")
	p.heartbeatsAgree(t, say)
	p.show(t, env, "status", "--repo", p.gitURL, "--insecure-http-credentials")
	p.show(t, env, "audit", "--repo", p.gitURL, "--insecure-http-credentials")

	fmt.Printf("\nDone in %s.\n", time.Since(begin).Round(time.Second))
	if v := os.Getenv(DemoExitEnv); v != "" && v != "0" {
		fmt.Printf("%s=%s: stopping the rig instead of waiting for Ctrl-C.\n", DemoExitEnv, v)
		return
	}
	fmt.Printf("The rig keeps running until Ctrl-C. Poke it from another terminal:\n\n%s\n", p.instructions(env))
	<-ctx.Done()
	fmt.Println("\nStopping the rig and cleaning up…")
}

// demoLogs is the folder every component logs to (testrig.LogsEnv), kept when the demo fails
// and removed when it ends well.
func demoLogs(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mpha-demo-logs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(testrig.LogsEnv, dir)
	// Registered first, so it runs last: after every component has stopped writing.
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	return dir
}

// heartbeatsAgree waits until both agents' heartbeats report the roles and epoch pair.yaml holds
// now: each agent re-reads pair.yaml every 30 s (heartbeat.DefaultRefresh), so right after a
// failover `mpha status` would show them behind.
func (p *pair) heartbeatsAgree(t *testing.T, say func(string, ...any)) {
	t.Helper()
	start := time.Now()
	testrig.Eventually(t, "both heartbeats to report pair.yaml's roles", 2*time.Minute, func(context.Context) error {
		out, code := p.cli(t, p.demoEnv(t), "status", "--repo", p.gitURL, "--insecure-http-credentials", "-o", "json")
		if code != 0 {
			return fmt.Errorf("mpha status exited %d: %s", code, out)
		}
		var st struct {
			Pair     struct{ Epoch int64 }
			Clusters []struct {
				Name, Role string
				Heartbeat  *struct{ Data *event.Heartbeat }
			}
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return fmt.Errorf("mpha status -o json: %w", err)
		}
		for _, c := range st.Clusters {
			if c.Heartbeat == nil || c.Heartbeat.Data == nil {
				return fmt.Errorf("no heartbeat from %s", c.Name)
			}
			if hb := c.Heartbeat.Data; hb.Role != c.Role || hb.Epoch != st.Pair.Epoch {
				return fmt.Errorf("%s reports %s at epoch %d; pair.yaml: %s at %d", c.Name, hb.Role, hb.Epoch, c.Role, st.Pair.Epoch)
			}
		}
		return nil
	})
	say("Both agents' heartbeats report the new roles (%s after the failover: each agent re-reads pair.yaml every 30s)",
		time.Since(start).Round(time.Second))
}

// show runs a read-only mpha command as the person would (the environment of demo.env) and
// prints what it printed; it must succeed.
func (p *pair) show(t *testing.T, envFile string, args ...string) {
	t.Helper()
	out, code := p.cli(t, p.demoEnv(t), args...)
	if code != 0 {
		t.Fatalf("mpha %s exited %d:\n%s", strings.Join(args, " "), code, out)
	}
	fmt.Printf("\n  $ source %s; mpha %s\n", filepath.Base(envFile), strings.Join(args, " "))
	for _, line := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		fmt.Printf("    %s\n", line)
	}
}

// demoEnv is what demo.env exports.
func (p *pair) demoEnv(t *testing.T) []string {
	t.Helper()
	return []string{
		"KUBECONFIG=" + p.east.cluster.Kubeconfig + ":" + p.west.cluster.Kubeconfig,
		"MPHA_GIT_USERNAME=" + p.gitea.Admin,
		"MPHA_GIT_PASSWORD=" + p.gitea.Token,
		"MPHA_NATS_URL=" + p.nats.URL,
	}
}

// writeEnv writes a shell file a person sources to reach the rig: both kubeconfigs and the
// Git and NATS settings the CLI reads (the Git token and the Gitea password stay in this 0600
// file, off the screen).
func (p *pair) writeEnv(t *testing.T) string {
	t.Helper()
	path := filepath.Join(p.dir, "demo.env")
	var b strings.Builder
	for _, kv := range p.demoEnv(t) {
		fmt.Fprintf(&b, "export %s\n", kv)
	}
	fmt.Fprintf(&b, "# Gitea's web UI: log in as %s with this password\nexport GITEA_PASSWORD=%s\n", p.gitea.Admin, p.gitea.Password)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *pair) instructions(env string) string {
	web := strings.TrimSuffix(p.gitURL, ".git")
	lines := []string{
		"source " + env + "    # KUBECONFIG (contexts east and west), Git credentials, NATS URL",
		"mpha=" + p.mpha + "    # the binary the demo built and runs",
		"",
		"$mpha status --repo " + p.gitURL + " --insecure-http-credentials   # who is active, each agent's heartbeat",
		"$mpha audit --repo " + p.gitURL + " --insecure-http-credentials    # every failover and export, from git log",
		"$mpha doctor --active west --standby east --floating-fqdn " + floatingFQDN + "   # could east take over again?",
		"$mpha failover request --repo " + p.gitURL + " --insecure-http-credentials --to east --reason 'fail back' --wait proposed",
		"                                  # a failback: prints its pull request; merge it in Gitea, then watch status",
		"",
		"Gitea:    " + web + "/pulls   (log in as " + p.gitea.Admin + ", password $GITEA_PASSWORD)",
		"Clusters: kubectl --context west -n tsb get deploy,cronjob,secret,sealedsecret,helmrelease   (if kubectl is installed)",
		"          kubectl --context east -n mpha get dnsendpoint mpha-floating -o yaml",
		"DNS:      dig @" + p.dns.Host + " -p " + strconv.Itoa(p.dns.Port) + " +norecurse " + floatingFQDN +
			"   (BIND, as external-dns published it; if dig is installed)",
		"Clients:  the two MP clients keep polling " + floatingFQDN + " through BIND; each change prints here (fail back and watch them move)",
		"Agents:   " + p.east.agentURL + "/metrics   " + p.west.agentURL + "/metrics",
		"Logs:     " + filepath.Dir(p.east.agent.LogPath()),
	}
	return "  " + strings.Join(lines, "\n  ")
}
