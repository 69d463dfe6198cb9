// Package natsconn connects mpha to NATS: one Options struct for every way of authenticating
// (a .creds file, an nkey seed, user and password, a token) and TLS (a CA, an optional client
// certificate), filled from the CLI's flags (BindFlags) or from the agent's credentials Secret
// (FromSecret, which keeps the secrets in memory), and Connect, which gives a connection that
// reconnects forever and logs its disconnections with slog. Neither a log line nor an error ever
// holds a password, token or seed.
//
// natsconn is a leaf: it imports nothing of mpha but internal/redact.
package natsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mpha-dev/mpha/internal/redact"
)

// Connection defaults: a dial times out after DefaultTimeout; a lost connection is retried every
// ReconnectWait plus up to ReconnectJitter (more for TLS, whose handshake costs the server more),
// forever; PingInterval finds a dead peer within about three intervals.
const (
	DefaultTimeout     = 5 * time.Second
	ReconnectWait      = 2 * time.Second
	ReconnectJitter    = 500 * time.Millisecond
	ReconnectJitterTLS = 2 * time.Second
	PingInterval       = 20 * time.Second
)

// Options say where NATS is and how to authenticate. At most one way to authenticate may be set:
// a creds file (Creds), an nkey seed (NKey), User and Password, or Token. Each file has an
// in-memory twin that FromSecret fills; a file and its twin are exclusive.
type Options struct {
	// URL is the server URL, or several separated by commas (nats://, tls://, ws://, wss://). It
	// may not carry credentials: they belong in the fields below.
	URL string
	// CredsFile is a .creds file: a user JWT and its nkey seed (decentralized auth).
	CredsFile string
	// NKeyFile holds a user nkey seed ("SU...").
	NKeyFile string
	// User and Password go together.
	User, Password string
	Token          string
	// CAFile verifies the server (default: the system's roots). CertFile and KeyFile, which go
	// together, are a client certificate, for servers that verify clients.
	CAFile, CertFile, KeyFile string
	// Name is how the connection shows on the server ("mpha agent east").
	Name string

	// Creds, NKeySeed, CA, Cert and Key are the contents of the files above, for credentials
	// that never touch the disk.
	Creds, NKeySeed, CA, Cert, Key []byte

	// Timeout bounds one dial (default DefaultTimeout).
	Timeout time.Duration
	// RetryOnFailedConnect makes Connect succeed while the server is down: the connection then
	// keeps trying in the background, and publishing fails until it is up. The agent wants this;
	// the CLI, which should say at once that NATS is unreachable, does not.
	RetryOnFailedConnect bool
}

// ErrConflict reports two ways of authenticating, or a file and its in-memory twin, set at once.
var ErrConflict = errors.New("conflicting NATS options")

// Auth names the way o authenticates: creds, nkey, user, token or none (the first set, when
// several are: Validate refuses that).
func (o *Options) Auth() string {
	if m := o.authMethods(); len(m) > 0 {
		return m[0]
	}
	return "none"
}

func (o *Options) authMethods() []string {
	var m []string
	for _, a := range []struct {
		name string
		set  bool
	}{
		{"creds", o.CredsFile != "" || len(o.Creds) > 0},
		{"nkey", o.NKeyFile != "" || len(o.NKeySeed) > 0},
		{"user", o.User != "" || o.Password != ""},
		{"token", o.Token != ""},
	} {
		if a.set {
			m = append(m, a.name)
		}
	}
	return m
}

// TLS reports whether o configures TLS itself (a tls:// or wss:// URL, or a server asking for
// TLS, also lead to it).
func (o *Options) TLS() bool {
	return o.CAFile != "" || o.CertFile != "" || o.KeyFile != "" || len(o.CA) > 0 || len(o.Cert) > 0 || len(o.Key) > 0
}

// LogValue shows o in logs without its secrets: the URL (redacted), the way it authenticates
// and which TLS parts are set.
func (o Options) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("url", redact.String(o.URL)), slog.String("auth", o.Auth())}
	if o.User != "" {
		attrs = append(attrs, slog.String("user", o.User))
	}
	if o.TLS() {
		attrs = append(attrs, slog.Bool("ca", o.CAFile != "" || len(o.CA) > 0),
			slog.Bool("clientCert", o.CertFile != "" || len(o.Cert) > 0))
	}
	return slog.GroupValue(attrs...)
}

