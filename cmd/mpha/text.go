package main

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// Limits of the text (table) outputs, in runes; -o json keeps every value whole.
const (
	maxCell = 48 // one column of a table
	maxLine = 96 // a cell that spans the rest of a row (an audit entry's subject)
)

// display makes a value from outside (a commit, a heartbeat) safe to print on a terminal: a value
// holding a control or other non-printable character (an ANSI escape, a bidi override, invalid
// UTF-8) is shown Go-quoted as strconv.Quote writes it, so the terminal gets "\x1b" and never the
// escape itself; then, when limit > 0, it is cut after limit runes with "…". A printable value is
// shown as is, so display is idempotent.
func display(s string, limit int) string {
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !strconv.IsPrint(r) }) >= 0 {
		s = strconv.Quote(s)
	}
	if limit <= 0 || utf8.RuneCountInString(s) <= limit {
		return s
	}
	r := []rune(s)
	return string(r[:limit-1]) + "…"
}

// printableJSON rewrites encoded JSON so that every non-printable rune encoding/json leaves
// raw (DEL, C1 controls, bidi overrides such as U+202E, line and paragraph separators are
// already escaped) becomes a \uXXXX escape: the same JSON value, safe on a terminal. Outside
// strings JSON has only printable characters and the indentation's newlines, which stay.
func printableJSON(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == '\n' || (r != utf8.RuneError || n > 1) && strconv.IsPrint(r) {
			out = append(out, b[i:i+n]...)
			i += n
			continue
		}
		for _, u := range utf16.Encode([]rune{r}) {
			out = fmt.Appendf(out, `\u%04x`, u)
		}
		i += n
	}
	return out
}
