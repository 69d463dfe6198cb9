package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/health"
	"github.com/mpha-dev/mpha/agent/heartbeat"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/internal/natsconn"
	"github.com/mpha-dev/mpha/internal/testrig"
)

const statusPairYAML = gitops.Header + `apiVersion: mpha.dev/v1alpha1
kind: Pair
name: tsb-mp
floatingFQDN: active.tsb.example.com
clusters:
  - {name: east, mpFQDN: mp1.tsb.example.com}
  - {name: west, mpFQDN: mp2.tsb.example.com}
active: east
epoch: 4
lastFailover: {event: ev-3, from: west, to: east, at: "2026-11-20T10:02:00Z"}
`

// statusPair serves one pair.yaml to the heartbeat publishers.
type statusPair struct{ p *gitops.Pair }

func (s statusPair) Pair(context.Context) (*gitops.Pair, error) { return s.p, nil }

// statusJSON is the part of `status -o json` the tests read.
type statusJSON struct {
	Suggestions []health.Published `json:"suggestions"`
	Commit      string             `json:"commit"`
	Pair        gitops.Pair        `json:"pair"`
	NATS        struct {
		Stream    string `json:"stream"`
		Reachable bool   `json:"reachable"`
		Error     string `json:"error"`
	} `json:"nats"`
	Clusters []struct {
		Name      string `json:"name"`
		Role      string `json:"role"`
		Heartbeat *struct {
			AgeSeconds float64          `json:"ageSeconds"`
			Data       *event.Heartbeat `json:"data"`
		} `json:"heartbeat"`
		Notes []string `json:"notes"`
	} `json:"clusters"`
}

