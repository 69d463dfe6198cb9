//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// The drill from the clients' side. Each cluster runs an MP stand-in (testrig.StartMP) on its MP's
// own address: HTTPS with the certificate of its tsb-certs only while its tsb Deployment is scaled
// up, tokens accepted only when they verify against its iam-signing-key, a settings row read from
// its own Postgres. Two clients, configured once before the first failover with the floating
// name, the root CA and a token east's MP issued, poll through BIND and are never reconfigured;
// after each failover the drill waits until both are answered by the new MP with the setting
// written on the old one just before the request, and records what each went through.

// settingKey is the row the clients read after each answer: written on the active's database
// before each failover (writeSetting), read through the new active after it.
const settingKey = "drill.last-write"

// clientRow is one client's view of one failover, for the table printed after the drill.
type clientRow struct {
	failover, client, to string
	// answered: from the request to the first answer by the new MP (with the setting);
	// outage: the longest time without any answer in that window; failed: attempts in it that
	// got no 200.
	answered, outage time.Duration
	failed           int
}

// startMPs starts each cluster's MP stand-in on its MP address and one port for both (the
// floating name's clients dial one port), reading settings from the cluster's own database.
func (p *pair) startMPs(t *testing.T) {
	t.Helper()
	p.mpPort = testrig.FreePortOn(t, p.east.addr, p.west.addr)
	for _, s := range p.sites() {
		s.mp = testrig.StartMP(t, testrig.MPOptions{Cluster: s.cluster, Namespace: mpNS, Addr: s.addr, Port: p.mpPort, DSN: mpDSN(p.dbOf(s))})
	}
	p.say("The MP stand-ins: east's and west's serve HTTPS on %s and %s port %d while their tsb Deployment is scaled up, "+
		"with their tsb-certs, accepting tokens signed by their iam-signing-key (east serves now, west does not)",
		p.east.addr, p.west.addr, p.mpPort)
}

// dbOf is s's MP database.
func (p *pair) dbOf(s *site) *testrig.Postgres {
	if s == p.east {
		return p.db.east
	}
	return p.db.west
}

// startClients configures the clients once, with tokens from east's MP, and starts them; the
// probe the agents ask (serveProbe) is a client too. It returns once both clients are answered
// by east with the first setting.
func (p *pair) startClients(t *testing.T) {
	t.Helper()
	start := time.Now()
	p.writeSetting(t, p.east, "bootstrap")
	for _, k := range []testrig.ClientKind{testrig.ControlPlaneClient, testrig.TctlClient} {
		sub := "admin"
		if k == testrig.ControlPlaneClient {
			sub = "cluster/edge-1"
		}
		tok := p.east.mp.IssueToken(t, sub)
		p.leaks.Add([]byte(tok))
		name := string(k)
		c := testrig.NewClient(t, testrig.ClientOptions{Name: name, Kind: k, FQDN: floatingFQDN, Port: p.mpPort, CA: p.ca.PEM,
			Token: tok, Resolver: p.dns.Resolver(), Setting: settingKey, Interval: clientInterval, OnChange: p.sayChange(name)})
		p.clients = append(p.clients, c)
	}
	probeToken := p.east.mp.IssueToken(t, "mpha-probe")
	p.leaks.Add([]byte(probeToken))
	p.probeClient.Store(testrig.NewClient(t, testrig.ClientOptions{Name: "probe", FQDN: floatingFQDN, Port: p.mpPort, CA: p.ca.PEM,
		Token: probeToken, Resolver: p.dns.Resolver()}))
	for _, c := range p.clients {
		c.Poll(t)
	}
	for _, c := range p.clients {
		c.WaitFor(t, "east's answer with the bootstrap setting", start, time.Minute, func(a testrig.Attempt) bool {
			return a.Outcome == testrig.OutcomeOK && a.Cluster == "east" && a.Setting == p.setting
		})
	}
	p.say("Two clients configured once: %s, the root CA, BIND as their DNS server and a token east's MP issued; "+
		"both are answered by east (every %s, a new DNS query and connection each time)", floatingFQDN, clientInterval)
}

// sayChange narrates a client's changes as they happen, with the outage each one ends: a line
// per change, so that the demo shows a failover from the outside.
func (p *pair) sayChange(name string) func(testrig.Change) {
	var down time.Time // the first attempt without an answer since the last 200
	return func(c testrig.Change) {
		switch {
		case c.Outcome != testrig.OutcomeOK && down.IsZero():
			down = c.At
			p.say("  [client %s] %s", name, c)
		case c.Outcome != testrig.OutcomeOK:
			p.say("  [client %s] %s (no answer for %.1fs so far)", name, c, c.At.Sub(down).Seconds())
		case !down.IsZero():
			p.say("  [client %s] %s: answered again, %.1fs without an answer", name, c, c.At.Sub(down).Seconds())
			down = time.Time{}
		default:
			p.say("  [client %s] %s", name, c)
		}
	}
}

