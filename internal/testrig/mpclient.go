package testrig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ClientKind is which of the MP's clients a Client behaves like. Both are HTTPS clients with a
// bearer token that poll the organization's status; they differ in who they say they are.
type ClientKind string

const (
	// ControlPlaneClient is like a control plane's components (XCP edge, OAP): a service identity
	// holding a token issued for its cluster.
	ControlPlaneClient ClientKind = "control-plane"
	// TctlClient is like tctl: a person's token in a config file.
	TctlClient ClientKind = "tctl"
)

// userAgent is what each kind sends, so the MP's answers and logs show who asked.
func (k ClientKind) userAgent() string {
	if k == TctlClient {
		return "tctl/mpha-rig"
	}
	return "xcp-edge/mpha-rig"
}

// ClientOptions configure a Client, once: nothing is changed afterwards.
type ClientOptions struct {
	// Name labels the client in logs (default Kind).
	Name string
	Kind ClientKind
	// FQDN is the floating name, Port the MP's HTTPS port.
	FQDN string
	Port int
	// Org is the organization polled (default DefaultOrg).
	Org string
	// CA is the root CA (PEM) the MP's certificate must chain to; the name checked is FQDN.
	CA []byte
	// Token is the bearer token (IssueToken).
	Token string
	// Resolver resolves FQDN afresh at every attempt (DNS.Resolver: the rig's named).
	Resolver *net.Resolver
	// Interval is the time between two attempts' starts (default 200ms); Timeout bounds one
	// attempt (default 2s).
	Interval, Timeout time.Duration
	// Setting, when set, is a settings key read after each answered status request.
	Setting string
	// OnChange, when set, is called with each change of outcome as it happens (from the polling
	// goroutine; keep it short).
	OnChange func(Change)
}

// Outcome classifies one attempt.
type Outcome string

const (
	OutcomeOK           Outcome = "200"
	OutcomeDNS          Outcome = "error: dns"
	OutcomeRefused      Outcome = "error: connect refused"
	OutcomeTLS          Outcome = "error: tls"
	OutcomeUnauthorized Outcome = "401"
	OutcomeOther        Outcome = "error: other"
)

// Attempt is one request to the floating name and what came of it.
type Attempt struct {
	// At is when it started; Took how long it lasted.
	At   time.Time
	Took time.Duration
	// IP is the address the name resolved to and was dialed ("" when resolution failed).
	IP      string
	Outcome Outcome
	// Status is the HTTP status (0 without an answer); Cluster the MP that answered, from its
	// body (on 200 and on the stand-in's 401).
	Status  int
	Cluster string
	// Err says what went wrong.
	Err string
	// Setting is the value read for ClientOptions.Setting after a 200; SettingErr why none was.
	Setting, SettingErr string
}

// Client polls the MP through the floating name the way TSB's clients do after a failover:
// configured once (name, root CA, token, DNS server) and never reconfigured. Every attempt
// resolves the name again and opens a new connection (no keep-alive pins the old address), and
// the outcome is recorded for the test to ask about.
type Client struct {
	opts  ClientOptions
	http  *http.Client
	token atomic.Pointer[string]

	mu       sync.Mutex
	attempts Attempts
	stop     context.CancelFunc
	done     chan struct{}
}

// NewClient builds a client; it polls only once Poll is called.
func NewClient(t testing.TB, o ClientOptions) *Client {
	t.Helper()
	if o.FQDN == "" || o.Port == 0 || o.Resolver == nil || len(o.CA) == 0 {
		t.Fatal("mp client: FQDN, Port, Resolver and CA are required")
	}
	if o.Kind == "" {
		o.Kind = ControlPlaneClient
	}
	if o.Name == "" {
		o.Name = string(o.Kind)
	}
	if o.Org == "" {
		o.Org = DefaultOrg
	}
	if o.Interval == 0 {
		o.Interval = 200 * time.Millisecond
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(o.CA) {
		t.Fatalf("mp client %s: CA holds no PEM certificate", o.Name)
	}
	c := &Client{opts: o}
	c.token.Store(&o.Token)
	c.http = &http.Client{Timeout: o.Timeout, Transport: &http.Transport{
		DialContext:       c.dial,
		TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: o.FQDN, MinVersion: tls.VersionTLS12},
		DisableKeepAlives: true, // a connection per attempt: each one follows DNS
		Proxy:             nil,  // never the environment's proxy
	}}
	return c
}

// Login replaces the client's token, as a person logs in again (or a control plane is handed a
// new service token) after the signing key was rotated: the one change a rotation asks of
// clients, unlike a failover, which asks none. Name, CA and DNS server stay as configured.
func (c *Client) Login(token string) { c.token.Store(&token) }

// StartClient builds a client and starts polling until t ends.
func StartClient(t testing.TB, o ClientOptions) *Client {
	t.Helper()
	c := NewClient(t, o)
	c.Poll(t)
	return c
}

// Poll starts polling every Interval until Stop or the end of t.
func (c *Client) Poll(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	if c.stop != nil {
		c.mu.Unlock()
		cancel()
		t.Fatalf("mp client %s: already polling", c.opts.Name)
	}
	c.stop, c.done = cancel, make(chan struct{})
	c.mu.Unlock()
	go c.loop(ctx)
	t.Cleanup(c.Stop)
}