// `mpha status` against the rig's Git server and an authenticating NATS: pair.yaml's state, east's
// heartbeat (published by the agent's Publisher) with its age, west "never"; a heartbeat at an
// old epoch gets a note; a malformed one is shown as unreadable, with why; with NATS down the Git state still prints, with a warning, and exit 0.
func TestStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nats-server and a Git server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	git := testrig.StartGitServer(t)
	commit := git.CreateRepo(t, "org/fleet.git", "main", map[string]string{"mpha/pair.yaml": statusPairYAML})
	const natsPassword = "nats-pa55word"
	n := testrig.StartNATSWith(t, testrig.NATSOptions{Users: []*server.User{{Username: "ops", Password: natsPassword}}})
	nc, err := natsconn.Connect(ctx, natsconn.Options{URL: n.URL, User: "ops", Password: natsPassword}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := event.EnsureStream(ctx, js, "tsb-mp"); err != nil {
		t.Fatal(err)
	}
	pair, err := gitops.ParsePair([]byte(statusPairYAML))
	if err != nil {
		t.Fatal(err)
	}
	subjects, _ := event.NewSubjects("tsb-mp")
	east := &heartbeat.Publisher{Cluster: "east", Subjects: subjects, Pair: statusPair{pair}, JS: js,
		Facts: func(context.Context) (event.Heartbeat, error) {
			return event.Heartbeat{Postgres: &event.PostgresStatus{Role: "primary", Replication: "publisher"}}, nil
		}}
	if _, err := east.Beat(ctx); err != nil {
		t.Fatal(err)
	}

	t.Setenv("MPHA_GIT_USERNAME", git.Username)
	t.Setenv("MPHA_GIT_PASSWORD", git.Password)
	t.Setenv("MPHA_NATS_PASSWORD", natsPassword)
	args := []string{"status", "--repo", git.URL("org/fleet.git"), "--insecure-http-credentials", "--nats-url", n.URL, "--nats-user", "ops"}
	out, errOut, err := run(t, args...)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, errOut)
	}
	for _, re := range []string{
		`(?m)^Pair:\s+tsb-mp \(stream MPHA_TSB_MP\)$`,
		`(?m)^Active:\s+east$`,
		`(?m)^Epoch:\s+4$`,
		`(?m)^Floating FQDN:\s+active\.tsb\.example\.com$`,
		`(?m)^Last failover:\s+west → east at 2026-11-20T10:02:00Z \(event ev-3\)$`,
		`(?m)^Git:\s+http://\S+/org/fleet\.git main@` + commit[:12] + `$`,
		`(?m)^CLUSTER\s+ROLE\s+MP FQDN\s+LAST HEARTBEAT\s+AGE\s+REPORTED\s+EPOCH\s+VERSION\s+DATABASE\s+NOTES$`,
		`(?m)^east\s+active\s+mp1\.tsb\.example\.com\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+\d+(m\d+)?s\s+active\s+4\s+\S+\s+logical publisher\s*$`,
		`(?m)^west\s+standby\s+mp2\.tsb\.example\.com\s+never\s*$`,
		`(?m)^Open failover suggestions: none$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("table output does not match %s:\n%s", re, out)
		}
	}
	if errOut != "" {
		t.Errorf("stderr: %s", errOut)
	}

	// West reports from an old epoch; -o json carries it with a note.
	old := *pair
	old.Epoch = 3
	lagBytes, lagSeconds := int64(2048), 0.4
	west := &heartbeat.Publisher{Cluster: "west", Subjects: subjects, Pair: statusPair{&old}, JS: js,
		Facts: func(context.Context) (event.Heartbeat, error) {
			return event.Heartbeat{Postgres: &event.PostgresStatus{Role: "primary", Replication: "subscriber", LagBytes: &lagBytes, LagSeconds: &lagSeconds}}, nil
		}}
	if _, err := west.Beat(ctx); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = run(t, append(args, "-o", "json")...)
	if err != nil {
		t.Fatalf("status -o json: %v\n%s", err, errOut)
	}
	var rep statusJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("-o json is not JSON: %v\n%s", err, out)
	}
	if rep.Commit != commit || rep.Pair.Active != "east" || rep.Pair.Epoch != 4 || rep.Pair.LastFailover == nil ||
		!rep.NATS.Reachable || rep.NATS.Stream != "MPHA_TSB_MP" || len(rep.Clusters) != 2 {
		t.Fatalf("json report: %+v", rep)
	}
	e, w := rep.Clusters[0], rep.Clusters[1]
	if e.Name != "east" || e.Role != "active" || e.Heartbeat == nil || e.Heartbeat.Data.Role != "active" || e.Heartbeat.Data.Epoch != 4 ||
		e.Heartbeat.AgeSeconds < 0 || len(e.Notes) != 0 {
		t.Errorf("east: %+v", e)
	}
	if w.Name != "west" || w.Role != "standby" || w.Heartbeat == nil || w.Heartbeat.Data.Epoch != 3 ||
		strings.Join(w.Notes, ";") != "at epoch 3, Git at 4" {
		t.Errorf("west: %+v (heartbeat %+v)", w, w.Heartbeat)
	}
	if pg := w.Heartbeat.Data.Postgres; pg == nil || pg.Replication != "subscriber" || pg.LagBytes == nil || *pg.LagBytes != 2048 {
		t.Errorf("west's database in the json report: %+v", pg)
	}
	out, _, err = run(t, args...)
	if re := `(?m)^west\s+standby\s+\S+\s+\S+Z\s+\S+\s+standby\s+3\s+\S+\s+logical subscriber 2\.0 KiB behind \(0\.4s\)\s+at epoch 3, Git at 4$`; err != nil || !regexp.MustCompile(re).MatchString(out) {
		t.Errorf("west's row does not match %s (%v):\n%s", re, err, out)
	}

	// Something else on west's heartbeat subject: its time and age, and why it is unreadable.
	if _, err := js.Publish(ctx, "mpha.tsb-mp.heartbeat.west", []byte("not a heartbeat")); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = run(t, args...)
	if err != nil {
		t.Fatalf("status with a malformed heartbeat: %v\n%s", err, errOut)
	}
	if re := `(?m)^west\s+standby\s+\S+\s+\d{4}-\d\d-\d\dT\S+Z\s+\d+(m\d+)?s\s+unreadable: malformed heartbeat on mpha\.tsb-mp\.heartbeat\.west: .*JSON`; !regexp.MustCompile(re).MatchString(out) {
		t.Errorf("output with a malformed heartbeat does not match %s:\n%s", re, out)
	}

	// Another pair's name: NATS answers that it has no such stream, so every cluster is "never".
	out, errOut, err = run(t, append(args, "--pair", "other-pair")...)
	if err != nil {
		t.Fatalf("status --pair other-pair: %v", err)
	}
	for _, want := range []string{"warning: --pair other-pair, but pair.yaml names the pair tsb-mp", "stream not found"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q: %s", want, errOut)
		}
	}
	for _, re := range []string{`(?m)^Pair:\s+tsb-mp \(stream MPHA_OTHER_PAIR\)$`, `(?m)^east\s+active\s+\S+\s+never\s*$`, `(?m)^west\s+standby\s+\S+\s+never\s*$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output for another pair does not match %s:\n%s", re, out)
		}
	}

	// Failover suggestions: one made at an older epoch (a failover closed it), one that is not a
	// suggestion, and two open ones, listed oldest first with their evidence and request.
	suggest := func(id string, epoch int64, sg health.Suggestion) {
		sg.Epoch = &epoch
		e, err := health.NewSuggestion("mpha/east/health", id, sg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := event.Publish(ctx, js, health.SuggestedSubject(subjects), e); err != nil {
			t.Fatal(err)
		}
	}
	since := time.Now().Add(-time.Minute).UTC()
	suggest("sg-old", 3, health.Suggestion{Target: "east", From: "west", Reason: "west's MP failed", SuggestedBy: "health/east", Since: since})
	if _, err := js.Publish(ctx, health.SuggestedSubject(subjects), []byte("not a suggestion")); err != nil {
		t.Fatal(err)
	}
	suggest("sg-1", 4, health.Suggestion{Target: "west", From: "east", Reason: "east's MP failed 3 rounds", SuggestedBy: "health/west",
		Since: since, Evidence: []string{"https://mp1.tsb.example.com/healthz: connection refused"}})
	suggest("sg-2", 4, health.Suggestion{Target: "west", From: "east", Reason: "alert TSBManagementPlaneDown", SuggestedBy: "alertmanager",
		Since: since, Request: "req-9"})
	out, errOut, err = run(t, args...)
	if err != nil {
		t.Fatalf("status with suggestions: %v\n%s", err, errOut)
	}
	for _, re := range []string{
		`(?m)^Open failover suggestions \(since the last failover, at epoch 4\):$`,
		`(?m)^  \S+Z  east → west  by health/west \(outage since \S+Z\): east's MP failed 3 rounds$`,
		`(?m)^      evidence: https://mp1\.tsb\.example\.com/healthz: connection refused$`,
		`(?m)^      to act on it: mpha failover request --to west --mode emergency`,
		`(?m)^  \S+Z  east → west  by alertmanager .*: alert TSBManagementPlaneDown\n      request: req-9 `,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output with suggestions does not match %s:\n%s", re, out)
		}
	}
	if strings.Contains(out, "west's MP failed") || strings.Index(out, "3 rounds") > strings.Index(out, "TSBManagementPlaneDown") {
		t.Errorf("the closed suggestion is listed, or the open ones are out of order:\n%s", out)
	}
	out, _, err = run(t, append(args, "-o", "json")...)
	if err != nil {
		t.Fatal(err)
	}
	rep = statusJSON{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Suggestions) != 2 || rep.Suggestions[0].ID != "sg-1" || rep.Suggestions[1].Request != "req-9" || len(rep.Suggestions[0].Evidence) != 1 {
		t.Errorf("json suggestions: %+v", rep.Suggestions)
	}

	// NATS down: the Git state still prints; the heartbeats are unknown; exit status 0.
	n.Stop()
	out, errOut, err = run(t, args...)
	if err != nil {
		t.Fatalf("status with NATS down: %v", err)
	}
	if !strings.Contains(errOut, "warning: heartbeats unknown: NATS unreachable") || strings.Contains(errOut, natsPassword) {
		t.Errorf("stderr: %q", errOut)
	}
	for _, re := range []string{`(?m)^Active:\s+east$`, `(?m)^east\s+active\s+mp1\.tsb\.example\.com\s+unknown\s*$`, `(?m)^west\s+standby\s+\S+\s+unknown\s*$`,
		`(?m)^Open failover suggestions: unknown$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("output with NATS down does not match %s:\n%s", re, out)
		}
	}
	out, _, err = run(t, append(args, "-o", "json")...)
	if err != nil {
		t.Fatal(err)
	}
	rep = statusJSON{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.NATS.Reachable || !strings.Contains(rep.NATS.Error, "NATS unreachable") || rep.Clusters[0].Heartbeat != nil || rep.Pair.Epoch != 4 {
		t.Errorf("json with NATS down: %+v", rep)
	}
}

// Status refuses what cannot work before reading anything, and fails (exit 1) when Git cannot be
// read, without quoting the Git password.
func TestStatusErrors(t *testing.T) {
	t.Setenv("MPHA_GIT_USERNAME", "bot")
	t.Setenv("MPHA_GIT_PASSWORD", "git-s3cret")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no pair.yaml in the current directory", []string{"status"}, "pair.yaml is not in ."},
		{"bad output", []string{"status", "--repo", "https://git.invalid/x.git", "-o", "yaml"}, `--output "yaml"`},
		{"bad pair", []string{"status", "--repo", "https://git.invalid/x.git", "--pair", "Not_A_Label"}, "--pair"},
		{"credentials in the URL", []string{"status", "--repo", "https://bot:git-s3cret@git.invalid/x.git"}, "holds a password"},
		{"bad root", []string{"status", "--repo", "https://git.invalid/x.git", "--root", "/abs"}, "--root"},
		{"conflicting NATS auth", []string{"status", "--repo", "https://127.0.0.1:1/x.git", "--nats-url", "nats://127.0.0.1:1",
			"--nats-token", "t", "--nats-user", "u", "--nats-password", "p"}, "user and token: authenticate one way only"},
		{"NATS creds without URL", []string{"status", "--repo", "https://127.0.0.1:1/x.git", "--nats-user", "u"}, "a NATS URL is required"},
		{"Git unreachable", []string{"status", "--repo", "https://127.0.0.1:1/x.git"}, "reading main"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "git-s3cret") {
				t.Errorf("the error quotes the Git password: %v", err)
			}
		})
	}
}
