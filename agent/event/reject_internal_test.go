package event

import (
	"strings"
	"testing"
)

func TestScrub(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"east", "east"},
		{"prod-eu-west-1-cluster-a2", "prod-eu-west-1-cluster-a2"},
		{"dev.mpha.failover.requested.v1", "dev.mpha.failover.requested.v1"},
		{"signing-key-kid, jwks-kid, secrets-in-sync", "signing-key-kid, jwks-kid, secrets-in-sync"},
		{"abcdefghijklmnopqrstuvwxyzabcdef", "abcdefghijklmnopqrstuvwxyzabcdef"}, // letters only: a word, not a key
		{"key MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE= here", "key <60 bytes withheld> here"},
		{"ghp_abc", "<7 bytes withheld>"},
		{"glpat-xxxxxxxxxxxxxxxxxxxx", "<26 bytes withheld>"},
		{"Password: hunter2", "<17 bytes withheld>"},
		{"AKIAIOSFODNN7EXAMPLE", "<20 bytes withheld>"},
		{"nats://u:pw@nats:4222", "nats://redacted@nats:4222"},
		{"a\nb\x1b[0m", `a\nb\x1b[0m`},
		{"\xff\xfe", "\uFFFD"},
	}
	for _, tc := range tests {
		if got := scrub(tc.in, 100); got != tc.want {
			t.Errorf("scrub(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if again := scrub(scrub(tc.in, 100), 100); again != scrub(tc.in, 100) {
			t.Errorf("scrub(scrub(%q)) = %q: not idempotent", tc.in, again)
		}
	}
	if got := scrub(strings.Repeat("é", 100), 11); got != "éééé…" {
		t.Errorf("truncating on a rune boundary: %q", got)
	}
	if got := quote(strings.Repeat("w", 100)); len(got) > maxQuote+2 || !strings.HasSuffix(got, `…"`) {
		t.Errorf("quote of 100 bytes: %q", got)
	}
}
