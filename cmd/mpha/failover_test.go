package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"
	gogit "github.com/go-git/go-git/v5"
	gitconfig "github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/plan"
	"github.com/mpha-dev/mpha/gitops/role"
	"github.com/mpha-dev/mpha/internal/golden"
	"github.com/mpha-dev/mpha/internal/testrig"
)

const failoverPairYAML = gitops.Header + `apiVersion: mpha.dev/v1alpha1
kind: Pair
name: tsb-mp
floatingFQDN: active.tsb.example.com
clusters:
  - {name: east, mpFQDN: mp1.tsb.example.com}
  - {name: west, mpFQDN: mp2.tsb.example.com}
active: east
epoch: 7
`

// failoverFiles is a pair with east active and west standby, as the agents leave it.
func failoverFiles(t *testing.T) map[string]string {
	t.Helper()
	l, _ := gitops.NewLayout("mpha")
	deps := []role.Workload{{Name: "tsb", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "tsb"}}}}
	east, err := role.Active("tsb", 1, deps, nil).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	west, err := role.Standby("tsb", deps, nil, false).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{l.Pair(): failoverPairYAML, l.Role("east"): string(east), l.Role("west"): string(west)}
}

// writeSigningKey writes a PKCS#8 PEM ed25519 key, as openssl genpkey makes it.
func writeSigningKey(t *testing.T) (string, ed25519.PublicKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "signer.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, pub
}

