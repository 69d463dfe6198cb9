package testrig

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DefaultZone is the zone StartDNS serves when DNSOptions.Zone is empty: the drill's MP names and
// its floating name live in it.
const DefaultZone = "tsb.example.com"

// TSIGKey is a shared secret that signs DNS messages (RFC 8945): external-dns signs its updates
// and zone transfers with it, and the server accepts them only when signed.
type TSIGKey struct {
	// Name is the key's name, a domain name (with or without the final dot).
	Name string
	// Algorithm is BIND's name for the HMAC, e.g. hmac-sha256.
	Algorithm string
	// Secret is the key, base64-encoded.
	Secret string
}

// DNSOptions configure StartDNS.
type DNSOptions struct {
	// Zone is the zone the server is authoritative for (default DefaultZone).
	Zone string
	// A holds the zone's static address records: a name in the zone (no final dot, the way a
	// DNSEndpoint writes it) → an IPv4 address. 127.0.0.0/8 is all loopback on Linux, so distinct
	// 127.x addresses give distinct servers on one machine.
	A map[string]string
	// TTL is the zone's default TTL and negative-caching TTL (default 2s, at least 1s).
	TTL time.Duration
	// TSIG is the key updates and transfers must be signed with (default: a fresh random key).
	TSIG *TSIGKey
}

// DNS is BIND 9's named from the machine's packages (`make deps`), authoritative for one zone on
// a free loopback port, accepting RFC 2136 dynamic updates and zone transfers signed with its
// TSIG key. It runs unprivileged: as the `bind` user when the test runs as root.
type DNS struct {
	// Zone is the zone served, without the final dot.
	Zone string
	// Addr is where the server answers, UDP and TCP (127.0.0.1:PORT); Host and Port are its parts.
	Addr string
	Host string
	Port int
	// TSIG is the key that signs updates and transfers.
	TSIG TSIGKey
	// TTL is the zone's default TTL.
	TTL time.Duration

	proc *Process
}

