package audit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/gitops/audit"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

var t0 = time.Date(2026, 8, 1, 9, 0, 0, 0, time.UTC)

// at is t0 plus hours.
func at(hours float64) time.Time { return t0.Add(time.Duration(hours * float64(time.Hour))) }

var (
	agentEast = object.Signature{Name: "mpha agent (east)", Email: "mpha-east@mpha.invalid"}
	bob       = object.Signature{Name: "Bob", Email: "bob@example.com"}
	giteaBot  = object.Signature{Name: "Gitea", Email: "noreply@gitea.example.com"}
)

// history builds a repository commit by commit in a temporary directory.
type history struct{ *testrig.LocalRepo }

func newHistory(t *testing.T) *history { return &history{testrig.NewLocalRepo(t)} }

// commit writes files and commits them on the checked-out branch (with parents, if given), by
// who, authored and committed at the times given.
func (h *history) commit(msg string, who object.Signature, author, committer time.Time, files map[string]string, parents ...plumbing.Hash) plumbing.Hash {
	a, c := who, who
	a.When, c.When = author, committer
	return h.Commit(msg, files, a, c, parents...)
}

func (h *history) checkout(branch string, create bool) { h.Checkout(branch, create) }

func (h *history) setBranch(branch string, hash plumbing.Hash) { h.SetBranch(branch, hash) }