// `mpha failover request` against west's real failover handler (signatures required): a signed
// request prints its phases and the branch; asked again with the same id it gets the same answer;
// an unsigned one and a stale one are refused (exit 3); a dry run prints the plan;
// without an agent of the pair there is no stream, and without an answer exit 5.
func TestFailoverRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server and a Git server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	srv := testrig.StartGitServer(t)
	srv.CreateRepo(t, "org/fleet.git", "main", failoverFiles(t))
	n := testrig.StartNATS(t)
	js := n.JetStream(t)
	auth, err := gitrepo.NewAuth(srv.URL("org/fleet.git"), srv.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	repo, err := gitrepo.New(gitrepo.Options{URL: srv.URL("org/fleet.git"), Auth: auth, AllowHTTPCredentials: true,
		Author: git.Signature{Name: "mpha agent (west)", Email: "mpha@west.invalid"}})
	if err != nil {
		t.Fatal(err)
	}
	keyFile, pub := writeSigningKey(t)
	trusted, err := event.ParseTrustedKey(event.FormatTrustedKey(pub))
	if err != nil {
		t.Fatal(err)
	}
	l, _ := gitops.NewLayout("mpha")
	h, err := failover.New(js, repo, failover.Options{Cluster: "west", Pair: "tsb-mp", Layout: l,
		RequireSigned: true, TrustedKeys: []event.TrustedKey{trusted}, Follow: failover.FollowOptions{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := event.EnsureStream(ctx, js, "tsb-mp"); err != nil { // what the agent does first
		t.Fatal(err)
	}
	agentCtx, stopAgent := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = h.Run(agentCtx) }()
	defer func() { stopAgent(); <-done }()

	base := []string{"failover", "request", "--nats-url", n.URL, "--sign-key", keyFile, "--requested-by", "alice", "--timeout", "30s"}
	out, errOut, err := run(t, append(base, "--to", "west", "--reason", "east degraded", "--id", "cli-1", "--expected-epoch", "7", "-o", "json")...)
	if err != nil {
		t.Fatalf("request: %v\n%s", err, errOut)
	}
	var sts []event.FailoverStatus
	if err := json.Unmarshal([]byte(out), &sts); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(sts) != 3 || sts[0].Phase != event.PhaseAccepted || sts[2].Phase != event.PhaseProposed || sts[2].Branch != "mpha/failover/cli-1" {
		t.Errorf("statuses %+v", sts)
	}
	if bs, err := repo.Branches(ctx, "mpha/failover/"); err != nil || len(bs) != 1 || !strings.Contains(bs[0].Message, "Mpha-Requested-By: alice") {
		t.Errorf("branches %+v, %v", bs, err)
	}

	// Asked again with the same id: the same answer, in text.
	out, _, err = run(t, append(base, "--to", "west", "--reason", "east degraded", "--id", "cli-1")...)
	if err != nil || !strings.Contains(out, "proposed: branch mpha/failover/cli-1") {
		t.Errorf("asked again: %v\n%s", err, out)
	}

	// Refusals exit 3 with the reason.
	for _, tc := range []struct {
		args   []string
		reason string
	}{
		{[]string{"failover", "request", "--nats-url", n.URL, "--timeout", "30s", "--to", "west", "--reason", "x", "--id", "cli-unsigned"}, "(unsigned)"},
		{append(base, "--to", "west", "--reason", "x", "--id", "cli-stale", "--expected-epoch", "3"), "(stale-epoch)"},
	} {
		out, _, err := run(t, tc.args...)
		var ended *requestEndedError
		if !errors.As(err, &ended) || ended.ExitCode() != exitRefused || !strings.Contains(out, tc.reason) {
			t.Errorf("%s: %v\n%s", tc.reason, err, out)
		}
	}

	// A dry run prints the plan and the diff, and pushes nothing new.
	out, _, err = run(t, append(base, "--to", "west", "--reason", "x", "--dry-run", "--id", "cli-dry")...)
	if err != nil || !strings.Contains(out, "dry run: nothing pushed") || !strings.Contains(out, "+active: west") {
		t.Errorf("dry run: %v\n%s", err, out)
	}
	if bs, _ := repo.Branches(ctx, "mpha/"); len(bs) != 1 {
		t.Errorf("a dry run pushed: %+v", bs)
	}

	// Someone merges the branch (a fast-forward); `mpha audit` on a fresh clone lists the failover.
	head := sts[2].Commit
	clone, err := gogit.CloneContext(ctx, memory.NewStorage(), nil, &gogit.CloneOptions{URL: srv.URL("org/fleet.git"), Auth: srv.Auth(), NoCheckout: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := clone.PushContext(ctx, &gogit.PushOptions{Auth: srv.Auth(),
		RefSpecs: []gitconfig.RefSpec{"refs/remotes/origin/mpha/failover/cli-1:refs/heads/main"}}); err != nil {
		t.Fatalf("merging: %v", err)
	}
	t.Setenv("MPHA_GIT_USERNAME", srv.Username)
	t.Setenv("MPHA_GIT_PASSWORD", srv.Password)
	out, _, err = run(t, "audit", "--repo", srv.URL("org/fleet.git"), "--insecure-http-credentials", "--kind", "failover", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var entries []struct {
		Commit, Event, From, To, Mode, RequestedBy, Reason, Preflight string
		Epoch                                                         int64
	}
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(entries) != 1 || entries[0].Commit != head || entries[0].Event != "cli-1" || entries[0].Epoch != 8 ||
		entries[0].From != "east" || entries[0].To != "west" || entries[0].RequestedBy != "alice" || entries[0].Reason != "east degraded" {
		t.Errorf("audit: %s", out)
	}

	// No agent of this pair ever started: no stream.
	if _, _, err := run(t, append(base, "--pair", "other", "--to", "west", "--reason", "x")...); err == nil || !strings.Contains(err.Error(), "no agent of pair other") {
		t.Errorf("unknown pair: %v", err)
	}
	// A stream but nobody answering west of this pair: exit 5.
	if _, err := event.EnsureStream(ctx, js, "quiet"); err != nil {
		t.Fatal(err)
	}
	_, _, err = run(t, append(base, "--pair", "quiet", "--to", "west", "--reason", "x", "--timeout", "2s")...)
	var ended *requestEndedError
	if !errors.As(err, &ended) || ended.ExitCode() != exitNoAnswer {
		t.Errorf("no answer: %v", err)
	}
}

// The pair `failover request` asks is pair.yaml's: from --repo (a URL on the rig's Git server),
// or from a checkout in the current directory; --pair alone is taken as given, and refused when
// pair.yaml names another pair. Which pair was asked shows in the stream the request lands in.
func TestFailoverRequestPairFromRepo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server and a Git server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	files := failoverFiles(t)
	files["mpha/pair.yaml"] = strings.Replace(failoverPairYAML, "name: tsb-mp", "name: blue-pair", 1)
	srv := testrig.StartGitServer(t)
	srv.CreateRepo(t, "org/fleet.git", "main", files)
	t.Setenv("MPHA_GIT_USERNAME", srv.Username)
	t.Setenv("MPHA_GIT_PASSWORD", srv.Password)
	checkout := t.TempDir()
	for p, c := range files {
		if err := os.MkdirAll(filepath.Join(checkout, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(checkout, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n := testrig.StartNATS(t)
	js := n.JetStream(t)
	// Streams of both pairs, as their agents would make them; no agent answers (exit 5).
	for _, p := range []string{"blue-pair", "tsb-mp"} {
		if _, err := event.EnsureStream(ctx, js, p); err != nil {
			t.Fatal(err)
		}
	}
	requested := func(pair string) uint64 {
		subj, _ := event.NewSubjects(pair)
		s, err := js.Stream(ctx, subj.Stream())
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj.Requested()))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	repo := []string{"--repo", srv.URL("org/fleet.git"), "--insecure-http-credentials"}
	ask := func(t *testing.T, dir string, args ...string) (string, string, error) {
		t.Helper()
		if dir != "" {
			t.Chdir(dir)
		}
		return run(t, append([]string{"failover", "request", "--nats-url", n.URL, "--to", "west", "--reason", "x", "--timeout", "1s"}, args...)...)
	}
	for _, tc := range []struct {
		name     string
		dir      string
		args     []string
		wantPair string // the pair asked; "" for an error
		wantErr  string
		wantNote bool
	}{
		{"--repo URL", "", repo, "blue-pair", "", false},
		{"--repo URL and an agreeing --pair", "", append(repo, "--pair", "blue-pair"), "blue-pair", "", false},
		{"--repo URL and another --pair", "", append(repo, "--pair", "tsb-mp"), "", "--pair tsb-mp, but pair.yaml in http://", false},
		{"a checkout in the current directory", checkout, nil, "blue-pair", "", false},
		{"--repo PATH", "", []string{"--repo", checkout}, "blue-pair", "", false},
		{"--pair alone", t.TempDir(), []string{"--pair", "tsb-mp"}, "tsb-mp", "", false},
		{"--repo without pair.yaml", "", []string{"--repo", t.TempDir()}, "", "pair.yaml is not in", false},
		{"neither, nor a pair.yaml here", t.TempDir(), nil, "tsb-mp", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := map[string]uint64{"blue-pair": requested("blue-pair"), "tsb-mp": requested("tsb-mp")}
			out, errOut, err := ask(t, tc.dir, tc.args...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("err = %v, want one containing %q", err, tc.wantErr)
				}
			} else {
				var ended *requestEndedError
				if !errors.As(err, &ended) || ended.ExitCode() != exitNoAnswer || !strings.Contains(out, " of "+tc.wantPair+" to west") {
					t.Errorf("err = %v, want no answer from pair %s:\n%s%s", err, tc.wantPair, out, errOut)
				}
			}
			for _, p := range []string{"blue-pair", "tsb-mp"} {
				want := before[p]
				if p == tc.wantPair {
					want++
				}
				if got := requested(p); got != want {
					t.Errorf("pair %s: %d requests in its stream, want %d", p, got, want)
				}
			}
			if note := strings.Contains(errOut, "asking pair tsb-mp"); note != tc.wantNote {
				t.Errorf("note on stderr: %v, want %v: %q", note, tc.wantNote, errOut)
			}
		})
	}
}

// `mpha failover plan` renders the commit from a local checkout: the four files, the diff and the
// contract's trailers; an unknown cluster or the active one is an error.
func TestFailoverPlan(t *testing.T) {
	dir := t.TempDir()
	for p, s := range failoverFiles(t) {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, _, err := run(t, "failover", "plan", "--repo", dir, "--to", "west")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Failover east → west (epoch 8)", "mpha/pair.yaml: active east → west, epoch 7 → 8",
		"+++ b/mpha/dns/floating.yaml", "-active: east", "Mpha-Epoch: 8", "Mpha-To: west", "Mpha-Kind: failover"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, "failover", "plan", "--repo", dir, "--to", "west", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var v planView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if v.Epoch != 8 || v.From != "east" || len(v.Files) != 4 || v.Branch != "mpha/failover/preview" {
		t.Errorf("plan json: %+v", v)
	}
	if _, _, err := run(t, "failover", "plan", "--repo", dir, "--to", "north"); err == nil || !strings.Contains(err.Error(), "north") {
		t.Errorf("unknown cluster: %v", err)
	}
	// The agent's own check of a request against pair.yaml (plan.Admit) refuses the active.
	if _, _, err := run(t, "failover", "plan", "--repo", dir, "--to", "east"); !errors.Is(err, plan.ErrAlreadyActive) {
		t.Errorf("the active cluster as target: %v", err)
	}
	if _, _, err := run(t, "failover", "plan", "--repo", t.TempDir(), "--to", "west"); err == nil || !strings.Contains(err.Error(), "pair.yaml") {
		t.Errorf("no pair.yaml: %v", err)
	}
}

// `mpha failover plan` on manifests/fleet, the repository the install guide starts from, shows
// the failover as git would: floating.yaml's one target line, pair.yaml's active and epoch lines
// and its new lastFailover, the user's comment and key order kept.
func TestFailoverPlanFleet(t *testing.T) {
	before := time.Now().UTC().Truncate(time.Second)
	out, _, err := run(t, "failover", "plan", "--repo", "../../manifests/fleet", "--to", "west")
	if err != nil {
		t.Fatal(err)
	}
	// lastFailover.at is the time of the run: checked here, then masked with the blob id it makes.
	at := regexp.MustCompile(`(?m)^\+  at: "([^"]+)"$`).FindStringSubmatch(out)
	if at == nil {
		t.Fatalf("no lastFailover.at in the diff:\n%s", out)
	}
	if ts, err := time.Parse(time.RFC3339, at[1]); err != nil || ts.Before(before) || ts.After(time.Now()) {
		t.Errorf("lastFailover.at %q is not the time of the run (%v)", at[1], err)
	}
	masked := strings.Replace(out, at[1], "<now>", 1)
	masked = regexp.MustCompile(`(index [0-9a-f]{40}\.\.)[0-9a-f]{40}( 100644\n--- a/mpha/pair\.yaml)`).ReplaceAllString(masked, "${1}<blob>${2}")
	golden.Assert(t, "testdata/plan-fleet.golden.txt", []byte(masked))

	for _, want := range []string{
		"--- a/mpha/dns/floating.yaml\n+++ b/mpha/dns/floating.yaml\n@@ -12,4 +12,4 @@",
		"       targets:\n-        - mp1.tsb.example.com\n+        - mp2.tsb.example.com\n",
		"     mpFQDN: mp2.tsb.example.com\n-active: east\n-epoch: 1\n+active: west\n+epoch: 2\n+lastFailover:\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	diff, _, _ := strings.Cut(out, "--- commit message ---")
	if n := len(regexp.MustCompile(`(?m)^-[^-]`).FindAllString(diff, -1)); n != 3 {
		t.Errorf("want 3 removed lines (the old target, active, epoch), got %d:\n%s", n, out)
	}

	out, _, err = run(t, "failover", "plan", "--repo", "../../manifests/fleet", "--to", "west", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var v planView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	user, err := os.ReadFile("../../manifests/fleet/mpha/pair.yaml")
	if err != nil {
		t.Fatal(err)
	}
	pair := v.Files["mpha/pair.yaml"]
	edited := strings.Replace(string(user), "active: east\nepoch: 1\n", "active: west\nepoch: 2\n", 1)
	if edited == string(user) || !strings.HasPrefix(pair, edited+"lastFailover:\n") || strings.Contains(pair, gitops.Header) {
		t.Errorf("pair.yaml is not the user's file with active and epoch set and lastFailover appended:\n%s", pair)
	}
	if _, err := gitops.ParsePair([]byte(pair)); err != nil {
		t.Errorf("the planned pair.yaml does not parse: %v", err)
	}
}

// Git credentials never travel over plain http unless asked for.
func TestRepoFlagsRefuseCredentialsOverHTTP(t *testing.T) {
	t.Setenv("MPHA_GIT_PASSWORD", "s3cret-token")
	_, _, err := run(t, "failover", "plan", "--repo", "http://127.0.0.1:1/org/fleet.git", "--to", "west")
	if err == nil || !strings.Contains(err.Error(), "--insecure-http-credentials") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("credentials over http: %v", err)
	}
}

// keygen writes a key request signs with, and prints the trusted-key line that verifies it; it
// never overwrites a key.
func TestFailoverKeygen(t *testing.T) {
	file := filepath.Join(t.TempDir(), "me.pem")
	out, _, err := run(t, "failover", "keygen", "--out", file)
	if err != nil {
		t.Fatal(err)
	}
	trusted, err := event.ParseTrustedKey(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("printed %q: %v", out, err)
	}
	key, err := readSigningKey(file)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Public().(ed25519.PublicKey).Equal(trusted.Key) {
		t.Error("the printed key is not the written key's public half")
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode: %v, %v", fi.Mode(), err)
	}
	e, err := event.NewFailoverRequest("mpha://cli/me", "ev-1", event.FailoverRequest{Target: "west", Mode: event.ModePlanned, Reason: "r", RequestedBy: "me"})
	if err != nil {
		t.Fatal(err)
	}
	if err := event.Sign(&e, key); err != nil {
		t.Fatal(err)
	}
	b, _ := event.Encode(e)
	if req, err := event.DecodeRequest(b, event.Validation{Clusters: []string{"east", "west"}, RequireSigned: true,
		TrustedKeys: []event.TrustedKey{trusted}}); err != nil || req.SignedBy != trusted.ID {
		t.Errorf("a request signed with the new key: %v (signed by %q)", err, req.SignedBy)
	}
	if _, _, err := run(t, "failover", "keygen", "--out", file); err == nil {
		t.Error("keygen overwrote an existing key")
	}
}
