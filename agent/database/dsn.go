package database

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// DataStore is the MP's spec.dataStore.postgres (TSB values), as far as a DSN needs it.
type DataStore struct {
	// Address is host:port.
	Address string `json:"address"`
	// Name is the database (default tsb).
	Name    string `json:"name"`
	SSLMode string `json:"sslMode"`
}

// DSN builds a libpq URL from the postgres-credentials secret's data and the values' dataStore.
// A secret with a "dsn" key (mpha's own secret) is taken as it is.
func DSN(secret map[string][]byte, ds DataStore) (string, error) {
	if d := strings.TrimSpace(string(secret["dsn"])); d != "" {
		if _, err := pgconn.ParseConfig(d); err != nil {
			return "", errors.New("the secret's dsn does not parse as a libpq DSN") // the error would quote it
		}
		return d, nil
	}
	user := string(secret["username"])
	if user == "" {
		return "", errors.New(`the secret has neither "dsn" nor "username"`)
	}
	if ds.Address == "" {
		return "", errors.New("spec.dataStore.postgres.address is empty")
	}
	if _, _, err := net.SplitHostPort(ds.Address); err != nil {
		return "", fmt.Errorf("spec.dataStore.postgres.address %q: want host:port", ds.Address)
	}
	name := ds.Name
	if name == "" {
		name = "tsb"
	}
	u := url.URL{Scheme: "postgres", Host: ds.Address, Path: "/" + name, User: url.User(user)}
	if pw, ok := secret["password"]; ok {
		u.User = url.UserPassword(user, string(pw))
	}
	q := url.Values{}
	if ds.SSLMode != "" {
		// TSB spells libpq's modes with underscores.
		q.Set("sslmode", strings.ReplaceAll(ds.SSLMode, "_", "-"))
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// Describe names the server and database of dsn for evidence and logs: host:port/db, no user,
// no password.
func Describe(dsn string) string {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "(an unparsable DSN)"
	}
	return fmt.Sprintf("%s/%s", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)), cfg.Database)
}
