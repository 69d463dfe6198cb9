package testrig

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// MPSettingsTable holds the configuration rows the stand-in reads: (org, key) → value, in the MP's
// own database. A database copied from the active holds the active's rows, so a read through the
// new active after a failover shows whether the copy was current.
const MPSettingsTable = "public.mp_settings"

// MPStatus is the answer to GET /v2/organizations/<org>/status.
type MPStatus struct {
	Organization string `json:"organization"`
	// Cluster is the name of the MP that answered; Addr where it listens.
	Cluster string `json:"cluster"`
	Addr    string `json:"addr"`
	// Subject and Kid are the accepted token's.
	Subject string `json:"subject"`
	Kid     string `json:"kid"`
	// Client is the request's User-Agent.
	Client string `json:"client"`
}

// MPSetting is the answer to GET /v2/organizations/<org>/settings/<key>.
type MPSetting struct {
	Organization string `json:"organization"`
	Cluster      string `json:"cluster"`
	Key          string `json:"key"`
	Value        string `json:"value"`
}

// MPError is the body of every answer other than 200: which MP refused, and why (never a token).
type MPError struct {
	Cluster string `json:"cluster"`
	Error   string `json:"error"`
}

type tokenContextKey struct{}

// acceptedToken is what the authentication let through to the handlers.
type acceptedToken struct{ sub, kid string }

func (m *MP) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/organizations/{org}/status", m.status)
	mux.HandleFunc("GET /v2/organizations/{org}/settings/{key}", m.setting)
	return m.authenticate(mux)
}

// authenticate lets a request through only with a bearer token that verifies against the
// iam-signing-key loaded now: 401 otherwise, as TSB's API refuses a token its IAM did not sign.
func (m *MP) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		err := ErrNoToken
		var sub, kid string
		if ok && raw != "" {
			sub, kid, err = verifyToken(strings.TrimSpace(raw), m.key.Load(), time.Now())
		}
		if err != nil {
			m.log.Info("refused", "path", r.URL.Path, "client", r.UserAgent(), "kid", kid, "why", err)
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			m.writeJSON(w, http.StatusUnauthorized, MPError{Cluster: m.Name, Error: err.Error()})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenContextKey{}, acceptedToken{sub: sub, kid: kid})))
	})
}

func (m *MP) status(w http.ResponseWriter, r *http.Request) {
	if !m.ownOrg(w, r) {
		return
	}
	tok, _ := r.Context().Value(tokenContextKey{}).(acceptedToken)
	m.writeJSON(w, http.StatusOK, MPStatus{Organization: m.Org, Cluster: m.Name, Addr: m.Addr,
		Subject: tok.sub, Kid: tok.kid, Client: r.UserAgent()})
}

func (m *MP) setting(w http.ResponseWriter, r *http.Request) {
	if !m.ownOrg(w, r) {
		return
	}
	key := r.PathValue("key")
	v, err := m.readSetting(r.Context(), key)
	switch {
	case errors.Is(err, errNoSetting):
		m.writeJSON(w, http.StatusNotFound, MPError{Cluster: m.Name, Error: err.Error()})
	case err != nil:
		m.log.Warn("reading a setting", "key", key, "err", err)
		m.writeJSON(w, http.StatusServiceUnavailable, MPError{Cluster: m.Name, Error: err.Error()})
	default:
		m.writeJSON(w, http.StatusOK, MPSetting{Organization: m.Org, Cluster: m.Name, Key: key, Value: v})
	}
}

func (m *MP) ownOrg(w http.ResponseWriter, r *http.Request) bool {
	if org := r.PathValue("org"); org != m.Org {
		m.writeJSON(w, http.StatusNotFound, MPError{Cluster: m.Name, Error: fmt.Sprintf("organization %q not found", org)})
		return false
	}
	return true
}

func (m *MP) writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		m.log.Debug("writing an answer", "err", err)
	}
}

// errNoSetting: the row, or the whole table, is not in the MP's database.
var errNoSetting = errors.New("no such setting")

// readSetting reads one row on a connection of its own: the database behind the DSN may have been
// promoted or rebuilt since the last request, and the stand-in should see it as it is now.
func (m *MP) readSetting(ctx context.Context, key string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, *m.dsn.Load())
	if err != nil {
		return "", fmt.Errorf("connecting to the MP's database: %w", err)
	}
	defer c.Close(context.Background())
	var v string
	err = c.QueryRow(ctx, "SELECT value FROM "+MPSettingsTable+" WHERE org = $1 AND key = $2", m.Org, key).Scan(&v)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("%w %q in organization %s", errNoSetting, key, m.Org)
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		return "", fmt.Errorf("%w %q: the database has no %s", errNoSetting, key, MPSettingsTable)
	case err != nil:
		return "", fmt.Errorf("reading setting %q: %w", key, err)
	}
	return v, nil
}

// WriteMPSetting creates MPSettingsTable if needed and sets org's key to value in the database
// behind dsn, as the role dsn connects with (in a drill, the MP's own role, so that the copy mpha
// makes of the database can read the table).
func WriteMPSetting(ctx context.Context, t testing.TB, dsn, org, key, value string) {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("writing setting %s: %v", key, err)
	}
	defer c.Close(context.Background())
	stmts := []struct {
		sql  string
		args []any
	}{
		{"CREATE TABLE IF NOT EXISTS " + MPSettingsTable + " (org text NOT NULL, key text NOT NULL, value text NOT NULL, " +
			"updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (org, key))", nil},
		{"INSERT INTO " + MPSettingsTable + " (org, key, value) VALUES ($1, $2, $3) " +
			"ON CONFLICT (org, key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()", []any{org, key, value}},
	}
	for _, s := range stmts {
		if _, err := c.Exec(ctx, s.sql, s.args...); err != nil {
			t.Fatalf("writing setting %s: %v", key, err)
		}
	}
}

// WriteSetting sets key to value in m's own database (WriteMPSetting).
func (m *MP) WriteSetting(ctx context.Context, t testing.TB, key, value string) {
	t.Helper()
	WriteMPSetting(ctx, t, *m.dsn.Load(), m.Org, key, value)
}
