package testrig_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/mpha-dev/mpha/gitops/seal/sealtest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// A pair as a failover leaves it: two MPs with the same signing key and root CA, each with its
// own certificate and database, behind a floating name in the rig's named. Clients configured
// once follow the name from east to west, are refused while neither MP serves, and read west's
// settings row (a stale copy is visible); a move with both MPs up costs no failed request. A
// token of another key and a client of another CA are refused by the MP, not by the client.
func TestClientsFollowTheFloatingName(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const ttl = time.Second
	addrs := map[string]string{"east": "127.0.10.1", "west": "127.0.10.2"}
	d := testrig.StartDNS(t, testrig.DNSOptions{TTL: ttl,
		A: map[string]string{"mp-east.tsb.example.com": addrs["east"], "mp-west.tsb.example.com": addrs["west"]}})
	cs := testrig.StartClusters(t, "east", "west")
	east, west := cs[0], cs[1]
	pg := testrig.StartPostgres(t)
	testrig.ExecSQL(ctx, t, pg.DSN("postgres"), "CREATE DATABASE mp_east", "CREATE DATABASE mp_west")

	root := sealtest.NewCA(t, "shared root")
	leaks := &sealtest.Leaks{}
	eastSecrets := sealtest.Site{Namespace: "tsb", SigningKid: "iam-2026-1", JWKSKid: "iam-2026-1", CA: root,
		DNSNames: []string{"mp-east.tsb.example.com", floatingName}}.Secrets(t, leaks)
	setupMP(ctx, t, east, eastSecrets, 1)
	setupMP(ctx, t, west, standbySecrets(t, eastSecrets, root, "mp-west.tsb.example.com"), 0)

	port := testrig.FreePortOn(t, addrs["east"], addrs["west"])
	mps := map[string]*testrig.MP{}
	for _, c := range cs {
		start := time.Now()
		mps[c.Name] = testrig.StartMP(t, testrig.MPOptions{Cluster: c, Addr: addrs[c.Name], Port: port, DSN: pg.DSN("mp_" + c.Name)})
		t.Logf("figure: %s's stand-in started in %s", c.Name, time.Since(start).Round(time.Millisecond))
	}
	mps["east"].WriteSetting(ctx, t, "greeting", "written-before-failover")
	mps["west"].WriteSetting(ctx, t, "greeting", "stale-copy")

	var logMu sync.Mutex
	var changeLog []string
	client := func(kind testrig.ClientKind, sub, setting string) *testrig.Client {
		tok := mps["east"].IssueToken(t, sub)
		leaks.Add([]byte(tok))
		return testrig.StartClient(t, testrig.ClientOptions{Kind: kind, FQDN: floatingName, Port: port, CA: root.PEM,
			Token: tok, Resolver: d.Resolver(), Setting: setting, OnChange: func(c testrig.Change) {
				logMu.Lock()
				defer logMu.Unlock()
				changeLog = append(changeLog, string(kind)+" "+c.String())
			}})
	}
	clients := []*testrig.Client{client(testrig.ControlPlaneClient, "cluster/cp-1", ""), client(testrig.TctlClient, "admin", "greeting")}
	tctl := clients[1]

	// Before the name is published the clients fail at DNS.
	for _, c := range clients {
		c.WaitOutcome(t, testrig.OutcomeDNS, time.Time{}, 30*time.Second)
	}
	published := time.Now()
	if err := d.SetCNAME(ctx, floatingName, "mp-east.tsb.example.com", ttl); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		c.WaitAnswered(t, "east", published, 30*time.Second)
	}
	if a := tctl.WaitAnswered(t, "east", time.Now(), 10*time.Second); a.Setting != "written-before-failover" {
		t.Errorf("tctl read %q (%s) from east, want written-before-failover", a.Setting, a.SettingErr)
	}

	failover(ctx, t, d, clients, east, west, ttl)
	if a, _ := tctl.Attempts().Last(); a.Cluster != "west" || a.Setting != "stale-copy" {
		t.Errorf("tctl after the failover: %+v, want west's own row stale-copy", a)
	}
	plannedMove(ctx, t, d, clients, east, mps["east"], ttl)
	refusedByTheMP(ctx, t, d, root, port)
	relogin(ctx, t, clients, east, mps["east"], leaks)

	for _, c := range clients {
		t.Logf("%s's changes:\n%s", c.Name(), c.Attempts().Log())
	}
	logMu.Lock()
	if len(changeLog) < 4 {
		t.Errorf("OnChange saw %d changes, want at least 4 per client:\n%s", len(changeLog), strings.Join(changeLog, "\n"))
	}
	logMu.Unlock()
}

