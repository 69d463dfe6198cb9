package redact_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/mpha-dev/mpha/internal/redact"
)

func TestString(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{`unable to clone 'https://bot:ghp_S3cret@git.example.com/fleet.git': EOF`, `unable to clone 'https://redacted@git.example.com/fleet.git': EOF`},
		{"nats://user:pw@nats:4222 refused", "nats://redacted@nats:4222 refused"},
		{"GET https://api.example.com/x?token=abc123&page=2", "GET https://api.example.com/x?token=redacted&page=2"},
		{"ssh://git@github.com/o/r.git", "ssh://redacted@github.com/o/r.git"},
		{"no url here: user@example.com", "no url here: user@example.com"},
	}
	for _, tc := range tests {
		if got := redact.String(tc.in); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestErrorKeepsTheChain(t *testing.T) {
	t.Parallel()
	err := redact.Error(fmt.Errorf("push https://u:hunter2@h/r.git: %w", io.ErrUnexpectedEOF))
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("not redacted: %v", err)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Error("errors.Is lost the cause")
	}
	if redact.Error(nil) != nil {
		t.Error("Error(nil) != nil")
	}
}
