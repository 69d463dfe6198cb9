package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `mpha agent` refuses to start without a configuration, or with one that does not validate,
// naming the key.
func TestAgentRefusesBadConfig(t *testing.T) {
	if _, _, err := run(t, "agent"); err == nil || !strings.Contains(err.Error(), "--config is required") {
		t.Errorf("no config: %v", err)
	}
	file := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(file, []byte("cluster: east\npair: tsb-mp\ngit: {url: https://git.example.com/fleet.git}\nnats: {url: nats://nats:4222}\nforge: {kind: none, mode: branch}\nflux: {kustomization: Not_Valid}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "agent", "--config", file, "--kubeconfig", filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "flux.kustomization") {
		t.Errorf("bad config: %v", err)
	}
	// --set repairs the file's key, and names a bad key of its own.
	if _, _, err := run(t, "agent", "--config", file, "--set", "flux.kustomization=mpha", "--set", "health.port=99999",
		"--kubeconfig", filepath.Join(t.TempDir(), "none")); err == nil || strings.Contains(err.Error(), "flux.kustomization") ||
		!strings.Contains(err.Error(), "health.port") {
		t.Errorf("--set: %v", err)
	}
}
