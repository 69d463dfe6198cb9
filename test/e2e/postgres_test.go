//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"
	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover"
	"github.com/mpha-dev/mpha/agent/failover/failovertest"
	"github.com/mpha-dev/mpha/gitops/forge"
	"github.com/mpha-dev/mpha/internal/helmtest"
	"github.com/mpha-dev/mpha/internal/pgrepl"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// The MP databases of the drill. East's server is a primary, west's a streaming replica of it
// (pg_basebackup -R), each reached by its agent as the MP's role tsb through a DSN Secret. The
// data story through the drill, as an operator would run it:
//
//	step  east's server     west's server             how
//	start primary           replica of east           -
//	d     primary (stale)   promoted: primary         west's agent promotes it once the merge is seen
//	f     primary, synced   primary (source)          east's agent copies west's into east before the commit
//	f'    primary           rebuilt: replica of east  the operator re-seeds the standby (pg_basebackup)
//	h     primary           promoted: primary         east's cluster is down, its database (outside it) is not
//	g     primary, synced   primary (source)          east's agent copies west's into east again
//	i     primary (source)  subscriber of east        the operator sets replication logical
//	i     fenced, then      promoted: publisher       west's agent promotes its subscription
//	      subscriber of west                          east's agent re-subscribes the other way
//
// After d the two servers are independent primaries: the old primary is not rewound into a
// replica (that is the operator's rebuild, f'), so the failback copies the data back with the
// sync pre-step. After f the standby is re-seeded as a replica, as an operator does to get
// streaming back, which h then promotes again. Both agents run with topology auto, so one
// configuration follows these changes (streaming, then independent, then streaming) without a
// restart; only a new server behind a DSN Secret needs one, as it would in a cluster. In i the
// operator moves the pair to logical replication (a helm upgrade of both agents' values): the
// servers run with wal_level=logical from the start, as a site planning for it would.
const (
	pgPassword   = "tsb-E2e-Pa55word-never-shown"
	pgSecret     = "mpha-postgres"
	pgPeerSecret = "mpha-postgres-peer"
	// pgAdminSecret: each site's own server as a role that may create subscriptions (the
	// superuser in PostgreSQL 15).
	pgAdminSecret = "mpha-postgres-admin"
)

// mpDB is each site's database server, swapped when the operator rebuilds one.
type mpDB struct {
	east, west *testrig.Postgres
	// drill is the whole drill's test: a server started in a step outlives it.
	drill testing.TB
	// logical: the agents run with postgres.replication logical (step i on).
	logical bool
}

// startPostgres starts east's primary with the MP's database and role, west's streaming replica,
// and each agent's DSN Secrets (its own server, the peer's).
func (p *pair) startPostgres(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Minute)
	defer cancel()
	p.leaks.Add([]byte(pgPassword))
	east := testrig.StartPostgresWith(t, testrig.PostgresOptions{Logical: true})
	// tsb: the MP's role; CREATEDB to take a sync, REPLICATION for the peer's subscription to
	// connect as it, pg_monitor to read replication state,
	// pg_promote (granted in the postgres database, where the agent connects to promote: a
	// function's grants are per database, and a sync rebuilds tsb) to promote its standby.
	// Granted before the replica is cloned, so both have it.
	testrig.ExecSQL(ctx, t, east.DSN("postgres"), "CREATE ROLE tsb LOGIN CREATEDB REPLICATION PASSWORD '"+pgPassword+"'",
		"GRANT pg_monitor TO tsb", "CREATE DATABASE tsb OWNER tsb", "GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO tsb")
	testrig.ExecSQL(ctx, t, east.DSN("tsb"), "SET ROLE tsb",
		"CREATE TABLE public.organizations (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, spec jsonb)",
		"CREATE TABLE public.audit_log (id bigserial PRIMARY KEY, org bigint REFERENCES public.organizations, at timestamptz DEFAULT now(), payload bytea)",
		"INSERT INTO public.organizations (name, spec) VALUES ('tetrate', '{\"tier\": \"gold\"}')",
		"INSERT INTO public.audit_log (org, payload) SELECT 1, decode(md5(i::text), 'hex') FROM generate_series(1, 500) i")
	p.db = &mpDB{east: east, west: east.StartReplica(t), drill: t}
	p.setDSN(t, p.east, pgSecret, p.db.east)
	p.setDSN(t, p.east, pgPeerSecret, p.db.west)
	p.setDSN(t, p.west, pgSecret, p.db.west)
	p.setDSN(t, p.west, pgPeerSecret, p.db.east)
	p.say("Postgres: east's MP database a primary (port %d), west's a streaming replica of it (port %d)", p.db.east.Port, p.db.west.Port)
}