// Validate checks o without connecting: a URL without credentials, at most one way to
// authenticate, pairs that go together, and every file readable.
func (o *Options) Validate() error {
	errs := []error{validateURL(o.URL), o.validateAuth()}
	for _, f := range []struct{ what, path string }{
		{"creds file", o.CredsFile}, {"nkey file", o.NKeyFile},
		{"CA file", o.CAFile}, {"client certificate file", o.CertFile}, {"client key file", o.KeyFile},
	} {
		if f.path != "" {
			errs = append(errs, readable(f.what, f.path))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("nats options: %w", err)
	}
	return nil
}

// validateAuth checks what FromSecret can check too: everything but the URL and the files.
func (o *Options) validateAuth() error {
	var errs []error
	if m := o.authMethods(); len(m) > 1 {
		errs = append(errs, fmt.Errorf("%w: %s: authenticate one way only", ErrConflict, strings.Join(m, " and ")))
	}
	for _, twin := range []struct {
		what string
		file string
		data []byte
	}{
		{"creds", o.CredsFile, o.Creds}, {"nkey", o.NKeyFile, o.NKeySeed}, {"CA", o.CAFile, o.CA},
		{"client certificate", o.CertFile, o.Cert}, {"client key", o.KeyFile, o.Key},
	} {
		if twin.file != "" && len(twin.data) > 0 {
			errs = append(errs, fmt.Errorf("%w: %s given both as a file and inline", ErrConflict, twin.what))
		}
	}
	if (o.User == "") != (o.Password == "") {
		errs = append(errs, errors.New("user and password go together"))
	}
	hasCert, hasKey := o.CertFile != "" || len(o.Cert) > 0, o.KeyFile != "" || len(o.Key) > 0
	if hasCert != hasKey {
		errs = append(errs, errors.New("a client certificate and its key go together"))
	}
	return errors.Join(errs...)
}

func validateURL(raw string) error {
	if strings.TrimSpace(raw) == "" {
		return errors.New("a NATS URL is required")
	}
	for _, s := range strings.Split(raw, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || u.Host == "" {
			// url.Parse's error quotes the URL, which may hold a password.
			return fmt.Errorf("NATS URL %q: not a URL with a host", redact.String(s))
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("NATS URL %q: scheme %q, want nats, tls, ws or wss", redact.String(s), u.Scheme)
		}
		if u.User != nil {
			return fmt.Errorf("NATS URL %q: holds credentials; give them as user/password, token, nkey or creds instead",
				redact.String(s))
		}
	}
	return nil
}

func readable(what, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	f.Close()
	return nil
}

// Connect validates o and connects. The connection reconnects forever (ReconnectWait plus
// jitter between attempts), buffering publishes meanwhile, and logs each disconnection and
// reconnection on logger (nil: discard). ctx bounds the first connection only.
func Connect(ctx context.Context, o Options, logger *slog.Logger) (*nats.Conn, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("nats", redact.String(o.URL))
	opts, err := o.natsOptions(logger)
	if err != nil {
		return nil, fmt.Errorf("nats options: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(min(o.timeout(), max(time.Until(d), time.Millisecond))))
	}
	type result struct {
		nc  *nats.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		nc, err := nats.Connect(o.URL, opts...)
		done <- result{nc, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, redact.Error(fmt.Errorf("connecting to NATS at %s (auth %s): %w", o.URL, o.Auth(), r.err))
		}
		if !r.nc.IsConnected() {
			logger.Warn("NATS unreachable; connecting in the background", "auth", o.Auth())
		}
		return r.nc, nil
	case <-ctx.Done():
		go func() { // nats.Connect takes no context: close what it returns later
			if r := <-done; r.nc != nil {
				r.nc.Close()
			}
		}()
		return nil, fmt.Errorf("connecting to NATS at %s: %w", redact.String(o.URL), ctx.Err())
	}
}

func (o *Options) timeout() time.Duration {
	if o.Timeout > 0 {
		return o.Timeout
	}
	return DefaultTimeout
}

// natsOptions turns o into nats.go options: the connection's behaviour, its handlers, then
// authentication and TLS.
func (o *Options) natsOptions(logger *slog.Logger) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.Timeout(o.timeout()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(ReconnectWait),
		nats.ReconnectJitter(ReconnectJitter, ReconnectJitterTLS),
		nats.PingInterval(PingInterval),
		nats.RetryOnFailedConnect(o.RetryOnFailedConnect),
	}
	opts = append(opts, handlers(logger)...)
	auth, err := o.authOption()
	if err != nil {
		return nil, err
	}
	opts = append(opts, auth)
	if o.TLS() {
		opts = append(opts, nats.ClientTLSConfig(o.certLoader(), o.caLoader()))
	}
	return opts, nil
}

// handlers log the connection's life. Errors may quote a URL: they go through redact.
func handlers(logger *slog.Logger) []nats.Option {
	return []nats.Option{
		nats.ConnectHandler(func(nc *nats.Conn) {
			logger.Info("NATS connected", "server", nc.ConnectedUrlRedacted(), "name", nc.Opts.Name)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				logger.Debug("NATS disconnected")
				return
			}
			logger.Warn("NATS disconnected; reconnecting", "error", redact.String(err.Error()))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			logger.Info("NATS reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			logger.Debug("NATS reconnect attempt failed", "error", redact.String(err.Error()))
		}),
		nats.ClosedHandler(func(*nats.Conn) { logger.Debug("NATS connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			args := []any{"error", redact.String(err.Error())}
			if sub != nil {
				args = append(args, "subject", sub.Subject)
			}
			logger.Warn("NATS error", args...)
		}),
	}
}
