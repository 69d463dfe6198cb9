package main

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/golden"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// auditRepo builds, in a temporary directory, a history with fixed times (so fixed hashes):
// secrets and values commits, a failover merged from its branch by a Gitea pull request, a human
// commit, a cert commit, an emergency failover pushed directly, and a drill on its own branch.
func auditRepo(t *testing.T) (string, *gogit.Repository) {
	t.Helper()
	repo := testrig.NewLocalRepo(t)
	t0 := time.Date(2026, 8, 1, 9, 0, 0, 0, time.UTC)
	n := 0
	commit := func(who, msg string, minutes int, parents ...plumbing.Hash) plumbing.Hash {
		t.Helper()
		n++
		sig := object.Signature{Name: who, Email: strings.ToLower(strings.ReplaceAll(who, " ", "-")) + "@example.com", When: t0.Add(time.Duration(minutes) * time.Minute)}
		return repo.Commit(msg, map[string]string{"f/" + strings.Repeat("x", n): msg}, sig, sig, parents...)
	}
	checkout := repo.Checkout
	kind := func(subject, kind, cluster string) string {
		return formatMessage(t, subject, trailer.Trailer{Key: trailer.Kind, Value: kind}, trailer.Trailer{Key: trailer.Cluster, Value: cluster})
	}
	failover := func(event, epoch, from, to, mode, preflight, reason string) string {
		return formatMessage(t, "Fail over tsb-mp from "+from+" to "+to,
			trailer.Trailer{Key: trailer.Event, Value: event}, trailer.Trailer{Key: trailer.Epoch, Value: epoch},
			trailer.Trailer{Key: trailer.From, Value: from}, trailer.Trailer{Key: trailer.To, Value: to},
			trailer.Trailer{Key: trailer.Mode, Value: mode}, trailer.Trailer{Key: trailer.RequestedBy, Value: "alice@example.com"},
			trailer.Trailer{Key: trailer.Reason, Value: reason}, trailer.Trailer{Key: trailer.Preflight, Value: preflight},
			trailer.Trailer{Key: trailer.Kind, Value: "failover"})
	}
	commit("Agent east", kind("Seal 2 secrets for west", "secrets", "east"), 0)
	commit("Agent east", kind("Render the standby's values for west", "values", "east"), 30)
	checkout("mpha/failover/ev-1", true)
	fo := commit("Agent east", failover("ev-1", "8", "east", "west", "planned", "pass", "east maintenance window"), 60)
	checkout("main", false)
	human := commit("Bob Builder", "Document the fleet\n", 70)
	commit("Gitea", "Merge pull request 'Fail over tsb-mp to west' (#3) from mpha/failover/ev-1 into main\n", 90, human, fo)
	commit("Agent west", kind("Publish the sealing certificate of west", "cert", "west"), 120)
	commit("Agent west", failover("ev-2", "9", "west", "east", "emergency", "forced", "west MP down since 11:02"), 150)
	checkout("mpha/drill/ev-3", true)
	commit("Agent east", failover("ev-3", "10", "east", "west", "drill", "pass", "quarterly drill"), 180)
	checkout("main", false)
	return repo.Dir, repo.Repo
}

func formatMessage(t *testing.T, subject string, ts ...trailer.Trailer) string {
	t.Helper()
	m, err := trailer.Format(subject, ts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAudit(t *testing.T) {
	dir, _ := auditRepo(t)
	tests := []struct {
		name   string
		args   []string
		golden string
	}{
		{"table", []string{"audit", "--repo", dir}, "testdata/audit.golden.txt"},
		{"json", []string{"audit", "--repo", dir, "-o", "json"}, "testdata/audit.golden.json"},
		{"failovers since", []string{"audit", "--repo", dir, "--kind", "failover", "--since", "2026-08-01T09:30:00Z"}, "testdata/audit-failovers.golden.txt"},
		{"drill branch", []string{"audit", "--repo", filepath.Join(dir, "f"), "--branch", "mpha/drill/ev-3", "--kind", "failover"}, "testdata/audit-drill.golden.txt"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, err := run(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, tc.golden, []byte(out))
		})
	}
}

// Without --repo, audit reads the repository of the current directory.
func TestAuditDefaultsToCurrentDirectory(t *testing.T) {
	dir, _ := auditRepo(t)
	want, err := filepath.Abs("testdata/audit.golden.txt")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(dir, "f"))
	out, _, err := run(t, "audit")
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, want, []byte(out))
}