// postgresConfig is the agents' postgres section: topology auto (it changes along the drill),
// promote a streaming standby once a failover is merged, sync independent ones before; from
// step i, logical replication instead.
func (p *pair) postgresConfig() agent.Postgres {
	if p.db != nil && p.db.logical {
		return agent.Postgres{Topology: "auto", DSNSecret: pgSecret, PeerDSNSecret: pgPeerSecret, Replication: "logical", SubscriptionDSNSecret: pgAdminSecret}
	}
	return agent.Postgres{Topology: "auto", DSNSecret: pgSecret, PeerDSNSecret: pgPeerSecret, PromoteOnFailover: true, SyncOnFailover: true}
}

func mpDSN(pg *testrig.Postgres) string {
	return fmt.Sprintf("postgres://tsb:%s@127.0.0.1:%d/tsb?sslmode=disable", pgPassword, pg.Port)
}

// setDSN creates or replaces s's DSN Secret name to reach pg as the MP's role.
func (p *pair) setDSN(t *testing.T, s *site, name string, pg *testrig.Postgres) {
	t.Helper()
	p.setSecretDSN(t, s, name, mpDSN(pg))
}

// setSecretDSN creates or replaces s's DSN Secret name.
func (p *pair) setSecretDSN(t *testing.T, s *site, name, dsn string) {
	t.Helper()
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: agentNS}, Data: map[string][]byte{"dsn": []byte(dsn)}}
	secrets := s.cluster.Clientset.CoreV1().Secrets(agentNS)
	if _, err := secrets.Update(p.ctx, sec, metav1.UpdateOptions{}); err == nil {
		return
	}
	if _, err := secrets.Create(p.ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatalf("%s: writing secret %s: %v", s.name, name, err)
	}
}

