//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// The floating name in real DNS. One BIND (testrig.StartDNS) is authoritative for the pair's zone
// and holds the MPs' address records; each cluster runs its own external-dns, which publishes the
// DNSEndpoint its Flux applied from dns/floating.yaml (testrig's doc: one owner id for the pair,
// upsert-only). So the name moves when a cluster's Flux applies a failover's commit, and, while the
// two clusters' Flux disagree, it alternates between their targets at every sync, once a second.

// floatingTTL is the bootstrap pair.yaml's floatingTTL: short, so that a client's cached answer
// outlives a failover by little.
const floatingTTL = 2 * time.Second

// holdFor is how long the floating name must keep its answer once it moved: several syncs of each
// external-dns (once a second), so that one cluster still publishing the old target shows.
const holdFor = 3 * time.Second

// floatingAnswer is what BIND answers for the floating name's address: the CNAME, its TTL, and
// the target's addresses, as a client resolving it would get them.
type floatingAnswer struct {
	target string // the CNAME's target, without the final dot
	ttl    time.Duration
	addrs  []string
}

func (a floatingAnswer) String() string {
	return fmt.Sprintf("%s CNAME %s (TTL %s), A %s", floatingFQDN, a.target, a.ttl, strings.Join(a.addrs, " "))
}

// resolveFloating asks BIND, by a real DNS query, for the floating name's address.
func (p *pair) resolveFloating(ctx context.Context) (floatingAnswer, error) {
	rrs, err := p.dns.Resolve(ctx, floatingFQDN, dns.TypeA)
	if err != nil {
		return floatingAnswer{}, err
	}
	var a floatingAnswer
	for _, rr := range rrs {
		if c, ok := rr.(*dns.CNAME); ok && c.Hdr.Name == dns.Fqdn(floatingFQDN) {
			if a.target != "" {
				return floatingAnswer{}, fmt.Errorf("%s has two CNAMEs: %v", floatingFQDN, rrs)
			}
			a.target, a.ttl = strings.TrimSuffix(c.Target, "."), time.Duration(c.Hdr.Ttl)*time.Second
		}
	}
	if a.target == "" {
		return floatingAnswer{}, fmt.Errorf("%s has no CNAME (yet): %v", floatingFQDN, rrs)
	}
	for _, rr := range rrs {
		if r, ok := rr.(*dns.A); ok && r.Hdr.Name == dns.Fqdn(a.target) {
			a.addrs = append(a.addrs, r.A.String())
		}
	}
	return a, nil
}

// siteOf is the site the answer leads a client to: the CNAME names its MP, and the address is
// that MP's own; nil when the answer leads nowhere in the pair.
func (p *pair) siteOf(a floatingAnswer) *site {
	for _, s := range p.sites() {
		if a.target == s.fqdn && slices.Equal(a.addrs, []string{s.addr}) {
			return s
		}
	}
	return nil
}

// floatingIs checks that BIND answers the floating name with s's MP, at ttl.
func (p *pair) floatingIs(ctx context.Context, s *site, ttl time.Duration) (floatingAnswer, error) {
	a, err := p.resolveFloating(ctx)
	if err != nil {
		return a, err
	}
	if p.siteOf(a) != s || a.ttl != ttl {
		return a, fmt.Errorf("BIND answers %s; want %s CNAME %s (TTL %s), A %s", a, floatingFQDN, s.fqdn, ttl, s.addr)
	}
	return a, nil
}

// waitFloating waits until the floating name resolves to s's MP at ttl, by a real DNS query to
// BIND, and then checks that the answer holds (holdFor): once the clusters agree, nothing moves
// it back. It returns the answer.
func (p *pair) waitFloating(t *testing.T, s *site, ttl, timeout time.Duration) floatingAnswer {
	t.Helper()
	var a floatingAnswer
	testrig.Eventually(t, fmt.Sprintf("%s to resolve to %s by a DNS query", floatingFQDN, s.name), timeout, func(ctx context.Context) error {
		var err error
		a, err = p.floatingIs(ctx, s, ttl)
		return err
	})
	for end := time.Now().Add(holdFor); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if _, err := p.floatingIs(p.ctx, s, ttl); err != nil {
			t.Fatalf("%s resolved to %s, then did not stay there: %v", floatingFQDN, s.name, err)
		}
	}
	return a
}

// dnsAgrees waits until every site in up holds the floating DNSEndpoint pointing at to (each
// cluster's Flux applies dns/floating.yaml through its own Kustomization, mpha-dns, which may
// lag the MP's), and its external-dns has synced since: from then on both publish the same
// target, and the name can no longer alternate.
func (p *pair) dnsAgrees(t *testing.T, to *site, up []*site) {
	t.Helper()
	for _, s := range up {
		testrig.Eventually(t, fmt.Sprintf("%s's DNSEndpoint to point at %s", s.name, to.fqdn), 2*time.Minute, func(ctx context.Context) error {
			got, err := cnameTarget(ctx, s)
			if err != nil {
				return err
			}
			if got != to.fqdn {
				return fmt.Errorf("%s's DNSEndpoint: %s → %s", s.name, floatingFQDN, got)
			}
			return nil
		})
	}
	for _, s := range up {
		s.externalDNS.Synced(t, time.Minute)
	}
}

// dnsWatch follows the floating name's answers, as a client polling BIND ten times a second
// would see them, from its start to its stop.
type dnsWatch struct {
	start  time.Time
	since  string // what happened at start ("the merge")
	to     *site
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	last    *site         // the site of the last answer (nil: no answer, or none of the pair's)
	first   time.Duration // since start, to's first answer (-1: none yet)
	settled time.Duration // since start, the last move to to
	changes int           // moves between answers
	at      map[string]int
}

// watchFloating starts following the floating name's answers from now, which is since (what
// just happened), counting the moves and the answers that lead to each site; stop ends it.
func (p *pair) watchFloating(to *site, since string) *dnsWatch {
	ctx, cancel := context.WithCancel(p.ctx)
	w := &dnsWatch{start: time.Now(), since: since, to: to, cancel: cancel, done: make(chan struct{}), first: -1, at: map[string]int{}}
	if a, err := p.resolveFloating(ctx); err == nil {
		w.last = p.siteOf(a)
	}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			a, err := p.resolveFloating(ctx)
			if err != nil {
				continue // a lost query is no answer
			}
			s, since := p.siteOf(a), time.Since(w.start)
			w.mu.Lock()
			if s != nil {
				w.at[s.name]++
			}
			if s != w.last {
				w.changes++
				if s == to {
					w.settled = since
					if w.first < 0 {
						w.first = since
					}
				}
			}
			w.last = s
			w.mu.Unlock()
		}
	}()
	return w
}

// stop ends the watch and says what it saw: when the answer first moved to to, when it moved
// there for the last time, how often it moved, and how many answers led to each site.
func (w *dnsWatch) stop() string {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first < 0 {
		return fmt.Sprintf("never moved to %s after %s (answers per site: %v)", w.to.name, w.since, w.at)
	}
	if w.changes == 1 {
		return fmt.Sprintf("moved to %s %.1fs after %s, in one move", w.to.name, w.first.Seconds(), w.since)
	}
	return fmt.Sprintf("moved to %s %.1fs after %s and for good %.1fs after it: %d moves while the clusters' Flux disagreed",
		w.to.name, w.first.Seconds(), w.since, w.settled.Seconds(), w.changes)
}

// answers counts the answers that led to s so far.
func (w *dnsWatch) answers(s *site) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.at[s.name]
}