// StartDNS writes named's configuration and zone into a private directory, starts named in the
// foreground and waits until it answers for the zone; it stops when t ends.
func StartDNS(t testing.TB, o DNSOptions) *DNS {
	t.Helper()
	named := systemBin(t, "named", "/usr/sbin")
	d := &DNS{Zone: strings.TrimSuffix(o.Zone, "."), Host: "127.0.0.1", TTL: o.TTL}
	if d.Zone == "" {
		d.Zone = DefaultZone
	}
	if d.TTL == 0 {
		d.TTL = 2 * time.Second
	}
	if d.TTL < time.Second {
		t.Fatalf("dns: TTL %s: DNS counts in whole seconds, at least 1s", d.TTL)
	}
	if o.TSIG != nil {
		d.TSIG = *o.TSIG
	} else {
		d.TSIG = TSIGKey{Name: "mpha-rig", Algorithm: "hmac-sha256", Secret: randomBase64(t, 32)}
	}
	d.TSIG.Name = strings.TrimSuffix(d.TSIG.Name, ".")
	d.Port = freeDNSPort(t)
	d.Addr = net.JoinHostPort(d.Host, strconv.Itoa(d.Port))

	// t.TempDir's parent is private to root, and named writes its journal next to the zone file:
	// the server's user owns its own directory (as Postgres does).
	dir, err := os.MkdirTemp("", "mpha-named-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	zone, err := zoneFile(d.Zone, d.TTL, o.A)
	if err != nil {
		t.Fatalf("dns: %v", err)
	}
	files := map[string][]byte{"named.conf": []byte(d.namedConf(dir)), d.Zone + ".zone": zone}
	for f, b := range files {
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		// named's -u drops root only after binding; starting it as `bind` never gives it root.
		cred = serviceUser(t, "bind")
		if err := chownTree(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	d.proc = startProcess(t, procSpec{
		name: "named", path: named, logDir: logDir(t, t.TempDir()), cred: cred, dir: dir,
		// -g: foreground, logging to stderr; -4: loopback IPv4 only; -n 1: one worker thread (two
		// shared cores; a test's load is a few queries a second).
		args: []string{"-g", "-4", "-n", "1", "-c", filepath.Join(dir, "named.conf")},
	})
	waitFor(t, "named to answer for "+d.Zone, 30*time.Second, d.proc, func(ctx context.Context) error {
		_, err := d.Resolve(ctx, d.Zone, dns.TypeSOA)
		return err
	})
	return d
}

// namedConf is a configuration that serves only the zone, only on d's port, with no recursion,
// no control channel and no other file of the machine's named (/etc/bind is not read).
func (d *DNS) namedConf(dir string) string {
	key := dns.Fqdn(d.TSIG.Name)
	return fmt.Sprintf(`options {
	directory %[1]q;
	pid-file %[2]q;
	session-keyfile %[3]q;
	managed-keys-directory %[1]q;
	listen-on port %[4]d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	dnssec-validation no;
	notify no;
};
controls { };
key %[5]q {
	algorithm %[6]s;
	secret %[7]q;
};
zone %[8]q {
	type primary;
	file %[9]q;
	update-policy { grant %[5]s zonesub ANY; };
	allow-transfer { key %[5]s; };
};
`, dir, filepath.Join(dir, "named.pid"), filepath.Join(dir, "session.key"), d.Port,
		key, d.TSIG.Algorithm, d.TSIG.Secret, d.Zone, filepath.Join(dir, d.Zone+".zone"))
}

// zoneFile renders the zone: its SOA and NS (a name server at 127.0.0.1) and the A records.
func zoneFile(zone string, ttl time.Duration, a map[string]string) ([]byte, error) {
	secs := int(ttl / time.Second)
	origin := dns.Fqdn(zone)
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s\n$TTL %d\n", origin, secs)
	// Refresh, retry and expire matter only to secondaries, which there are none of; the last
	// field is the negative-caching TTL: a name not yet published is asked again soon.
	fmt.Fprintf(&b, "@ IN SOA ns.%s hostmaster.%s 1 60 60 3600 %d\n", origin, origin, secs)
	fmt.Fprintf(&b, "@ IN NS ns.%s\nns IN A 127.0.0.1\n", origin)
	names := make([]string, 0, len(a))
	for n := range a {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fq := dns.Fqdn(n)
		if !dns.IsSubDomain(origin, fq) {
			return nil, fmt.Errorf("record %s is outside zone %s", n, zone)
		}
		ip, err := netip.ParseAddr(a[n])
		if err != nil || !ip.Is4() {
			return nil, fmt.Errorf("record %s: %q is not an IPv4 address", n, a[n])
		}
		fmt.Fprintf(&b, "%s IN A %s\n", fq, ip)
	}
	return []byte(b.String()), nil
}

// Resolve asks the server for name's records of type qtype (dns.TypeA, dns.TypeCNAME…) and returns
// the answer section: for an A question about a CNAME, the CNAME and the target's A records. An
// answer other than NOERROR is an error naming its code.
func (d *DNS) Resolve(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = false // authoritative data only: named recurses for no one here
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	r, _, err := c.ExchangeContext(ctx, m, d.Addr)
	if err != nil {
		return nil, fmt.Errorf("asking %s for %s %s: %w", d.Addr, name, dns.TypeToString[qtype], err)
	}
	if r.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("asking %s for %s %s: %s", d.Addr, name, dns.TypeToString[qtype], dns.RcodeToString[r.Rcode])
	}
	return r.Answer, nil
}

// Resolver is Go's own resolver sending every query to the server, the way a client configured
// with it as its name server resolves: it follows the CNAME to the target's address.
func (d *DNS) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, network, d.Addr)
	}}
}

// Process is named's process, for fault tests and figures.
func (d *DNS) Process() *Process { return d.proc }

// freeDNSPort finds a loopback port free for both TCP and UDP: a name server takes both.
func freeDNSPort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("finding a loopback port free for TCP and UDP: none in 20 tries")
	return 0
}

func chownTree(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
}

func randomBase64(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}
