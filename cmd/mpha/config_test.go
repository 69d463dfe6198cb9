package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// config check's refusals name the key and say what is wrong in plain words; a huge file is
// refused at once, naming the limit.
func TestConfigCheckErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const rest = "pair: tsb-mp\ngit: {url: https://g.example.com/f.git}\nnats: {url: nats://n:4222}\nforge: {mode: branch}\n"
	huge := write("huge.yaml", "cluster: east\n")
	if err := os.Truncate(huge, 50<<20); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{write("nocluster.yaml", rest), "nocluster.yaml: cluster: required"},
		{write("banana.yaml", "cluster: east\nheartbeatInterval: banana\n"+rest), `banana.yaml: decoding config: heartbeatInterval: invalid duration "banana"`},
		{write("type.yaml", "cluster: east\nhealth: {port: https}\n"+rest), "type.yaml: decoding config: health.port: want an integer (64 bits), got a string"},
		{huge, "huge.yaml: config is larger than the limit of 1048576 bytes (1 MiB)"},
	}
	for _, tc := range tests {
		start := time.Now()
		out, _, err := run(t, "config", "check", "--config", tc.path)
		if err == nil || !strings.HasSuffix(err.Error(), tc.want) || out != "" {
			t.Errorf("%s: got %v (output %q), want an error ending %q", filepath.Base(tc.path), err, out, tc.want)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: %s to refuse", filepath.Base(tc.path), d)
		}
	}
}