func message(t *testing.T, subject string, ts ...trailer.Trailer) string {
	t.Helper()
	m, err := trailer.Format(subject+"\n\nWritten by the mpha agent.", ts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func failover(t *testing.T, event, epoch, from, to, mode, preflight string) string {
	return message(t, "Fail over tsb-mp from "+from+" to "+to,
		trailer.Trailer{Key: trailer.Kind, Value: "failover"}, trailer.Trailer{Key: trailer.Event, Value: event},
		trailer.Trailer{Key: trailer.Epoch, Value: epoch}, trailer.Trailer{Key: trailer.From, Value: from},
		trailer.Trailer{Key: trailer.To, Value: to}, trailer.Trailer{Key: trailer.Mode, Value: mode},
		trailer.Trailer{Key: trailer.RequestedBy, Value: "alice@example.com"},
		trailer.Trailer{Key: trailer.Reason, Value: mode + " failover to " + to}, trailer.Trailer{Key: trailer.Preflight, Value: preflight})
}

// fleet is a history with every case audit handles:
//
//	secrets ─ values ─┬─ human ─ merge ─ failover2 (main, fast-forwarded)   ─ drill (mpha/drill/ev-3)
//	                  └─ failover1 ─┘   (mpha/failover/ev-1, Gitea merge #3)
type fleet struct {
	*history
	secrets, values, human, failover1, merge, failover2, drill plumbing.Hash
}

func buildFleet(t *testing.T) *fleet {
	h := newHistory(t)
	f := &fleet{history: h}
	f.secrets = h.commit(message(t, "Seal secrets for west", trailer.Trailer{Key: trailer.Kind, Value: "secrets"}, trailer.Trailer{Key: trailer.Cluster, Value: "east"}),
		agentEast, at(1), at(1), map[string]string{"mpha/clusters/west/secrets/iam-signing-key.yaml": "kind: SealedSecret\n"})
	f.values = h.commit(message(t, "Render standby values for west", trailer.Trailer{Key: trailer.Kind, Value: "values"}, trailer.Trailer{Key: trailer.Cluster, Value: "east"}),
		agentEast, at(2), at(2), map[string]string{"mpha/clusters/west/mp/helmrelease.yaml": "kind: HelmRelease\n"})
	h.checkout("mpha/failover/ev-1", true)
	f.failover1 = h.commit(failover(t, "ev-1", "8", "east", "west", "planned", "pass"),
		agentEast, at(3), at(3), map[string]string{"mpha/pair.yaml": "active: west\nepoch: 8\n"})
	h.checkout("main", false)
	f.human = h.commit("Update README\n\nSigned-off-by: Bob <bob@example.com>\n", bob, at(3.5), at(3.5), map[string]string{"README.md": "fleet\n"})
	f.merge = h.commit("Merge pull request 'Fail over tsb-mp to west' (#3) from mpha/failover/ev-1 into main\n\nReviewed-on: https://gitea.example.com/org/fleet/pulls/3\n",
		giteaBot, at(4), at(4), map[string]string{"mpha/pair.yaml": "active: west\nepoch: 8\n"}, f.human, f.failover1)
	h.checkout("mpha/failover/ev-2", true)
	f.failover2 = h.commit(failover(t, "ev-2", "9", "west", "east", "emergency", "forced"),
		agentEast, at(5), at(5.25), map[string]string{"mpha/pair.yaml": "active: east\nepoch: 9\n"})
	h.setBranch("main", f.failover2)
	h.checkout("mpha/drill/ev-3", true)
	f.drill = h.commit(failover(t, "ev-3", "10", "east", "west", "drill", "pass"),
		agentEast, at(6), at(6), map[string]string{"mpha/pair.yaml": "active: west\nepoch: 10\n"})
	h.checkout("main", false)
	return f
}

func TestLogRebuildsHistory(t *testing.T) {
	t.Parallel()
	f := buildFleet(t)
	got, err := audit.Log(context.Background(), f.Repo, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	agent := "mpha agent (east) <mpha-east@mpha.invalid>"
	failoverTrailers := func(event, epoch, from, to, mode, preflight string) map[string]string {
		return map[string]string{"Mpha-Kind": "failover", "Mpha-Event": event, "Mpha-Epoch": epoch, "Mpha-From": from,
			"Mpha-To": to, "Mpha-Mode": mode, "Mpha-Requested-By": "alice@example.com",
			"Mpha-Reason": mode + " failover to " + to, "Mpha-Preflight": preflight}
	}
	want := []audit.Entry{
		{Commit: f.failover2.String(), Kind: "failover", When: at(5), Author: agent, Event: "ev-2", Epoch: 9,
			From: "west", To: "east", Mode: "emergency", RequestedBy: "alice@example.com", Reason: "emergency failover to east",
			Preflight: "forced", Trailers: failoverTrailers("ev-2", "9", "west", "east", "emergency", "forced"),
			Subject: "Fail over tsb-mp from west to east", Merged: at(5.25)},
		{Commit: f.failover1.String(), Kind: "failover", When: at(3), Author: agent, Event: "ev-1", Epoch: 8,
			From: "east", To: "west", Mode: "planned", RequestedBy: "alice@example.com", Reason: "planned failover to west",
			Preflight: "pass", Trailers: failoverTrailers("ev-1", "8", "east", "west", "planned", "pass"),
			Subject: "Fail over tsb-mp from east to west", Merged: at(4), MergeCommit: f.merge.String(), PR: "#3"},
		{Commit: f.values.String(), Kind: "values", When: at(2), Author: agent, Cluster: "east",
			Trailers: map[string]string{"Mpha-Kind": "values", "Mpha-Cluster": "east"},
			Subject:  "Render standby values for west", Merged: at(2)},
		{Commit: f.secrets.String(), Kind: "secrets", When: at(1), Author: agent, Cluster: "east",
			Trailers: map[string]string{"Mpha-Kind": "secrets", "Mpha-Cluster": "east"},
			Subject:  "Seal secrets for west", Merged: at(1)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
}

func commits(es []audit.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Commit)
	}
	return out
}

func hashes(hs ...plumbing.Hash) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.String())
	}
	return out
}

