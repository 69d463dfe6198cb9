//go:build e2e && demo

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemo is `make demo`: the drill's rig and its core steps (secrets to the standby, the
// standby's values and role, doctor, a failover through a pull request), narrated for a person.
// It then keeps the rig running, with instructions to poke it, until Ctrl-C (or SIGTERM), and
// cleans up. It has its own build tag (demo) besides e2e: `make e2e` never waits for a Ctrl-C.
//
// It is a test so that the rig (internal/testrig, built on testing.TB: clean-up, logs, no
// process left behind) serves the demo exactly as it serves the drill.
func TestDemo(t *testing.T) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	step := 0
	say := func(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }
	title := func(s string) { step++; fmt.Printf("\n[%d] %s\n", step, s) }
	begin := time.Now()

	title("The rig: two clusters, Flux and sealed-secrets in each, Gitea, NATS, the mpha agents")
	p := startPair(t, say)
	steps := []struct {
		title string
		run   func(t *testing.T)
	}{
		{"east's agent exports the TSB secrets, sealed for west", p.secretsReachStandby},
		{"east's agent renders west's management plane: HelmRelease values and role", p.standbyReachesWest},
		{"mpha doctor: could west take over?", func(t *testing.T) { p.doctor(t, p.east, p.west) }},
		{"A failover to west, through a pull request", func(t *testing.T) { p.failover(t, p.west, "demo-failover-west") }},
	}
	for _, s := range steps {
		title(s.title)
		if !t.Run(s.title, s.run) {
			t.FailNow()
		}
	}
	env := p.writeEnv(t)
	fmt.Printf("\nDone in %s. The rig keeps running until Ctrl-C. Poke it:\n\n%s\n", time.Since(begin).Round(time.Second), p.instructions(env))
	<-ctx.Done()
	fmt.Println("\nStopping the rig and cleaning up…")
}

// writeEnv writes a shell file a person sources to reach the rig: both kubeconfigs and the
// Git and NATS settings the CLI reads (the Git token stays in this 0600 file, off the screen).
func (p *pair) writeEnv(t *testing.T) string {
	t.Helper()
	path := filepath.Join(p.dir, "demo.env")
	body := fmt.Sprintf("export KUBECONFIG=%s:%s\nexport MPHA_GIT_USERNAME=%s\nexport MPHA_GIT_PASSWORD=%s\nexport MPHA_NATS_URL=%s\n",
		p.east.cluster.Kubeconfig, p.west.cluster.Kubeconfig, p.gitea.Admin, p.gitea.Token, p.nats.URL)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func (p *pair) instructions(env string) string {
	lines := []string{
		"source " + env + "    # KUBECONFIG (contexts east and west), Git credentials, NATS URL",
		"",
		"Git:      " + p.gitURL + "   (browse " + strings.TrimSuffix(p.gitURL, ".git") + "/pulls for the failover's pull request)",
		"Clusters: kubectl --context west -n tsb get deploy,cronjob,secret,sealedsecret,helmrelease   (if kubectl is installed)",
		"          kubectl --context east -n mpha get dnsendpoint mpha-floating -o yaml",
		"Agents:   " + p.east.agentURL + "/metrics   " + p.west.agentURL + "/metrics",
		"          logs: " + p.east.agent.LogPath(),
		"                " + p.west.agent.LogPath(),
		"",
		"mpha=" + p.mpha + "    # the binary the demo built and runs",
		"$mpha status --repo " + p.gitURL + " --insecure-http-credentials",
		"$mpha audit --repo " + p.gitURL + " --insecure-http-credentials",
		"$mpha doctor --active west --standby east --floating-fqdn " + floatingFQDN,
		"$mpha failover request --to east --reason 'fail back' --wait proposed   # then merge the PR in Gitea",
	}
	return "  " + strings.Join(lines, "\n  ")
}
