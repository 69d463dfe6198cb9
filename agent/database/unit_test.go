package database

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestDetect(t *testing.T) {
	t0 := time.Date(2026, 8, 1, 9, 0, 0, 0, time.UTC)
	primary := &Server{Name: "a:5432/tsb", SystemID: "7001", StartedAt: t0, Database: "tsb"}
	samePrimary := &Server{Name: "b:5432/tsb", SystemID: "7001", StartedAt: t0, Database: "tsb"}
	replica := &Server{Name: "r:5432/tsb", SystemID: "7001", StartedAt: t0.Add(time.Hour), Database: "tsb", InRecovery: true}
	other := &Server{Name: "o:5432/tsb", SystemID: "7002", StartedAt: t0.Add(time.Minute), Database: "tsb"}
	clone := &Server{Name: "c:5432/tsb", SystemID: "7001", StartedAt: t0.Add(2 * time.Hour), Database: "tsb"}
	foreign := &Server{Name: "f:5432/tsb", SystemID: "7002", StartedAt: t0, Database: "tsb", InRecovery: true}
	otherDB := &Server{Name: "a:5432/iam", SystemID: "7001", StartedAt: t0, Database: "iam"}
	tests := []struct {
		name            string
		active, standby *Server
		want            Topology
		err             string
	}{
		{"one server", primary, samePrimary, Shared, ""},
		{"streaming replica", primary, replica, Streaming, ""},
		{"two primaries", primary, other, Independent, ""},
		{"a promoted clone is another server", primary, clone, Independent, ""},
		{"replica of another server", primary, foreign, "", "replicates a server other than the active's"},
		{"one server, two databases", primary, otherDB, "", "different databases"},
		{"active unreachable, standby in recovery", nil, replica, Streaming, ""},
		{"active unreachable, standby primary", nil, other, Independent, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Detect(tc.active, tc.standby)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Detect = %s, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestMeasureLag(t *testing.T) {
	now := time.Date(2026, 8, 1, 9, 0, 0, 0, time.UTC)
	replayed := now.Add(-90 * time.Second)
	tests := []struct {
		name           string
		replay, active string
		replayedAt     *time.Time
		wantBytes      int64
		wantSeconds    float64
		err            bool
	}{
		{"caught up", "0/3000060", "0/3000060", &replayed, 0, 0, false},
		{"ahead of a stale heartbeat", "0/3000100", "0/3000060", &replayed, 0, 0, false},
		{"behind", "0/3000000", "0/3100000", &replayed, 0x100000, 90, false},
		{"across the 4 GiB boundary", "0/FFFFFF00", "1/00000100", &replayed, 0x200, 90, false},
		{"nothing replayed yet", "0/0", "0/100", nil, 0x100, -1, false},
		{"bad LSN", "0/0", "nonsense", nil, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := MeasureLag(&Server{LSN: tc.replay, ReplayedAt: tc.replayedAt, Now: now}, tc.active)
			if tc.err {
				if err == nil {
					t.Error("no error")
				}
				return
			}
			if err != nil || l.Bytes != tc.wantBytes || l.Seconds != tc.wantSeconds {
				t.Errorf("lag = %+v, %v; want %d bytes, %v s", l, err, tc.wantBytes, tc.wantSeconds)
			}
		})
	}
}

func TestDSN(t *testing.T) {
	creds := map[string][]byte{"username": []byte("tsb"), "password": []byte("p@ss/w:rd")}
	tests := []struct {
		name   string
		secret map[string][]byte
		ds     DataStore
		want   string
		err    string
	}{
		{"credentials and values", creds, DataStore{Address: "pg.example.com:5432", Name: "tsb", SSLMode: "verify_full"},
			"postgres://tsb:p%40ss%2Fw%3Ard@pg.example.com:5432/tsb?sslmode=verify-full", ""},
		{"default database", map[string][]byte{"username": []byte("tsb")}, DataStore{Address: "10.0.0.1:5432"}, "postgres://tsb@10.0.0.1:5432/tsb", ""},
		{"own dsn key", map[string][]byte{"dsn": []byte("host=db port=6432 user=tsb dbname=tsb")}, DataStore{}, "host=db port=6432 user=tsb dbname=tsb", ""},
		{"no user", map[string][]byte{"password": []byte("x")}, DataStore{Address: "db:5432"}, "", `neither "dsn" nor "username"`},
		{"no address", creds, DataStore{}, "", "address is empty"},
		{"address without port", creds, DataStore{Address: "db"}, "", "want host:port"},
		{"unparsable dsn", map[string][]byte{"dsn": []byte("postgres://tsb:secretpw@db:notaport/tsb")}, DataStore{}, "", "does not parse"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DSN(tc.secret, tc.ds)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "secretpw") {
					t.Errorf("err = %v, want %q without the password", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("DSN = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	// The password survives the URL escaping.
	dsn, _ := DSN(creds, DataStore{Address: "db:5432"})
	if cfg, err := pgconn.ParseConfig(dsn); err != nil || cfg.Password != "p@ss/w:rd" {
		t.Errorf("the DSN parses back to password %q, %v", cfg.Password, err)
	}
	if got := Describe("postgres://tsb:p%40ss@pg.example.com:5432/tsb?sslmode=require"); got != "pg.example.com:5432/tsb" {
		t.Errorf("Describe = %q", got)
	}
}
