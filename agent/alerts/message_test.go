package alerts_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/agent/alerts"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeFixtures(t *testing.T) {
	t.Parallel()
	m, err := alerts.Decode(fixture(t, "firing.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := alerts.Alert{
		Status: "firing",
		Labels: map[string]string{"alertname": "TSBManagementPlaneDown", "cluster": "east", "job": "blackbox-tsb",
			"instance": "https://mp1.tsb.example.com:8443/v2/organizations/tetrate/status", "severity": "critical"},
		Annotations: map[string]string{"summary": "TSB management plane on east is down",
			"description": "The TSB API on mp1.tsb.example.com has failed its blackbox probe for 5 minutes."},
		StartsAt:     time.Date(2026, 11, 22, 9, 55, 12, 345e6, time.UTC),
		GeneratorURL: "http://prometheus.monitoring:9090/graph?g0.expr=probe_success%7Bjob%3D%22blackbox-tsb%22%7D+%3D%3D+0&g0.tab=1",
		Fingerprint:  "6d2b5c0c8f4b7a31",
	}
	if m.Version != "4" || m.Status != "firing" || m.Receiver != "mpha" || len(m.Alerts) != 1 ||
		m.ExternalURL != "http://alertmanager.monitoring:9093" || m.GroupLabels["alertname"] != "TSBManagementPlaneDown" {
		t.Errorf("message %+v", m)
	}
	if diff := cmp.Diff(want, m.Alerts[0]); diff != "" {
		t.Errorf("alert (-want +got):\n%s", diff)
	}
	if !m.Alerts[0].EndsAt.IsZero() {
		t.Errorf("endsAt %v of a firing alert", m.Alerts[0].EndsAt)
	}
	r, err := alerts.Decode(fixture(t, "resolved.json"))
	if err != nil || r.Status != "resolved" || r.Alerts[0].EndsAt.IsZero() {
		t.Errorf("resolved: %+v, %v", r, err)
	}
	g, err := alerts.Decode(fixture(t, "grouped.json"))
	if err != nil || len(g.Alerts) != 2 || g.Alerts[1].Name() != "TSBOAPDown" {
		t.Errorf("grouped: %+v, %v", g, err)
	}
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	firing := string(fixture(t, "firing.json"))
	tests := []struct {
		name    string
		payload string
		want    error
		detail  string
	}{
		{"truncated JSON", string(fixture(t, "malformed.json")), alerts.ErrMalformed, "ends early"},
		{"not JSON", "<html>", alerts.ErrMalformed, "invalid JSON at byte 1"},
		{"an array", "[]", alerts.ErrMalformed, "must not be a JSON array"},
		{"wrong version", strings.Replace(firing, `"version": "4"`, `"version": "3"`, 1), alerts.ErrMalformed, `version "3"`},
		{"unknown status", strings.Replace(firing, `"status": "firing",
  "alerts"`, `"status": "pending",
  "alerts"`, 1), alerts.ErrMalformed, "status"},
		{"unknown alert status", strings.Replace(firing, `"status": "firing",
      "labels"`, `"status": "silenced",
      "labels"`, 1), alerts.ErrMalformed, "alerts[0].status"},
		{"no alerts", `{"version":"4","status":"firing","alerts":[]}`, alerts.ErrMalformed, "no alerts"},
		{"label not a string", strings.Replace(firing, `"cluster": "east",`, `"cluster": 7,`, 1), alerts.ErrMalformed, "must not be a JSON number"},
		{"bad time", strings.Replace(firing, `"2026-11-22T09:55:12.345Z"`, `"yesterday"`, 1), alerts.ErrMalformed, ""},
		{"two objects", firing + firing, alerts.ErrMalformed, "data after"},
		{"oversized", `{"version":"4","receiver":"` + strings.Repeat("x", alerts.MaxPayload) + `"}`, alerts.ErrTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := alerts.Decode([]byte(tt.payload))
			if !errors.Is(err, tt.want) || !strings.Contains(errString(err), tt.detail) {
				t.Errorf("Decode: %v, want %v with %q", err, tt.want, tt.detail)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// FuzzDecode: Decode never panics, what it accepts is valid, and encoding it and decoding again
// gives the same message.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"firing.json", "resolved.json", "grouped.json", "malformed.json"} {
		f.Add(fixture(f, name))
	}
	f.Add([]byte(`{"version":"4","status":"firing","alerts":[{"status":"firing","labels":null}]}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := alerts.Decode(payload)
		if err != nil {
			if !errors.Is(err, alerts.ErrMalformed) && !errors.Is(err, alerts.ErrTooLarge) {
				t.Fatalf("an error of no known kind: %v", err)
			}
			return
		}
		if m.Version != alerts.Version || len(m.Alerts) == 0 {
			t.Fatalf("accepted an invalid message: %+v", m)
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("encoding an accepted message: %v", err)
		}
		again, err := alerts.Decode(b)
		if err != nil {
			t.Fatalf("decoding the encoded message: %v\n%s", err, bytes.TrimSpace(b))
		}
		if diff := cmp.Diff(m, again); diff != "" {
			t.Fatalf("decode(encode(m)) differs (-m +again):\n%s", diff)
		}
	})
}
