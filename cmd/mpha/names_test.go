package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// unreachableKubeconfig has the contexts east and west, both pointing at a port nobody listens
// on: a command that contacted a cluster would fail with a connection error, not a flag's.
func unreachableKubeconfig(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	for _, name := range []string{"east", "west"} {
		cfg.Clusters[name] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: "unused"}
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	cfg.CurrentContext = "east"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// nameFlagCases are bad names given to every flag that names a cluster, a pair, a kind or a
// kubeconfig context; natsURL is where failover request would publish. Each error names the flag
// and shows the value escaped.
func nameFlagCases(t *testing.T, natsURL string) []struct {
	name, want string
	args       []string
} {
	request := []string{"failover", "request", "--nats-url", natsURL, "--timeout", "5s", "--reason", "r"}
	kubeconfig := unreachableKubeconfig(t)
	doctor := []string{"--kubeconfig", kubeconfig, "doctor"}
	return []struct {
		name, want string
		args       []string
	}{
		{"request: a path as --to", `--to: cluster name "../etc": want 1 to 63 lowercase letters`, append(request, "--to", "../etc")},
		{"request: upper case --to", `--to: cluster name "West"`, append(request, "--to", "West")},
		{"request: an escape in --to", `--to: cluster name "\x1b[31mwest"`, append(request, "--to", "\x1b[31mwest")},
		{"request: no --to", `--to is required`, request},
		{"request: a subject wildcard as --pair", `--pair: pair name "tsb.>"`, append(request, "--to", "west", "--pair", "tsb.>")},
		{"request: an empty --pair", `--pair is required`, append(request, "--to", "west", "--pair", "")},
		{"request: a bad --mode", `--mode "yolo": want planned, emergency or drill`, append(request, "--to", "west", "--mode", "yolo")},
		{"request: an unknown --force", `--force "everything": not a check`, append(request, "--to", "west", "--mode", "emergency", "--force", "everything")},
		{"plan: a path as --to", `--to: cluster name "../etc"`, []string{"failover", "plan", "--repo", t.TempDir(), "--to", "../etc"}},
		{"plan: no --to", `--to is required`, []string{"failover", "plan", "--repo", t.TempDir()}},
		{"status: a bad --pair", `--pair: pair name "a/b"`, []string{"status", "--repo", t.TempDir(), "--pair", "a/b"}},
		{"audit: a path as --kind", `--kind: kind "../../etc/passwd"`, []string{"audit", "--repo", t.TempDir(), "--kind", "failover,../../etc/passwd"}},
		{"audit: an empty --kind among others", `--kind: kind ""`, []string{"audit", "--repo", t.TempDir(), "--kind", "failover,,values"}},
		{"export: a path as --peer", `--peer: cluster name "../west"`, []string{"secrets", "export", "--once", "--config", "missing.yaml", "--peer", "../west"}},
		{"doctor: an unknown --standby", `--standby "../x": no such context in the kubeconfig (it has: east, west)`, append(doctor, "--active", "east", "--standby", "../x")},
		{"doctor: an escape in --active", `--active "\x1b]0;pwned\a": a context name is printable text`, append(doctor, "--active", "\x1b]0;pwned\a", "--standby", "west")},
	}
}

// Every bad name is refused before anything is read, sent or contacted: the NATS URL, the
// clusters and the config file here do not exist, so getting that far would fail differently.
func TestNameFlagsAreCheckedFirst(t *testing.T) {
	for _, tc := range nameFlagCases(t, "nats://127.0.0.1:1") {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if strings.ContainsRune(err.Error()+out+errOut, '\x1b') {
				t.Errorf("an escape reached the output: %q", err.Error()+out+errOut)
			}
		})
	}
}

// With a real NATS and the pair's stream in place, no refused request is published: the stream
// stays empty. (A good request on the same setup is published: the check can fail.)
func TestRefusedRequestPublishesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n := testrig.StartNATS(t)
	js := n.JetStream(t)
	stream, err := event.EnsureStream(ctx, js, "tsb-mp")
	if err != nil {
		t.Fatal(err)
	}
	published := func() uint64 {
		t.Helper()
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	for _, tc := range nameFlagCases(t, n.URL) {
		if !strings.HasPrefix(tc.name, "request:") {
			continue
		}
		if _, _, err := run(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one containing %q", tc.name, err, tc.want)
		}
		if got := published(); got != 0 {
			t.Fatalf("%s: %d message(s) on the stream, want none", tc.name, got)
		}
	}
	// The same request with a good --to is published (and waits in vain for an agent).
	_, _, err = run(t, "failover", "request", "--nats-url", n.URL, "--timeout", "1s", "--reason", "r", "--to", "west")
	if code := exitCode(err); code != exitNoAnswer {
		t.Errorf("a good request: exit %d (%v), want %d", code, err, exitNoAnswer)
	}
	if got := published(); got != 1 {
		t.Errorf("a good request: %d message(s) on the stream, want 1", got)
	}
}