// Stop ends polling and waits for the attempt under way.
func (c *Client) Stop() {
	c.mu.Lock()
	stop, done := c.stop, c.done
	c.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	<-done
}

func (c *Client) loop(ctx context.Context) {
	defer close(c.done)
	for {
		start := time.Now()
		c.Attempt(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(c.opts.Interval))):
		}
	}
}

// Attempt makes one attempt now, records it and returns it.
func (c *Client) Attempt(ctx context.Context) Attempt {
	a := c.do(ctx)
	c.mu.Lock()
	change := len(c.attempts) == 0 || !c.attempts[len(c.attempts)-1].sameAs(a)
	c.attempts = append(c.attempts, a)
	c.mu.Unlock()
	if change && c.opts.OnChange != nil {
		c.opts.OnChange(Change{At: a.At, Outcome: a.Outcome, Cluster: a.Cluster, IP: a.IP, Err: a.Err, Count: 1})
	}
	return a
}

func (c *Client) do(ctx context.Context) Attempt {
	a := Attempt{At: time.Now()}
	var st MPStatus
	r := c.get(ctx, "status", &st)
	a.IP, a.Status, a.Cluster, a.Outcome, a.Err = r.ip, r.code, r.cluster, r.outcome, r.err
	if a.Outcome == OutcomeOK && st.Organization != c.opts.Org {
		a.Outcome, a.Err = OutcomeOther, fmt.Sprintf("answered for organization %q", st.Organization)
	}
	if a.Outcome == OutcomeOK && c.opts.Setting != "" {
		var s MPSetting
		if r := c.get(ctx, "settings/"+url.PathEscape(c.opts.Setting), &s); r.outcome == OutcomeOK {
			a.Setting = s.Value
		} else {
			a.SettingErr = r.err
		}
	}
	a.Took = time.Since(a.At)
	return a
}

// reply is what one request came to.
type reply struct {
	outcome Outcome
	code    int
	// cluster is the MP named by the body; ip the address dialed.
	cluster, ip string
	err         string
}

// get requests path under the organization and decodes a 200 into out.
func (c *Client) get(ctx context.Context, path string, out any) reply {
	var r reply
	u := "https://" + net.JoinHostPort(c.opts.FQDN, strconv.Itoa(c.opts.Port)) + "/v2/organizations/" + url.PathEscape(c.opts.Org) + "/" + path
	trace := &httptrace.ClientTrace{ConnectStart: func(_, addr string) {
		if h, _, err := net.SplitHostPort(addr); err == nil {
			r.ip = h
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, u, nil)
	if err != nil {
		r.outcome, r.err = OutcomeOther, err.Error()
		return r
	}
	req.Header.Set("Authorization", "Bearer "+*c.token.Load())
	req.Header.Set("User-Agent", c.opts.Kind.userAgent())
	resp, err := c.http.Do(req)
	if err != nil {
		r.outcome, r.err = errorClass(err), errorText(err)
		return r
	}
	defer resp.Body.Close()
	r.code = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		r.outcome, r.err = OutcomeOther, "reading the answer: "+err.Error()
		return r
	}
	var who MPError
	_ = json.Unmarshal(body, &who) // a body that is not the stand-in's names no cluster
	r.cluster = who.Cluster
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		r.outcome, r.err = OutcomeUnauthorized, resp.Status+": "+who.Error
	case resp.StatusCode != http.StatusOK:
		r.outcome, r.err = OutcomeOther, resp.Status+": "+who.Error
	default:
		r.outcome = OutcomeOK
		if err := json.Unmarshal(body, out); err != nil {
			r.outcome, r.err = OutcomeOther, "decoding the answer: "+err.Error()
		}
	}
	return r
}

// dial resolves the host afresh, through the client's DNS server, and dials its addresses in
// turn: Go's resolver keeps no cache, so every attempt sees the record as published now.
func (c *Client) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	ips, err := c.opts.Resolver.LookupHost(ctx, host)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	var errs []error
	for _, ip := range ips {
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip, port))
		if err == nil {
			return conn, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// errorText is err without the request's URL (the change log says it once) and, for a failed
// lookup, without the server Go's resolver names: that is the machine's, not the one the client
// asks.
func errorText(err error) string {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return fmt.Sprintf("lookup %s: %s", dnsErr.Name, dnsErr.Err)
	}
	var u *url.Error
	if errors.As(err, &u) {
		return u.Err.Error()
	}
	return err.Error()
}

// errorClass sorts a transport error: no address for the name, nothing listening at the
// address, a certificate the client does not trust (or a handshake the server broke off), or
// anything else (a timeout, a reset).
func errorClass(err error) Outcome {
	var (
		dnsErr    *net.DNSError
		verifyErr *tls.CertificateVerificationError
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		invalid   x509.CertificateInvalidError
		alert     tls.AlertError
		record    tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &dnsErr):
		return OutcomeDNS
	case errors.Is(err, syscall.ECONNREFUSED):
		return OutcomeRefused
	case errors.As(err, &verifyErr), errors.As(err, &unknownCA), errors.As(err, &hostErr),
		errors.As(err, &invalid), errors.As(err, &alert), errors.As(err, &record):
		return OutcomeTLS
	}
	return OutcomeOther
}