// inRecovery says whether pg is a standby.
func (p *pair) inRecovery(t testing.TB, pg *testrig.Postgres) bool {
	t.Helper()
	c, err := pgx.Connect(p.ctx, mpDSN(pg))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var b bool
	if err := c.QueryRow(p.ctx, "SELECT pg_is_in_recovery()").Scan(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

// writeMarker inserts an organization on pg as the MP would (a write: pg must be a primary).
func (p *pair) writeMarker(t *testing.T, pg *testrig.Postgres, name string) {
	t.Helper()
	testrig.ExecSQL(p.ctx, t, mpDSN(pg), "INSERT INTO public.organizations (name) VALUES ('"+name+"')")
}

func (p *pair) hasMarker(t *testing.T, pg *testrig.Postgres, name string) bool {
	t.Helper()
	var n int
	c, err := pgx.Connect(p.ctx, mpDSN(pg))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if err := c.QueryRow(p.ctx, "SELECT count(*) FROM public.organizations WHERE name = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

// failoverPromotes (step d with its database): west's database passes the database check on its
// lag, stays a replica while the pull request waits, and is promoted once the merge is seen,
// before Flux starts west's MP; it then takes writes.
func (p *pair) failoverPromotes(t *testing.T) {
	id := "e2e-failover-west"
	if !p.inRecovery(t, p.db.west) {
		t.Fatal("west's database is not a replica before the failover")
	}
	before := p.pairFile(t)
	pr := p.request(t, p.west, id)
	sts := p.statuses(t, id)
	c := checkOf(sts, database.CheckName)
	if c == nil || c.Result != "pass" || !strings.Contains(c.Evidence, "streaming replica 127.0.0.1:") ||
		!strings.Contains(c.Evidence, "per the active's server") || !strings.Contains(c.Evidence, "limits 16.0 MiB and 30s") {
		t.Errorf("the database check before the failover: %+v", c)
	}
	if s := stepOf(sts, database.StepSync); s == nil || s.Result != event.StepSkipped || !strings.Contains(s.Detail, "streaming") {
		t.Errorf("the sync step of a streaming pair: %+v", s)
	}
	if !p.inRecovery(t, p.db.west) {
		t.Fatal("west's database was promoted before the pull request was merged")
	}
	p.say("The database check passed on the replica's lag (%s); west's database is still a replica while the pull request waits", c.Evidence)
	p.complete(t, p.west, id, pr, before.Epoch, completion{})
	p.checkPromoted(t, id, p.db.west)
	p.writeMarker(t, p.db.west, "written-on-west-after-d")
}

// checkPromoted: the request's statuses record pg's promotion between merged and applied, and pg
// is a primary that takes writes.
func (p *pair) checkPromoted(t *testing.T, id string, pg *testrig.Postgres) {
	t.Helper()
	p.checkStepAfterMerge(t, id, database.StepPromote)
	if p.inRecovery(t, pg) {
		t.Fatalf("%s: the database at port %d is still a replica", id, pg.Port)
	}
}

// checkStepAfterMerge: the request's statuses record the step name done between merged and
// applied; it returns the step.
func (p *pair) checkStepAfterMerge(t *testing.T, id, name string) *event.Step {
	t.Helper()
	sts := p.statuses(t, id)
	merged, promoted, applied := -1, -1, -1
	for i, st := range sts {
		switch {
		case st.Phase == event.PhaseMerged && len(st.Steps) == 0 && merged < 0:
			merged = i
		case len(st.Steps) == 1 && st.Steps[0].Name == name && st.Steps[0].Result == event.StepDone:
			promoted = i
		case st.Phase == event.PhaseApplied && applied < 0:
			applied = i
		}
	}
	if merged < 0 || promoted < merged || applied < promoted {
		t.Fatalf("%s: merged at %d, %s at %d, applied at %d: want merged < %s < applied (%s)", id, merged, name, promoted, applied, name, failovertest.Phases(sts))
	}
	p.say("The promotion is in the statuses after the merge, before Flux applied it: %s", sts[promoted].Message)
	return &sts[promoted].Steps[0]
}

// failbackSyncs (step f with its database): the two servers are independent primaries now; east's
// agent copies west's database (with the row written on west after d) into east's, verified,
// before the failover commit; the database check passes on that import; nothing is promoted.
func (p *pair) failbackSyncs(t *testing.T) {
	id := "e2e-failback-east"
	p.failover(t, p.east, id)
	p.checkSynced(t, id, p.db.east, "written-on-west-after-d")
}

// checkSynced: a sync step of request id copied into pg, verified; the database check judged the
// import; pg holds marker.
func (p *pair) checkSynced(t *testing.T, id string, pg *testrig.Postgres, marker string) {
	t.Helper()
	sts := p.statuses(t, id)
	s := stepOf(sts, database.StepSync)
	if s == nil || s.Result != event.StepDone || !strings.Contains(s.Detail, "and verified it") {
		t.Errorf("%s: the sync step: %+v", id, s)
	}
	if c := checkOf(sts, database.CheckName); c == nil || c.Result != "pass" || !strings.Contains(c.Evidence, "the last verified import into") {
		t.Errorf("%s: the database check after the sync: %+v", id, c)
	}
	if pr := stepOf(sts, database.StepPromote); pr == nil || pr.Result != event.StepSkipped {
		t.Errorf("%s: the promotion of a primary: %+v", id, pr)
	}
	if !p.hasMarker(t, pg, marker) {
		t.Errorf("%s: the row %q is not in the new active's database", id, marker)
	}
	if s != nil {
		p.say("Before the commit: %s", s.Detail)
	}
}

// rebuildStandby (step f'): the operator re-seeds west's database as a streaming replica of
// east's (pg_basebackup), retires the old server, points both agents' Secrets at the new one and
// restarts west's agent, which reads its Secrets at start (east's restarts in h). The sync in f
// replaced east's tsb database by a copy made from template0; the grant on pg_promote lives in
// the postgres database, which no sync touches, so the next promotion needs nothing more.
func (p *pair) rebuildStandby(t *testing.T) {
	old := p.db.west
	p.db.west = p.db.east.StartReplica(p.db.drill)
	old.Stop(t)
	p.setDSN(t, p.west, pgSecret, p.db.west)
	p.setDSN(t, p.east, pgPeerSecret, p.db.west)
	p.west.mp.SetDSN(mpDSN(p.db.west))
	if err := p.west.agent.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p.west.agent.Restart(); err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, "west's agent /readyz", time.Minute, func(ctx context.Context) error {
		return testrig.HTTPOK(ctx, p.west.agentURL+"/readyz")
	})
	if !p.inRecovery(t, p.db.west) || !p.hasMarker(t, p.db.west, "written-on-west-after-d") {
		t.Fatal("west's rebuilt database is not a replica holding east's data")
	}
	p.say("west's database rebuilt as a streaming replica of east's (port %d); west's agent restarted on the new Secret", p.db.west.Port)
}

// eastFailsPromotes (step h with its database): east's cluster is down but its database, outside
// it, is not: west's check measures the replica against it and the merge promotes west's again.
// West's MP then writes a row that the chaos step's failback must carry to east.
func (p *pair) eastFailsPromotes(t *testing.T) {
	p.eastFails(t)
	p.checkPromoted(t, "e2e-east-down", p.db.west)
	p.writeMarker(t, p.db.west, "written-on-west-after-h")
}

// chaosSyncs (step g with its database): through the chaos the failover to east still copied
// west's database into east's, verified.
func (p *pair) chaosSyncs(t *testing.T) {
	p.chaos(t)
	p.checkSynced(t, "e2e-chaos-east", p.db.east, "written-on-west-after-h")
}

// logicalFailsOver (step i): the operator moves the pair to logical replication, a helm upgrade
// of both agents' values (each site's admin DSN in a Secret). West's agent copies east's schema
// and subscribes; the database check passes on the subscription's lag; the merge fences east's
// database, waits until west received all of it (RPO 0: the clients read through west the
// setting written on east just before the request) and promotes west's subscription; west's MP
// writes; east's agent re-subscribes the other way, so the next failback has its data.
func (p *pair) logicalFailsOver(t *testing.T) {
	p.setSecretDSN(t, p.east, pgAdminSecret, p.db.east.DSN("tsb"))
	p.setSecretDSN(t, p.west, pgAdminSecret, p.db.west.DSN("tsb"))
	p.db.logical = true
	start := time.Now()
	for _, s := range p.sites() {
		p.upgradeAgent(t, s)
	}
	upgraded := time.Now()
	p.writeMarker(t, p.db.east, "written-on-east-before-i")
	p.caughtUp(t, p.db.east, p.db.west, "mpha_west", "written-on-east-before-i")
	p.say("postgres.replication logical: both agents upgraded in %.1fs; west's agent copied east's schema and subscribed, caught up %.1fs later",
		upgraded.Sub(start).Seconds(), time.Since(upgraded).Seconds())
	metrics := p.agentMetrics(t, p.west)
	if !strings.Contains(metrics, "mpha_postgres_replication_seeds_total 1") {
		t.Errorf("west's agent does not report its subscription:\n%s", grepLines(metrics, "mpha_postgres_replication"))
	}

	id := "e2e-logical-west"
	before := p.pairFile(t)
	pr := p.request(t, p.west, id)
	p.gateRefusesWhileRed(t, pr)
	p.complete(t, p.west, id, pr, before.Epoch, completion{})
	sts := p.statuses(t, id)
	if c := checkOf(sts, database.CheckName); c == nil || c.Result != "pass" || !strings.Contains(c.Evidence, "logical subscription mpha_west on 127.0.0.1:") {
		t.Errorf("the database check of a subscriber: %+v", c)
	}
	if s := stepOf(sts, database.StepSync); s != nil {
		t.Errorf("a sync step with logical replication: %+v", s)
	}
	step := p.checkStepAfterMerge(t, id, database.StepPromoteSubscription)
	if !strings.Contains(step.Detail, "fenced the old active's database") || !strings.Contains(step.Detail, "RPO 0") {
		t.Errorf("the promotion of west's subscription: %+v", step)
	}
	if !p.hasMarker(t, p.db.west, "written-on-east-before-i") {
		t.Error("west's database lacks the row written on east before the failover")
	}
	verified := time.Now()
	p.writeMarker(t, p.db.west, "written-on-west-after-i")
	p.caughtUp(t, p.db.west, p.db.east, "mpha_east", "written-on-west-after-i")
	p.say("East's agent re-subscribed east's database to west's, caught up %.1fs after the failover was verified: the failback has its data",
		time.Since(verified).Seconds())
}

// failbackPrepared (step j): west is active and east its demoted standby since i. The operator
// runs `mpha failback prepare` with both MP databases: east's secrets, values and restore job are
// judged from Git, east's database is found re-seeded by logical replication (its agent
// re-subscribed it in i, nobody rebuilt it by hand), and the commit resumes east's restore job.
// The failback then goes through the same gated pull request (approved, mpha/preflight green),
// promoting east's subscription with RPO 0, and west's agent re-subscribes west the other way.
func (p *pair) failbackPrepared(t *testing.T) {
	// What helm-controller does once west's HelmRelease is applied (it cannot be built here):
	// west's MP is a Helm release, from which west's agent renders east's standby values.
	rel := helmtest.Install(t, p.west.cluster.Kubeconfig, mpNS, "mp", helmtest.Values())
	p.say("Cluster west: Helm release %s of the fixture managementplane chart, as helm-controller installs it from west's HelmRelease", helmtest.String(rel))
	env := []string{"MPHA_GIT_USERNAME=" + p.gitea.Admin, "MPHA_GIT_PASSWORD=" + p.gitea.Token,
		"MPHA_DB_FROM=" + mpDSN(p.db.west), "MPHA_DB_TO=" + p.db.east.DSN("tsb")}
	var out string
	// Exit 2 until west's agent re-seeded east (its values): the command is run again, as the
	// runbook says.
	testrig.Eventually(t, "mpha failback prepare to pass", 3*time.Minute, func(context.Context) error {
		var code int
		if out, code = p.cli(t, env, "failback", "prepare", "--repo", p.gitURL, "--insecure-http-credentials"); code != 0 {
			return fmt.Errorf("exit %d:\n%s", code, out)
		}
		return nil
	})
	if !strings.Contains(out, "re-seeded by logical replication: subscription mpha_east on 127.0.0.1:") || !strings.Contains(out, "ready to fail back") {
		t.Fatalf("mpha failback prepare:\n%s", out)
	}
	p.say("`mpha failback prepare --db-from west --db-to east` exits 0:\n%s", indent(out))
	id := "e2e-failback-logical"
	p.failover(t, p.east, id)
	step := p.checkStepAfterMerge(t, id, database.StepPromoteSubscription)
	if !strings.Contains(step.Detail, "RPO 0") {
		t.Errorf("the promotion of east's subscription: %+v", step)
	}
	p.writeMarker(t, p.db.east, "written-on-east-after-j")
	p.caughtUp(t, p.db.east, p.db.west, "mpha_west", "written-on-east-after-j")
	p.say("Failed back to east with RPO 0; west's agent re-subscribed west to east")
}

// gameDay (step k): `mpha drill run` as the reviewer runs it (or a CronJob, on a schedule),
// with the reviewer's forge token: readiness (a dry run), a planned failover to west that really
// happens (its pull request gated, approved and merged by the drill), verified, and measured from
// a client's side through BIND with the clients' CA, then the failback to east, verified again,
// and the report committed to mpha/drills/<date>-<id>.md.
func (p *pair) gameDay(t *testing.T) {
	before := p.pairFile(t)
	caFile := filepath.Join(p.dir, "clients-ca.crt")
	if err := os.WriteFile(caFile, p.ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"MPHA_GIT_USERNAME=" + p.gitea.Admin, "MPHA_GIT_PASSWORD=" + p.gitea.Token, "MPHA_FORGE_TOKEN=" + p.reviewerToken}
	out, code := p.cli(t, env, "drill", "run", "--repo", p.gitURL, "--insecure-http-credentials", "--nats-url", p.nats.URL,
		"--id", "game-day-1", "--requested-by", "platform-reviewer", "--forge-kind", "gitea", "--forge-url", p.gitea.URL,
		"--probe-url", fmt.Sprintf("https://%s:%d/", floatingFQDN, p.mpPort), "--probe-ca", caFile, "--dns-server", p.dns.Addr, "--leg-timeout", "5m")
	if code != 0 {
		t.Fatalf("mpha drill run exited %d:\n%s", code, out)
	}
	for _, want := range []string{"# Game day game-day-1 of tsb-mp: passed", "## Failover to west", "## Failback to east",
		"- RTO seen by the clients: the longest time without an answer through the floating name was", "west answered", "east answered",
		"promote-subscription done: fenced the old active's database", "report committed: mpha/drills/"} {
		if !strings.Contains(out, want) {
			t.Errorf("the drill's report lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "RPO 0"); n != 2 {
		t.Errorf("the report names RPO 0 %d times, want once per leg:\n%s", n, out)
	}
	after := p.pairFile(t)
	if after.Active != before.Active || after.Epoch != before.Epoch+2 {
		t.Errorf("after the drill pair.yaml says %s at epoch %d; want %s at %d", after.Active, after.Epoch, before.Active, before.Epoch+2)
	}
	path := p.layout.DrillReport(time.Now().UTC().Format("2006-01-02"), "game-day-1")
	snap, err := p.repo.Read(p.ctx, path)
	if err != nil || !strings.Contains(string(snap.Files[path]), "# Game day game-day-1 of tsb-mp: passed") {
		t.Fatalf("the report in Git at %s: %v\n%s", path, err, snap.Files[path])
	}
	p.say("`mpha drill run` failed over to west and back and committed %s:\n%s", path, indent(string(snap.Files[path])))
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ")
}

// gateRefusesWhileRed: while the pull request waits, west's subscription stops and east's MP
// writes 24 MiB, past the RPO limit. West's agent turns the pull request's mpha/preflight status
// red, and Gitea refuses the merge, approved or not: main requires the status. Once the
// subscription runs again the status turns green, and the drill merges.
func (p *pair) gateRefusesWhileRed(t *testing.T, pr string) {
	t.Helper()
	number := prNumber(t, pr)
	got, err := p.forge.Get(p.ctx, number)
	if err != nil || got.Head == "" {
		t.Fatalf("pull request %s: %+v, %v", pr, got, err)
	}
	p.waitStatus(t, got.Head, gitea.StatusSuccess)
	testrig.ExecSQL(p.ctx, t, p.db.west.DSN("tsb"), "ALTER SUBSCRIPTION mpha_west DISABLE")
	testrig.ExecSQL(p.ctx, t, mpDSN(p.db.east),
		// Random hex, which TOAST cannot compress much: 24 MiB of rows, over 16 MiB of WAL.
		"INSERT INTO public.audit_log (org, payload) SELECT 1, convert_to((SELECT string_agg(md5(random()::text || g::text || i::text), '') "+
			"FROM generate_series(1, 64) i), 'UTF8') FROM generate_series(1, 12000) g")
	red := p.waitStatus(t, got.Head, gitea.StatusFailure)
	if !strings.Contains(red, "database (lag over the RPO") {
		t.Errorf("the red status: %s", red)
	}
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	err = p.approveAndMerge(ctx, number, "Merge while the preflight is red")
	cancel()
	if err == nil {
		t.Fatal("Gitea merged a pull request whose mpha/preflight status is failure")
	}
	if now, gerr := p.forge.Get(p.ctx, number); gerr != nil || now.State != forge.StateOpen {
		t.Fatalf("after the refused merge: %+v, %v", now, gerr)
	}
	p.say("West's subscription stopped while east wrote 24 MiB: west's agent turned the pull request's mpha/preflight red (%s), and Gitea refused the approved merge", red)
	testrig.ExecSQL(p.ctx, t, p.db.west.DSN("tsb"), "ALTER SUBSCRIPTION mpha_west ENABLE")
	p.say("The subscription runs again: the status is green (%s)", p.waitStatus(t, got.Head, gitea.StatusSuccess))
}

// waitStatus waits until commit sha's mpha/preflight status on Gitea is state, and returns its
// description.
func (p *pair) waitStatus(t *testing.T, sha string, state gitea.StatusState) string {
	t.Helper()
	c, err := gitea.NewClient(p.gitea.URL, gitea.SetToken(p.gitea.Token))
	if err != nil {
		t.Fatal(err)
	}
	var desc string
	testrig.Eventually(t, "the pull request's preflight status "+string(state), 2*time.Minute, func(context.Context) error {
		st, _, err := c.GetCombinedStatus(p.gitea.Admin, repoName, sha)
		if err != nil {
			return err
		}
		for _, s := range st.Statuses {
			if s.Context == failover.StatusContext && s.State == state {
				desc = s.Description
				return nil
			}
		}
		return fmt.Errorf("statuses %+v", st.Statuses)
	})
	return desc
}

// upgradeAgent is `helm upgrade` of s's agent with the drill's current configuration: the
// chart rendered again (the config file and the RBAC for the Secrets it names) and the agent
// restarted, as the Deployment's config checksum does.
func (p *pair) upgradeAgent(t *testing.T, s *site) {
	t.Helper()
	listen := strings.TrimPrefix(s.agentURL, "http://")
	p.chartAgent(t, s, listen)
	if err := s.agent.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := s.agent.Restart(); err != nil {
		t.Fatal(err)
	}
	testrig.Eventually(t, s.name+"'s agent /readyz", time.Minute, func(ctx context.Context) error {
		return testrig.HTTPOK(ctx, s.agentURL+"/readyz")
	})
}

// caughtUp waits until subscription name on to's server follows from's, caught up, and holds
// the row marker.
func (p *pair) caughtUp(t *testing.T, from, to *testrig.Postgres, name, marker string) {
	t.Helper()
	testrig.Eventually(t, name+" to catch up", 2*time.Minute, func(ctx context.Context) error {
		l, err := pgrepl.MeasureLag(ctx, mpDSN(from), to.DSN("tsb"), name)
		switch {
		case err != nil:
			return err
		case !l.Synced || l.Bytes != 0:
			return fmt.Errorf("lag %+v", l)
		case !p.hasMarker(t, to, marker):
			return fmt.Errorf("no %s yet", marker)
		}
		return nil
	})
}

// agentMetrics reads s's agent's /metrics.
func (p *pair) agentMetrics(t *testing.T, s *site) string {
	t.Helper()
	resp, err := http.Get(s.agentURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grepLines(s, substr string) string {
	var out []string
	for l := range strings.Lines(s) {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

func checkOf(sts []event.FailoverStatus, name string) *event.Check {
	for _, st := range sts {
		for _, c := range st.Checks {
			if c.Name == name {
				return &c
			}
		}
	}
	return nil
}

// stepOf is the last report of the named step.
func stepOf(sts []event.FailoverStatus, name string) *event.Step {
	var out *event.Step
	for _, st := range sts {
		for _, s := range st.Steps {
			if s.Name == name {
				out = &s
			}
		}
	}
	return out
}

// withoutSteps drops the statuses that report a step (a sync, a promotion): each repeats its
// phase, and the phase order is checked without them.
func withoutSteps(sts []event.FailoverStatus) []event.FailoverStatus {
	var out []event.FailoverStatus
	for _, st := range sts {
		if len(st.Steps) == 0 {
			out = append(out, st)
		}
	}
	return out
}