// clientInterval is how often each client asks: the resolution of its outage figures.
const clientInterval = 200 * time.Millisecond

// writeSetting writes a new value of settingKey into s's MP database, as an MP write just before
// a failover, and remembers it: the clients must read it through the new active afterwards.
func (p *pair) writeSetting(t *testing.T, s *site, why string) {
	t.Helper()
	p.setting = fmt.Sprintf("%s at %s", why, time.Now().UTC().Format(time.RFC3339Nano))
	testrig.WriteMPSetting(p.ctx, t, mpDSN(p.dbOf(s)), testrig.DefaultOrg, settingKey, p.setting)
}

// clientsReach waits until every client is answered by to's MP with the setting written before
// request id (at requested), records each one's outage, and checks that from then on they stay
// with to: once the clusters agree on DNS, no answer comes from anywhere else.
func (p *pair) clientsReach(t *testing.T, to *site, id string, requested time.Time) {
	t.Helper()
	var lines []string
	for _, c := range p.clients {
		first := c.WaitFor(t, fmt.Sprintf("%s's answer with %q", to.name, p.setting), requested, 2*time.Minute, func(a testrig.Attempt) bool {
			return a.Outcome == testrig.OutcomeOK && a.Cluster == to.name && a.Setting == p.setting
		})
		as := c.Attempts()
		row := clientRow{failover: id, client: c.Name(), to: to.name, answered: first.At.Sub(requested),
			outage: as.Outage(requested, first.At), failed: as.Failed(requested, first.At)}
		p.clientRows = append(p.clientRows, row)
		lines = append(lines, fmt.Sprintf("%s answered by %s %.1fs after the request (longest outage %.1fs, %d failed attempts)",
			c.Name(), to.name, row.answered.Seconds(), row.outage.Seconds(), row.failed))
	}
	p.clientsStay(t, to)
	p.say("The clients, never reconfigured, are answered by %s with the row written on the old active before the request: %s",
		to.name, strings.Join(lines, "; "))
}

// clientsStay checks that, from a second after now, every attempt of every client is answered by
// to, for holdFor: the floating name has settled (dnsAgrees and waitFloating ran) and the old MP
// is scaled down.
func (p *pair) clientsStay(t *testing.T, to *site) {
	t.Helper()
	from := time.Now().Add(time.Second)
	time.Sleep(time.Second + holdFor)
	for _, c := range p.clients {
		for _, a := range c.Attempts() {
			if a.At.Before(from) || a.At.After(from.Add(holdFor)) {
				continue
			}
			if a.Outcome != testrig.OutcomeOK || a.Cluster != to.name {
				t.Errorf("client %s: after the name settled on %s, an attempt at %s got %s from %q (%s); changes:\n%s",
					c.Name(), to.name, a.At.Format("15:04:05.000"), a.Outcome, a.Cluster, a.Err, c.Attempts().Log())
				break
			}
		}
	}
}

// login hands every client (and the probe) a new token from s's MP: after a rotation of the
// signing key, the one change asked of clients.
func (p *pair) login(t *testing.T, s *site) {
	t.Helper()
	for _, c := range append([]*testrig.Client{p.probeClient.Load()}, p.clients...) {
		tok := s.mp.IssueToken(t, c.Name())
		p.leaks.Add([]byte(tok))
		c.Login(tok)
	}
}

// printClients prints the clients' table: per failover and client, the time from the request to
// the new MP's first answer and the longest outage.
func printClients(w io.Writer, rows []clientRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "The clients' view (never reconfigured; from the request):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "  failover\tclient\tto\tanswered after\tlongest outage\tfailed attempts\n")
	for _, r := range rows {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%.1fs\t%.1fs\t%d\n", r.failover, r.client, r.to, r.answered.Seconds(), r.outage.Seconds(), r.failed)
	}
	_ = tw.Flush()
}

// probeMP is what the agents' probe URL answers (serveProbe): one request, as a client, through
// the floating name to whichever MP answers.
func (p *pair) probeMP(ctx context.Context) testrig.Attempt {
	return p.probeClient.Load().Attempt(ctx)
}
