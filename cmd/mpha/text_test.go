package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDisplay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		limit int
		want  string
	}{
		{"east", 0, "east"},
		{"east MP down since 10:02", 0, "east MP down since 10:02"},
		{"\x1b[31meast", 0, `"\x1b[31meast"`},
		{"gnp\u202eexe", 0, `"gnp\u202eexe"`},
		{"tab\there", 0, `"tab\there"`},
		{"bad \xff utf-8", 0, `"bad \xff utf-8"`},
		{"ünïcödé → ok", 0, "ünïcödé → ok"},
		{strings.Repeat("x", 10), 10, strings.Repeat("x", 10)},
		{strings.Repeat("x", 11), 10, strings.Repeat("x", 9) + "…"},
		{strings.Repeat("é", 11), 10, strings.Repeat("é", 9) + "…"},
		{"\x1b" + strings.Repeat("x", 20), 10, `"\x1bxxxx…`},
	}
	for _, tc := range tests {
		got := display(tc.in, tc.limit)
		if got != tc.want {
			t.Errorf("display(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
		if again := display(got, tc.limit); again != got {
			t.Errorf("display is not idempotent on %q: %q", got, again)
		}
	}
}

// printableJSON leaves the value as it was and no non-printable rune in the bytes.
func TestPrintableJSON(t *testing.T) {
	t.Parallel()
	in := map[string]string{"a": "\x1b[2J", "b": "gnp\u202eexe", "c": "del\x7f c1\u009b", "d": "<a@b> & ünï 😀", "e": "\U000e0001 tag"}
	b, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	out := printableJSON(b)
	if i := strings.IndexFunc(string(out), func(r rune) bool { return r != '\n' && display(string(r), 0) != string(r) }); i >= 0 {
		t.Errorf("a non-printable rune at %d: %q", i, out)
	}
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for k, v := range in {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	if !strings.Contains(string(out), `"gnp\u202eexe"`) || !strings.Contains(string(out), "😀") {
		t.Errorf("escapes: %s", out)
	}
}

// FuzzDisplay: whatever a commit holds, display prints only printable runes, at most limit of
// them, and leaves its own output alone; printableJSON keeps the value and prints only printable
// runes besides newlines.
func FuzzDisplay(f *testing.F) {
	f.Add("\x1b[31meast", 8)
	f.Add("gnp\u202eexe", 0)
	f.Add("bad \xff", 3)
	f.Fuzz(func(t *testing.T, s string, limit int) {
		limit %= 200
		got := display(s, limit)
		if strings.IndexFunc(got, func(r rune) bool { return !strconv.IsPrint(r) }) >= 0 || !utf8.ValidString(got) {
			t.Errorf("display(%q, %d) = %q: not printable", s, limit, got)
		}
		if limit > 0 && utf8.RuneCountInString(got) > limit {
			t.Errorf("display(%q, %d) = %q: longer than the limit", s, limit, got)
		}
		if display(got, limit) != got {
			t.Errorf("display(%q, %d) = %q: not idempotent", s, limit, got)
		}
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		out := printableJSON(b)
		if strings.IndexFunc(string(out), func(r rune) bool { return !strconv.IsPrint(r) }) >= 0 {
			t.Errorf("printableJSON(%q) = %q: not printable", b, out)
		}
		var back, want string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("printableJSON(%q) = %q: %v", b, out, err)
		}
		_ = json.Unmarshal(b, &want)
		if back != want {
			t.Errorf("printableJSON changed %q into %q", want, back)
		}
	})
}