// failover: east scales down, the name moves to west, and west scales up a second later. The
// clients see connections refused (on east's address, then west's) and then west, and measure
// the outage.
func failover(ctx context.Context, t *testing.T, d *testrig.DNS, clients []*testrig.Client, east, west *testrig.Cluster, ttl time.Duration) {
	t.Helper()
	begin := time.Now()
	scaleMP(ctx, t, east, 0)
	for _, c := range clients {
		c.WaitOutcome(t, testrig.OutcomeRefused, begin, 30*time.Second)
	}
	moved := time.Now()
	if err := d.SetCNAME(ctx, floatingName, "mp-west.tsb.example.com", ttl); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		c.WaitFor(t, "refused at west's address", moved, 30*time.Second, func(a testrig.Attempt) bool {
			return a.Outcome == testrig.OutcomeRefused && a.IP == "127.0.10.2"
		})
	}
	time.Sleep(time.Second) // neither MP serves
	up := time.Now()
	scaleMP(ctx, t, west, 1)
	for _, c := range clients {
		a := c.WaitAnswered(t, "west", begin, 30*time.Second)
		as := c.Attempts()
		outage := as.Outage(begin, a.At)
		t.Logf("figure: %s: outage %s (west down for %s after east went), west answered %s after its scale-up",
			c.Name(), outage.Round(time.Millisecond), up.Sub(begin).Round(time.Millisecond), a.At.Add(a.Took).Sub(up).Round(time.Millisecond))
		if outage < up.Sub(begin)-250*time.Millisecond {
			t.Errorf("%s: outage %s, shorter than the %s neither MP served", c.Name(), outage, up.Sub(begin))
		}
		if a.At.Add(a.Took).Before(up) {
			t.Errorf("%s: west answered at %s, before it was scaled up at %s", c.Name(), a.At, up)
		}
		for _, f := range as {
			if !f.At.Before(begin) && f.At.Before(a.At) && f.Outcome != testrig.OutcomeRefused && f.Outcome != testrig.OutcomeOK {
				t.Errorf("%s: during the failover: %s %s, want only refused connections", c.Name(), f.Outcome, f.Err)
			}
		}
		if got := as.LastAnswered(); got != "west" {
			t.Errorf("%s: last answered by %q, want west", c.Name(), got)
		}
	}
}

// plannedMove: with both MPs up, the name moves back to east; the clients follow without a
// failed request, and the time from the DNS update to east's first answer is the switch time.
func plannedMove(ctx context.Context, t *testing.T, d *testrig.DNS, clients []*testrig.Client, east *testrig.Cluster, eastMP *testrig.MP, ttl time.Duration) {
	t.Helper()
	scaleMP(ctx, t, east, 1)
	testrig.Eventually(t, "east's stand-in to serve", 30*time.Second, func(context.Context) error {
		if !eastMP.Serving() {
			return errors.New("not serving yet")
		}
		return nil
	})
	moved := time.Now()
	if err := d.SetCNAME(ctx, floatingName, "mp-east.tsb.example.com", ttl); err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		a := c.WaitAnswered(t, "east", moved, 30*time.Second)
		t.Logf("figure: %s: switch west → east %s after the DNS update", c.Name(), a.At.Add(a.Took).Sub(moved).Round(time.Millisecond))
		if n := c.Attempts().Failed(moved, a.At); n > 0 {
			t.Errorf("%s: %d failed attempts while both MPs served:\n%s", c.Name(), n, c.Attempts().Log())
		}
	}
}

// relogin: a rotation of east's signing key gets the clients 401 until Login hands them a token
// of the new key; nothing else about them changes.
func relogin(ctx context.Context, t *testing.T, clients []*testrig.Client, east *testrig.Cluster, eastMP *testrig.MP, leaks *sealtest.Leaks) {
	t.Helper()
	key := sealtest.NewSigningKey(t).PEM
	leaks.Add(key)
	rotated := time.Now()
	updateSecret(ctx, t, east, "iam-signing-key", map[string][]byte{"kid": []byte("iam-2026-2"), "private.key": key})
	for _, c := range clients {
		c.WaitFor(t, "east's 401 for the old token", rotated, 30*time.Second, func(a testrig.Attempt) bool {
			return a.Outcome == testrig.OutcomeUnauthorized && a.Cluster == "east" && strings.Contains(a.Err, "unknown kid")
		})
	}
	loggedIn := time.Now()
	for _, c := range clients {
		tok := eastMP.IssueToken(t, c.Name())
		leaks.Add([]byte(tok))
		c.Login(tok)
	}
	for _, c := range clients {
		c.WaitAnswered(t, "east", loggedIn, 30*time.Second)
	}
}

// refusedByTheMP: the outcomes a client reports when the MP, not the network, refuses it.
func refusedByTheMP(ctx context.Context, t *testing.T, d *testrig.DNS, root *sealtest.CA, port int) {
	t.Helper()
	forged, err := testrig.SignToken(sealtest.NewSigningKey(t).PEM, "iam-2026-1", "intruder", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	base := testrig.ClientOptions{FQDN: floatingName, Port: port, CA: root.PEM, Resolver: d.Resolver()}
	forger := base
	forger.Name, forger.Token = "forger", forged
	if a := testrig.NewClient(t, forger).Attempt(ctx); a.Outcome != testrig.OutcomeUnauthorized || a.Cluster != "east" {
		t.Errorf("a token of another key under the same kid: %+v, want 401 from east", a)
	}
	stranger := base
	stranger.Name, stranger.CA, stranger.Token = "stranger", sealtest.NewCA(t, "another root").PEM, forged
	if a := testrig.NewClient(t, stranger).Attempt(ctx); a.Outcome != testrig.OutcomeTLS {
		t.Errorf("a client of another CA: %+v, want a TLS error", a)
	}
}

// standbySecrets are what mpha leaves on the standby: the active's secrets, and a certificate of
// the same root CA for the standby's own name and the floating name.
func standbySecrets(t *testing.T, active []*corev1.Secret, root *sealtest.CA, name string) []*corev1.Secret {
	t.Helper()
	var out []*corev1.Secret
	for _, s := range active {
		s = s.DeepCopy()
		if s.Name == "tsb-certs" || s.Name == "xcp-central-cert" {
			crt, key := root.Leaf(t, name, floatingName)
			s.Data = map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": root.PEM}
		}
		out = append(out, s)
	}
	return out
}
