package testrig_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// named serves the zone's A records with the TTL asked for, and takes a dynamic update only when
// it is signed with the rig's TSIG key.
func TestDNSServesZoneAndSignedUpdates(t *testing.T) {
	integration(t)
	t.Parallel()
	start := time.Now()
	d := testrig.StartDNS(t, testrig.DNSOptions{TTL: 3 * time.Second,
		A: map[string]string{"mp1.tsb.example.com": "127.0.0.11", "mp2.tsb.example.com": "127.0.0.12"}})
	t.Logf("named answered %s after its start", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if os.Geteuid() == 0 {
		if uid := processUID(t, d.Process().Pid()); uid == 0 {
			t.Error("named runs as root")
		}
	}

	ans, err := d.Resolve(ctx, "mp2.tsb.example.com", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if len(ans) != 1 || ans[0].(*dns.A).A.String() != "127.0.0.12" || ans[0].Header().Ttl != 3 {
		t.Fatalf("mp2 A: %v, want 127.0.0.12 with TTL 3", ans)
	}
	if _, err := d.Resolve(ctx, "nope.tsb.example.com", dns.TypeA); err == nil {
		t.Error("an absent name resolved")
	}

	rr, err := dns.NewRR("active.tsb.example.com. 3 IN CNAME mp1.tsb.example.com.")
	if err != nil {
		t.Fatal(err)
	}
	update := func(signed bool) int {
		m := new(dns.Msg)
		m.SetUpdate(dns.Fqdn(d.Zone))
		m.Insert([]dns.RR{rr})
		c := &dns.Client{Net: "tcp"}
		if signed {
			c.TsigSecret = map[string]string{dns.Fqdn(d.TSIG.Name): d.TSIG.Secret}
			m.SetTsig(dns.Fqdn(d.TSIG.Name), dns.HmacSHA256, 300, time.Now().Unix())
		}
		r, _, err := c.ExchangeContext(ctx, m, d.Addr)
		if err != nil {
			t.Fatalf("update (signed %v): %v", signed, err)
		}
		return r.Rcode
	}
	if rc := update(false); rc != dns.RcodeRefused {
		t.Errorf("an unsigned update: %s, want REFUSED", dns.RcodeToString[rc])
	}
	if _, err := d.Resolve(ctx, "active.tsb.example.com", dns.TypeCNAME); err == nil {
		t.Fatal("the unsigned update was applied")
	}
	if rc := update(true); rc != dns.RcodeSuccess {
		t.Fatalf("a signed update: %s", dns.RcodeToString[rc])
	}
	// A client that has named as its name server follows the CNAME to mp1's address.
	addrs, err := d.Resolver().LookupHost(ctx, "active.tsb.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(addrs, []string{"127.0.0.11"}) {
		t.Errorf("active resolves to %v, want [127.0.0.11]", addrs)
	}
}

// processUID is the real user id of a running process, from /proc.
func processUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" {
			uid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return uid
		}
	}
	t.Fatalf("/proc/%d/status has no Uid line", pid)
	return -1
}
