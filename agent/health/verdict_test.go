package health_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/health"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	healthy, sick := &event.MPHealth{Healthy: true}, &event.MPHealth{Healthy: false}
	tests := []struct {
		name      string
		reachable bool
		peer      health.Peer
		want      health.Verdict
	}{
		{"probes pass", true, health.Peer{}, health.VerdictHealthy},
		{"probes pass, peer says sick", true, health.Peer{Seen: true, Fresh: true, MP: sick}, health.VerdictHealthy},
		{"probes fail, fresh healthy heartbeat", false, health.Peer{Seen: true, Fresh: true, MP: healthy}, health.VerdictUnreachable},
		{"probes fail, fresh sick heartbeat", false, health.Peer{Seen: true, Fresh: true, MP: sick}, health.VerdictDown},
		{"probes fail, heartbeat without MP health", false, health.Peer{Seen: true, Fresh: true}, health.VerdictDown},
		{"probes fail, stale healthy heartbeat", false, health.Peer{Seen: true, Age: time.Hour, MP: healthy}, health.VerdictDown},
		{"probes fail, no heartbeat", false, health.Peer{Problem: "no heartbeat from east"}, health.VerdictDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := health.Decide(tt.reachable, tt.peer); got != tt.want {
				t.Errorf("Decide = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestOneLine(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"a\nb\t c\x00d", "a b c d"},
		{"  padded  ", "padded"},
		{strings.Repeat("é", 200), strings.Repeat("é", 126) + "…"},
	}
	for _, tt := range tests {
		got := health.OneLine(tt.in, health.MaxText)
		if got != tt.want {
			t.Errorf("OneLine(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if len(got) > health.MaxText || !utf8.ValidString(got) {
			t.Errorf("OneLine(%q) = %q: %d bytes or invalid UTF-8", tt.in, got, len(got))
		}
	}
}

// Credentials never print their values, however they are formatted or logged.
func TestCredentialsNeverPrinted(t *testing.T) {
	t.Parallel()
	opts := health.Options{Cluster: "west", Credentials: health.Credentials{Username: "admin", Password: "pw-s3cret", Token: "tok-s3cret"}}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("options", "credentials", opts.Credentials, "opts", opts)
	for _, text := range []string{fmt.Sprintf("%v %+v %#v %s", opts, opts, opts, opts.Credentials), logs.String()} {
		if strings.Contains(text, "s3cret") {
			t.Errorf("a credential is printed: %s", text)
		}
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	t.Parallel()
	good := health.Options{Cluster: "west", Pair: "tsb-mp", Organization: "tetrate"}
	tests := []struct {
		name   string
		edit   func(*health.Options)
		expect string
	}{
		{"no organization", func(o *health.Options) { o.Organization = "" }, "organization"},
		{"bad cluster", func(o *health.Options) { o.Cluster = "West_1" }, "cluster"},
		{"bad pair", func(o *health.Options) { o.Pair = "" }, "pair"},
		{"two kinds of credentials", func(o *health.Options) {
			o.Credentials = health.Credentials{Username: "u", Password: "p", Token: "t"}
		}, "not both"},
		{"half basic auth", func(o *health.Options) { o.Credentials = health.Credentials{Username: "u"} }, "both a username and a password"},
		{"relative URL", func(o *health.Options) { o.URLs = []string{"/status"} }, "urls[0]"},
		{"probe without path", func(o *health.Options) { o.Probes = []health.Probe{{Name: "x"}} }, "probes[0]"},
		{"bad CA bundle", func(o *health.Options) { o.CABundle = []byte("not PEM") }, "CA bundle"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := good
			tt.edit(&o)
			_, err := health.New(nopPublisher{}, staticPair{}, nil, o)
			if err == nil || !strings.Contains(err.Error(), tt.expect) {
				t.Errorf("New: %v, want an error about %q", err, tt.expect)
			}
		})
	}
}
