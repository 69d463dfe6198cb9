package alerts

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/gitops"
)

// Defaults of Options.
const (
	DefaultRemember = 24 * time.Hour
	DefaultTimeout  = 5 * time.Second
)

// maxRemembered bounds the memory of events published.
const maxRemembered = 10_000

// publisher is what a Handler needs of a jetstream.JetStream.
type publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Auth is what Alertmanager's webhook http_config sends: a bearer token (authorization), or a
// username and password (basic_auth). With both set, either is accepted. String and LogValue
// never show a secret.
type Auth struct {
	Token              string
	Username, Password string
}

func (a Auth) kind() string {
	var kinds []string
	if a.Token != "" {
		kinds = append(kinds, "bearer token")
	}
	if a.Username != "" {
		kinds = append(kinds, "basic auth")
	}
	if len(kinds) == 0 {
		return "none"
	}
	return strings.Join(kinds, " or ")
}

// String names the kinds of authentication, never their values.
func (a Auth) String() string { return a.kind() }

// GoString is String: %#v shows no secret either.
func (a Auth) GoString() string { return a.kind() }

// LogValue is String for slog.
func (a Auth) LogValue() slog.Value { return slog.StringValue(a.kind()) }

// Options configure a Handler. Cluster, Pair, Auth and at least one rule are required.
type Options struct {
	// Cluster is the agent serving the bridge: the events' source. Pair names the pair.
	Cluster, Pair string
	// Rules map firing alerts to actions; the first matching rule applies.
	Rules []Rule
	Auth  Auth
	// Remember is how long an event's id is remembered as published (default DefaultRemember):
	// Alertmanager re-sends a firing alert every repeat_interval (4h by default), longer than
	// the stream's duplicate window.
	Remember time.Duration
	// Timeout bounds publishing one notification's events (default DefaultTimeout).
	Timeout time.Duration
	// SigningKey, if set, signs failover requests (for agents with nats.requireSignedEvents).
	SigningKey ed25519.PrivateKey
	// Registerer receives the metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Handler is the webhook receiver. It answers 405 to anything but POST, 401 without the
// configured credentials, 413 to a body over MaxPayload, 400 to a malformed one, 503 when an
// event could not be published (Alertmanager retries, and the ids make the retry harmless), and
// 200 with the events published as JSON otherwise.
type Handler struct {
	opts    Options
	js      publisher
	subj    event.Subjects
	log     *slog.Logger
	metrics *metrics

	mu   sync.Mutex
	seen map[string]time.Time // event id → when it was published
}

var _ http.Handler = (*Handler)(nil)

// New validates opts and returns a Handler publishing through js.
func New(js publisher, opts Options) (*Handler, error) {
	subj, err := validate(js, &opts)
	if err != nil {
		return nil, fmt.Errorf("alert bridge: %w", err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("alert bridge: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{opts: opts, js: js, subj: subj, log: log.With("cluster", opts.Cluster, "pair", opts.Pair),
		metrics: m, seen: map[string]time.Time{}}, nil
}

// validate checks opts and fills in their defaults; the rules are copied.
func validate(js publisher, opts *Options) (event.Subjects, error) {
	var errs []error
	if js == nil {
		errs = append(errs, errors.New("a JetStream client is required"))
	}
	if err := gitops.ValidateClusterName(opts.Cluster); err != nil {
		errs = append(errs, fmt.Errorf("cluster: %w", err))
	}
	subj, err := event.NewSubjects(opts.Pair)
	if err != nil {
		errs = append(errs, err)
	}
	if opts.Auth.Token == "" && opts.Auth.Username == "" {
		errs = append(errs, errors.New("auth: a bearer token or a username and password is required"))
	}
	if (opts.Auth.Username == "") != (opts.Auth.Password == "") {
		errs = append(errs, errors.New("auth: basic auth needs both a username and a password"))
	}
	if len(opts.Rules) == 0 {
		errs = append(errs, errors.New("rules: at least one rule is required"))
	}
	opts.Rules = append([]Rule(nil), opts.Rules...)
	for i := range opts.Rules {
		if err := opts.Rules[i].validate(); err != nil {
			errs = append(errs, fmt.Errorf("rules[%d]: %w", i, err))
		}
	}
	if opts.SigningKey != nil && len(opts.SigningKey) != ed25519.PrivateKeySize {
		errs = append(errs, errors.New("the signing key is not an ed25519 private key"))
	}
	if opts.Remember <= 0 {
		opts.Remember = DefaultRemember
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return subj, errors.Join(errs...)
}

// ServeHTTP receives one webhook notification.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.refuse(w, r, http.StatusMethodNotAllowed, "method", "only POST is accepted")
		return
	}
	if !h.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mpha", Basic realm="mpha"`)
		h.refuse(w, r, http.StatusUnauthorized, "unauthorized", "missing or wrong credentials")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxPayload))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		h.refuse(w, r, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body is over %d bytes", MaxPayload))
		return
	case err != nil:
		h.refuse(w, r, http.StatusBadRequest, "malformed", "reading the body failed")
		return
	}
	msg, err := Decode(body)
	if err != nil {
		code, reason := http.StatusBadRequest, "malformed"
		if errors.Is(err, ErrTooLarge) {
			code, reason = http.StatusRequestEntityTooLarge, "too_large"
		}
		h.refuse(w, r, code, reason, err.Error())
		return
	}
	outcomes, err := h.act(r.Context(), msg)
	if err != nil {
		h.log.Warn("alert notification not acted on; Alertmanager will retry", "receiver", msg.Receiver,
			"groupKey", msg.GroupKey, "error", err)
		http.Error(w, "publishing failed; retry later", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(Response{Events: outcomes})
}

// Response is the body of a 200 answer: what the notification led to.
type Response struct {
	Events []Outcome `json:"events"`
}

// Outcome is one event a firing alert led to.
type Outcome struct {
	Alert       string `json:"alert"`
	Fingerprint string `json:"fingerprint"`
	Action      Action `json:"action"`
	Event       string `json:"event"`
	// Duplicate: the event had been published already (a re-sent notification).
	Duplicate bool `json:"duplicate,omitempty"`
}

// refuse answers code and logs why.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, code int, reason, detail string) {
	h.metrics.rejected.WithLabelValues(reason).Inc()
	h.log.Warn("alert notification refused", "status", code, "reason", reason, "detail", detail,
		"remote", r.RemoteAddr)
	http.Error(w, detail, code)
}

// authorized compares the request's credentials with the configured ones in constant time.
func (h *Handler) authorized(r *http.Request) bool {
	a := h.opts.Auth
	header := r.Header.Get("Authorization")
	if a.Token != "" && len(header) > len("Bearer ") && strings.EqualFold(header[:len("Bearer ")], "Bearer ") {
		return equal(header[len("Bearer "):], a.Token)
	}
	user, pass, ok := r.BasicAuth()
	if a.Username == "" || !ok {
		return false
	}
	userOK, passOK := equal(user, a.Username), equal(pass, a.Password)
	return userOK && passOK
}

// equal compares the SHA-256 of a and b in constant time: neither contents nor length leak.
func equal(a, b string) bool {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:]) == 1
}
