package testrig

import (
	"context"
	"fmt"
	"time"

	"github.com/miekg/dns"
)

// SetCNAME points name at target with one RFC 2136 update signed with the server's TSIG key,
// replacing any CNAME name had: the change external-dns makes when a DNSEndpoint's target moves,
// for tests that move the floating name without a cluster. ttl is the record's (whole seconds).
func (d *DNS) SetCNAME(ctx context.Context, name, target string, ttl time.Duration) error {
	fq := dns.Fqdn(name)
	m := new(dns.Msg)
	m.SetUpdate(dns.Fqdn(d.Zone))
	m.RemoveRRset([]dns.RR{&dns.CNAME{Hdr: dns.RR_Header{Name: fq, Rrtype: dns.TypeCNAME, Class: dns.ClassINET}}})
	m.Insert([]dns.RR{&dns.CNAME{
		Hdr:    dns.RR_Header{Name: fq, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: uint32(ttl / time.Second)},
		Target: dns.Fqdn(target),
	}})
	key := dns.Fqdn(d.TSIG.Name)
	m.SetTsig(key, dns.Fqdn(d.TSIG.Algorithm), 300, time.Now().Unix())
	c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second, TsigSecret: map[string]string{key: d.TSIG.Secret}}
	r, _, err := c.ExchangeContext(ctx, m, d.Addr)
	if err != nil {
		return fmt.Errorf("updating %s CNAME %s: %w", name, target, err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("updating %s CNAME %s: %s", name, target, dns.RcodeToString[r.Rcode])
	}
	return nil
}