func TestAuditErrors(t *testing.T) {
	dir, _ := auditRepo(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-o", "yaml"}, `--output "yaml"`},
		{[]string{"--since", "yesterday"}, `--since "yesterday"`},
		{[]string{"--branch", "nope"}, "branch not found: nope"},
		{[]string{"--repo", t.TempDir()}, "opening repository"},
	}
	for _, tc := range tests {
		_, _, err := run(t, append([]string{"audit", "--repo", dir}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one containing %q", tc.args, err, tc.want)
		}
	}
	out, _, err := run(t, "audit", "--repo", dir, "--kind", "nothing")
	if err != nil || out != "no matching mpha commits on main\n" {
		t.Errorf("no entries: %q, %v", out, err)
	}
	out, _, err = run(t, "audit", "--repo", dir, "--kind", "nothing", "-o", "json")
	if err != nil || out != "[]\n" {
		t.Errorf("no entries as JSON: %q, %v", out, err)
	}
}

// A URL is cloned with the credentials from MPHA_GIT_USERNAME and MPHA_GIT_PASSWORD, and lists
// what the local repository does; the password appears nowhere.
func TestAuditURL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Git server")
	}
	dir, r := auditRepo(t)
	srv := testrig.StartGitServer(t)
	url := srv.URL("org/fleet.git")
	if _, err := r.CreateRemote(&config.RemoteConfig{Name: "rig", URLs: []string{url}}); err != nil {
		t.Fatal(err)
	}
	if err := r.PushContext(context.Background(), &gogit.PushOptions{RemoteName: "rig", Auth: srv.Auth(),
		RefSpecs: []config.RefSpec{"refs/heads/*:refs/heads/*"}}); err != nil {
		t.Fatal(err)
	}
	want, _, err := run(t, "audit", "--repo", dir, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "audit", "--repo", url); err == nil || strings.Contains(err.Error(), srv.Password) {
		t.Errorf("no credentials: err = %v, want an authentication error", err)
	}
	t.Setenv(envGitUsername, srv.Username)
	t.Setenv(envGitPassword, srv.Password)
	if _, _, err := run(t, "audit", "--repo", url); err == nil || !strings.Contains(err.Error(), "plain http") {
		t.Errorf("credentials over http without the flag: err = %v", err)
	}
	got, stderr, err := run(t, "audit", "--repo", url, "--insecure-http-credentials", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cloned URL vs local path (-local +url):\n%s", diff)
	}
	if strings.Contains(got+stderr, srv.Password) {
		t.Error("the password was printed")
	}
}

// hostileRepo holds commits written by hand against the trailer contract: an ANSI escape in
// Mpha-From and in the subject, a path as the kind, a word as the epoch, a repeated Mpha-To, a
// malformed line, a bidi override, and a reason of 300 characters.
func hostileRepo(t *testing.T) string {
	t.Helper()
	repo := testrig.NewLocalRepo(t)
	t0 := time.Date(2026, 8, 1, 9, 0, 0, 0, time.UTC)
	for i, msg := range []string{
		"Fail over \x1b[2J\x1b[Hfrom east\n\nMpha-Kind: failover\nMpha-Event: ev-9\nMpha-Epoch: banana\nMpha-From: \x1b[31meast\x1b[0m\nMpha-To: west\nMpha-To: east\nMpha-Mode: planned\nMpha-Requested-By: mallory\nMpha-Reason: " + strings.Repeat("very long reason ", 18) + "end\nMpha-Preflight:pass\n",
		"Seal secrets \u202egnp.exe\n\nMpha-Kind: ../../etc/passwd\nMpha-Cluster: east\n",
		formatMessage(t, "Seal 2 secrets for west", trailer.Trailer{Key: trailer.Kind, Value: "secrets"}, trailer.Trailer{Key: trailer.Cluster, Value: "east"}),
	} {
		sig := object.Signature{Name: "Mallory", Email: "mallory@example.com", When: t0.Add(time.Duration(i) * time.Hour)}
		repo.Commit(msg, nil, sig, sig)
	}
	return repo.Dir
}

// The table escapes every control character (Go-quoted), cuts long cells at maxCell runes with
// "…", and warns on stderr of each problem; -o json keeps the values whole, JSON-escaped, and
// lists the problems.
func TestAuditHostileTrailers(t *testing.T) {
	dir := hostileRepo(t)
	out, errOut, err := run(t, "audit", "--repo", dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(out+errOut, "\x1b\u202e") {
		t.Errorf("a control character reached the terminal:\n%q\n%q", out, errOut)
	}
	for _, line := range strings.Split(out, "\n") {
		for _, c := range strings.Fields(line) {
			if n := utf8.RuneCountInString(c); n > maxLine {
				t.Errorf("a cell of %d runes: %q", n, c)
			}
		}
	}
	golden.Assert(t, "testdata/audit-hostile.golden.txt", []byte(out))
	golden.Assert(t, "testdata/audit-hostile-warnings.golden.txt", []byte(errOut))

	out, errOut, err = run(t, "audit", "--repo", dir, "-o", "json")
	if err != nil || errOut != "" {
		t.Fatalf("json: %v, stderr %q", err, errOut)
	}
	if strings.ContainsAny(out, "\x1b\u202e") {
		t.Errorf("a control character in the JSON output:\n%q", out)
	}
	golden.Assert(t, "testdata/audit-hostile.golden.json", []byte(out))
}

// Every command that reads the repository refuses credentials over plain http with gitrepo's one
// error, before it connects (nothing listens on the port).
func TestRepoCommandsRefuseCredentialsOverHTTP(t *testing.T) {
	t.Setenv(envGitUsername, "someone")
	t.Setenv(envGitPassword, "a-token")
	repo := "http://127.0.0.1:1/org/fleet.git"
	for _, args := range [][]string{
		{"audit", "--repo", repo},
		{"failback", "prepare", "--repo", repo, "--dry-run"},
		{"status", "--repo", repo},
	} {
		t.Run(args[0], func(t *testing.T) {
			_, _, err := run(t, args...)
			if !errors.Is(err, gitrepo.ErrCredentialsOverHTTP) {
				t.Errorf("mpha %v: %v, want gitrepo.ErrCredentialsOverHTTP", args, err)
			}
		})
	}
}
