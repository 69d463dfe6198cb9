// Package redact removes credentials from text that may hold a URL (errors from Git, HTTP and
// NATS clients) before it is logged, published or returned to an operator. It imports nothing of
// mpha.
package redact

import (
	"regexp"
)

// userinfo matches the user:password@ part of a URL, and query values that carry tokens.
var (
	userinfo = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@`)
	query    = regexp.MustCompile(`(?i)([?&](?:access_token|token|private_token|password|sig|signature)=)[^&\s]+`)
)

// String replaces URL credentials and token query values in s with "redacted".
func String(s string) string {
	s = userinfo.ReplaceAllString(s, "${1}redacted@")
	return query.ReplaceAllString(s, "${1}redacted")
}

// Error returns err with its text redacted; errors.Is and errors.As still see the original.
func Error(err error) error {
	if err == nil {
		return nil
	}
	msg := String(err.Error())
	if msg == err.Error() {
		return err
	}
	return &redacted{msg: msg, err: err}
}

type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }
