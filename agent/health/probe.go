package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/mpha-dev/mpha/internal/redact"
)

// DefaultPort is front-envoy's API and UI port (tsb-mp-ha.md §1).
const DefaultPort = 8443

// maxBody is how much of an answer a probe reads; past it, the body only has to start like JSON.
const maxBody = 1 << 20

// The targets a probe goes to.
const (
	// TargetFloating is the pair's floating FQDN, what the control planes and users reach.
	TargetFloating = "floating"
	// TargetInstance is the active cluster's own MP FQDN (pair.yaml clusters[].mpFQDN).
	TargetInstance = "instance"
	// TargetURL is a URL of Options.URLs.
	TargetURL = "url"
	// TargetSelf is this cluster's own MP, probed while it is the active one (Monitor.Self).
	TargetSelf = "self"
)

// Probe is one request through the active MP's front-envoy: GET Path must answer 200 with JSON.
type Probe struct {
	// Name labels the probe in metrics, logs and events ("status", "promql").
	Name string `json:"name"`
	// Path is the request's path (and query), starting with '/'.
	Path string `json:"path"`
}

// DefaultProbes are the two health checks of tsb-mp-ha.md §6. Both pass through front-envoy and
// IAM: status reaches the TSB API server (and Postgres), promql reaches OAP.
func DefaultProbes(organization string) []Probe {
	return []Probe{
		{Name: "status", Path: "/v2/organizations/" + url.PathEscape(organization) + "/status"},
		{Name: "promql", Path: "/promql/api/v1/labels"},
	}
}

// Credentials authenticate the probes as a TSB user: basic auth, or a bearer token, not both.
// They never appear in text: String and LogValue say only which kind is set.
type Credentials struct {
	Username, Password string
	Token              string
}

func (c Credentials) kind() string {
	switch {
	case c.Token != "":
		return "bearer token"
	case c.Username != "" || c.Password != "":
		return "basic auth"
	}
	return "none"
}

// String names the kind of credentials, never their values.
func (c Credentials) String() string { return c.kind() }

// GoString is String: %#v shows no secret either.
func (c Credentials) GoString() string { return c.kind() }

// LogValue is String for slog.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.kind()) }

func (c Credentials) validate() error {
	if c.Token != "" && (c.Username != "" || c.Password != "") {
		return errors.New("credentials: a bearer token or a username and password, not both")
	}
	if (c.Username == "") != (c.Password == "") {
		return errors.New("credentials: basic auth needs both a username and a password")
	}
	return nil
}

func (c Credentials) apply(req *http.Request) {
	switch {
	case c.Token != "":
		req.Header.Set("Authorization", "Bearer "+c.Token)
	case c.Username != "":
		req.SetBasicAuth(c.Username, c.Password)
	}
}

// Result is one probe's outcome on one target.
type Result struct {
	Target string `json:"target"`
	Probe  string `json:"probe"`
	// URL is what was requested (any credentials in it redacted).
	URL string `json:"url"`
	// Status is the HTTP status; 0 when nothing answered.
	Status int `json:"status,omitempty"`
	// Error says why the probe failed; empty when it passed.
	Error string `json:"error,omitempty"`
}

// OK says whether the probe passed.
func (r Result) OK() bool { return r.Error == "" }

// String is one line for logs and events: "floating status: HTTP 503".
func (r Result) String() string {
	if r.OK() {
		return r.Target + " " + r.Probe + ": ok"
	}
	return r.Target + " " + r.Probe + ": " + r.Error
}

// request is one probe to send.
type request struct {
	target, probe, url string
}

// prober sends the probes.
type prober struct {
	client  *http.Client
	creds   Credentials
	timeout time.Duration
}

func newProber(opts Options) (*prober, error) {
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(opts.CABundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(opts.CABundle) {
			return nil, errors.New("the CA bundle holds no PEM certificate")
		}
		tlsCfg.RootCAs = pool
	}
	dial := opts.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: opts.Timeout}).DialContext
	}
	// No keep-alive: every round opens new connections, so it sees what a new client would (the
	// floating name's current target, a restarted front-envoy), not a connection from before.
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment, DialContext: dial, TLSClientConfig: tlsCfg,
		TLSHandshakeTimeout: opts.Timeout, DisableKeepAlives: true, ForceAttemptHTTP2: true,
	}
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // an API that redirects is not answering
	}}
	return &prober{client: client, creds: opts.Credentials, timeout: opts.Timeout}, nil
}

// all sends every request at once and returns the results in the requests' order.
func (p *prober) all(ctx context.Context, reqs []request) []Result {
	out := make([]Result, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() { out[i] = p.one(ctx, r) })
	}
	wg.Wait()
	return out
}

// one sends a probe: it passes on 200 with a JSON body.
func (p *prober) one(ctx context.Context, r request) Result {
	res := Result{Target: r.target, Probe: r.probe, URL: redact.String(r.url)}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		res.Error = "bad URL: " + redact.String(err.Error())
		return res
	}
	p.creds.apply(req)
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		res.Error = p.describe(err)
		return res
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		res.Error = "HTTP " + strconv.Itoa(resp.StatusCode)
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			res.Error += " (check the probe credentials)"
		}
		return res
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	switch {
	case err != nil:
		res.Error = "reading the answer: " + p.describe(err)
	case !looksJSON(body):
		res.Error = "HTTP 200 but the answer is not JSON"
	}
	return res
}

// looksJSON: valid JSON, or for an answer past maxBody, one that starts like a JSON value.
func looksJSON(body []byte) bool {
	if len(body) <= maxBody {
		return json.Valid(body)
	}
	t := bytes.TrimLeft(body, " \t\r\n")
	return len(t) > 0 && (t[0] == '{' || t[0] == '[')
}

// describe is an HTTP client error without the URL the client repeats, redacted.
func (p *prober) describe(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Sprintf("no answer within %s", p.timeout)
		}
		err = ue.Err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %s", p.timeout)
	}
	return redact.String(err.Error())
}

// baseURL is https://host:port.
func baseURL(host string, port int) string {
	return "https://" + net.JoinHostPort(host, strconv.Itoa(port))
}