func TestLogOptions(t *testing.T) {
	t.Parallel()
	f := buildFleet(t)
	tests := []struct {
		name string
		opts audit.Options
		want []string
	}{
		{"failovers", audit.Options{Kinds: []string{"failover"}}, hashes(f.failover2, f.failover1)},
		{"two kinds", audit.Options{Kinds: []string{"values", "secrets"}}, hashes(f.values, f.secrets)},
		{"a kind with no commits", audit.Options{Kinds: []string{"cert"}}, nil},
		{"since, by author time", audit.Options{Since: at(3)}, hashes(f.failover2, f.failover1)},
		{"the drill branch", audit.Options{Branch: "mpha/drill/ev-3"}, hashes(f.drill, f.failover2, f.failover1, f.values, f.secrets)},
		{"a full ref name", audit.Options{Branch: "refs/heads/mpha/failover/ev-1"}, hashes(f.failover1, f.values, f.secrets)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := audit.Log(context.Background(), f.Repo, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, commits(got)); diff != "" {
				t.Errorf("commits (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := audit.Log(context.Background(), f.Repo, audit.Options{Branch: "nope"}); !errors.Is(err, audit.ErrBranchNotFound) {
		t.Errorf("unknown branch: err = %v, want ErrBranchNotFound", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := audit.Log(ctx, f.Repo, audit.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: err = %v", err)
	}
}

// A branch that merged main back in before it was merged: its merge brings in only the branch's
// own commits, newest first, and neither merge is an entry.
//
//	a ─── c ───────── m   (main; m: Merge pull request #7 from org/feature)
//	 \     \         /
//	  b ─── x ─── d       (feature; x merges main into it)
func TestLogBranchWithBackMerge(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	kind := func(k string) string {
		return message(t, k+" change", trailer.Trailer{Key: trailer.Kind, Value: k}, trailer.Trailer{Key: trailer.Cluster, Value: "west"})
	}
	a := h.commit(kind("secrets"), agentEast, at(1), at(1), map[string]string{"a": "a"})
	h.checkout("feature", true)
	b := h.commit(failover(t, "ev-9", "x9", "east", "west", "planned", "warn"), agentEast, at(2), at(2), map[string]string{"b": "b"})
	h.checkout("main", false)
	c := h.commit(kind("values"), agentEast, at(3), at(3), map[string]string{"c": "c"})
	h.checkout("feature", false)
	h.commit("Merge branch 'main' into feature\n\nMpha-Kind: merge-of-main\n", bob, at(4), at(4), map[string]string{"c": "c"}, b, c)
	d := h.commit(kind("cert"), agentEast, at(5), at(5), map[string]string{"d": "d"})
	h.checkout("main", false)
	m := h.commit("Merge pull request #7 from org/feature\n", giteaBot, at(6), at(6), map[string]string{"b": "b", "d": "d"}, c, d)

	got, err := audit.Log(context.Background(), h.Repo, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(hashes(d, b, c, a), commits(got)); diff != "" {
		t.Fatalf("commits (-want +got):\n%s", diff)
	}
	for _, e := range got[:2] {
		if e.MergeCommit != m.String() || e.PR != "#7" || !e.Merged.Equal(at(6)) {
			t.Errorf("%s: merged %v by %s %q, want %v by m #7", e.Subject, e.Merged, e.MergeCommit, e.PR, at(6))
		}
	}
	if got[1].Epoch != 0 || got[1].Trailers[trailer.Epoch] != "x9" || len(got[1].Problems) != 1 || !strings.Contains(got[1].Problems[0], `Mpha-Epoch: "x9" is not`) {
		t.Errorf("a bad epoch: Epoch %d, trailer %q, problems %q; want 0, the raw value kept and a problem", got[1].Epoch, got[1].Trailers[trailer.Epoch], got[1].Problems)
	}
	if got[2].MergeCommit != "" || got[2].PR != "" || !got[2].Merged.Equal(at(3)) {
		t.Errorf("a first-parent commit: %+v", got[2])
	}
}

func TestPullRequest(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, msg, want string }{
		{"gitea", "Merge pull request 'Fail over tsb-mp to west' (#3) from mpha/failover/ev-1 into main\n", "#3"},
		{"gitea, title naming another PR", "Merge pull request 'Revert \"x\" (#5)' (#12) from revert-5 into main", "#12"},
		{"github", "Merge pull request #12 from owner/branch\n\nFail over", "#12"},
		{"gitlab", "Merge branch 'mpha/failover/ev-1' into 'main'\n\nFail over\n\nSee merge request group/proj!12", "!12"},
		{"gitlab, subgroup and CRLF", "Merge branch 'x' into 'main'\r\n\r\nSee merge request a/b/c!7\r\n", "!7"},
		{"plain merge", "Merge branch 'main' into feature", ""},
		{"not a merge", "Fail over tsb-mp (#4)", ""},
		{"github text in a body", "Update\n\nMerge pull request #1 from x", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := audit.PullRequest(tc.msg); got != tc.want {
				t.Errorf("PullRequest(%q) = %q, want %q", tc.msg, got, tc.want)
			}
		})
	}
}

var prRef = regexp.MustCompile(`^([#!][0-9]+)?$`)

func FuzzPullRequest(f *testing.F) {
	for _, s := range []string{
		"Merge pull request 'Fail over tsb-mp to west' (#3) from mpha/failover/ev-1 into main",
		"Merge pull request #12 from owner/branch", "x\n\nSee merge request group/proj!12", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, msg string) {
		if got := audit.PullRequest(msg); !prRef.MatchString(got) {
			t.Errorf("PullRequest(%q) = %q, not a reference", msg, got)
		}
	})
}

func TestIsURL(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"https://git.example.com/org/fleet.git": true, "ssh://git@git.example.com/org/fleet.git": true,
		"git@github.com:org/fleet.git": true, "file:///srv/fleet.git": true,
		".": false, "../fleet": false, "/srv/git/fleet.git": false, "C:/fleet": false,
	} {
		if got := audit.IsURL(s); got != want {
			t.Errorf("IsURL(%q) = %v, want %v", s, got, want)
		}
	}
}

// A local path may be any directory of a work tree.
func TestOpenLocalPath(t *testing.T) {
	t.Parallel()
	f := buildFleet(t)
	ctx := context.Background()
	want, err := audit.Log(ctx, f.Repo, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := audit.Open(ctx, filepath.Join(f.Dir, "mpha", "clusters"), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := audit.Log(ctx, r, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries from a subdirectory (-local +opened):\n%s", diff)
	}
	if _, err := audit.Open(ctx, t.TempDir(), nil, ""); err == nil || !strings.Contains(err.Error(), "opening repository") {
		t.Errorf("a directory outside any repository: err = %v", err)
	}
}

// A fresh in-memory clone over HTTP gives the same entries as the local repository, for main and
// for a drill branch, and so does the server's bare repository opened as a path.
func TestOpenURLMatchesLocalPath(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Git server")
	}
	ctx := context.Background()
	f := buildFleet(t)
	srv := testrig.StartGitServer(t)
	url := srv.URL("org/fleet.git")
	if _, err := f.Repo.CreateRemote(&config.RemoteConfig{Name: "rig", URLs: []string{url}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Repo.PushContext(ctx, &gogit.PushOptions{RemoteName: "rig", Auth: srv.Auth(),
		RefSpecs: []config.RefSpec{"refs/heads/*:refs/heads/*"}}); err != nil {
		t.Fatal(err)
	}
	for _, branch := range []string{"main", "mpha/drill/ev-3"} {
		want, err := audit.Log(ctx, f.Repo, audit.Options{Branch: branch})
		if err != nil {
			t.Fatal(err)
		}
		for name, open := range map[string]func() (*gogit.Repository, error){
			"clone": func() (*gogit.Repository, error) { return audit.Open(ctx, url, srv.Auth(), branch) },
			"bare": func() (*gogit.Repository, error) {
				return audit.Open(ctx, filepath.Join(srv.Root(), "org/fleet.git"), nil, branch)
			},
		} {
			r, err := open()
			if err != nil {
				t.Fatalf("%s of %s: %v", name, branch, err)
			}
			got, err := audit.Log(ctx, r, audit.Options{Branch: branch})
			if err != nil {
				t.Fatalf("%s of %s: %v", name, branch, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s of %s (-local +opened):\n%s", name, branch, diff)
			}
		}
	}
	bad := &githttp.BasicAuth{Username: srv.Username, Password: "wrong-password-fixture"}
	if _, err := audit.Open(ctx, url, bad, "main"); err == nil || strings.Contains(err.Error(), "wrong-password-fixture") {
		t.Errorf("bad credentials: err = %v, want an error without the password", err)
	}
	if _, err := audit.Open(ctx, url, srv.Auth(), "no-such-branch"); !errors.Is(err, audit.ErrBranchNotFound) || !strings.Contains(err.Error(), "no-such-branch") {
		t.Errorf("unknown branch: err = %v, want ErrBranchNotFound naming it", err)
	}
}

// Commits written by hand with bad trailers are listed with their problems: a malformed line, a
// value the contract refuses (its field left empty, the raw value kept in Trailers), a repeated
// key (the first value counts); a commit whose only Mpha-* line is malformed is listed too.
func TestLogReportsTrailerProblems(t *testing.T) {
	t.Parallel()
	h := newHistory(t)
	forged := h.commit("Fail over by hand\n\nMpha-Kind: ../../etc/passwd\nMpha-Epoch: banana\nMpha-From: \x1b[31meast\nMpha-To: west\nMpha-To: east\nMpha-Cluster:east\n",
		bob, at(1), at(1), map[string]string{"a": "a"})
	onlyBad := h.commit("Looks like mpha\n\nMpha-Kind:secrets\n", bob, at(2), at(2), map[string]string{"b": "b"})
	h.commit("Not mpha at all\n\nSigned-off-by: Bob <bob@example.com>\n", bob, at(3), at(3), map[string]string{"c": "c"})
	clean := h.commit(message(t, "Seal secrets for west", trailer.Trailer{Key: trailer.Kind, Value: "secrets"}, trailer.Trailer{Key: trailer.Cluster, Value: "east"}),
		agentEast, at(4), at(4), map[string]string{"d": "d"})

	got, err := audit.Log(context.Background(), h.Repo, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(hashes(clean, onlyBad, forged), commits(got)); diff != "" {
		t.Fatalf("commits (-want +got):\n%s", diff)
	}
	if got[0].Problems != nil {
		t.Errorf("the agent's commit has problems: %q", got[0].Problems)
	}
	if diff := cmp.Diff([]string{`invalid trailer: "Mpha-Kind:secrets" is not "Mpha-Key: value"`}, got[1].Problems); diff != "" {
		t.Errorf("a commit with only a malformed line (-want +got):\n%s", diff)
	}
	e := got[2]
	want := []string{
		`invalid trailer: "Mpha-Cluster:east" is not "Mpha-Key: value"`,
		`invalid trailer: Mpha-Kind: kind "../../etc/passwd": want 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit`,
		`invalid trailer: Mpha-Epoch: "banana" is not a non-negative integer`,
		`invalid trailer: Mpha-From: cluster name "\x1b[31meast": want 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit`,
		`Mpha-To appears 2 times ("west", "east"): the first counts`,
	}
	if diff := cmp.Diff(want, e.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if e.Kind != "" || e.Epoch != 0 || e.From != "" || e.To != "west" || e.Cluster != "" {
		t.Errorf("fields: kind %q epoch %d from %q to %q cluster %q; want only to=west", e.Kind, e.Epoch, e.From, e.To, e.Cluster)
	}
	wantTrailers := map[string]string{"Mpha-Kind": "../../etc/passwd", "Mpha-Epoch": "banana", "Mpha-From": "\x1b[31meast", "Mpha-To": "west"}
	if diff := cmp.Diff(wantTrailers, e.Trailers); diff != "" {
		t.Errorf("trailers as written (-want +got):\n%s", diff)
	}
	// A kind filter never matches a refused kind.
	if got, _ := audit.Log(context.Background(), h.Repo, audit.Options{Kinds: []string{"../../etc/passwd"}}); len(got) != 0 {
		t.Errorf("--kind ../../etc/passwd listed %d entries", len(got))
	}
}
