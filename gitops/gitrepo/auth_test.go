package gitrepo_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fluxcd/pkg/git"

	"github.com/mpha-dev/mpha/gitops/gitrepo"
)

// New refuses credentials over plain http unless they are allowed, wherever they come from (the
// Secret's keys, the URL), with one message that names the flag and never the credential.
func TestNewRefusesCredentialsOverHTTP(t *testing.T) {
	const password = "s3cret-over-http"
	for _, tc := range []struct {
		name    string
		url     string
		data    map[string][]byte
		allow   bool
		refused bool
	}{
		{name: "basic auth over http", url: "http://git.example.com/org/fleet.git",
			data: map[string][]byte{"username": []byte("mpha"), "password": []byte(password)}, refused: true},
		{name: "token over http", url: "http://git.example.com/org/fleet.git",
			data: map[string][]byte{"bearerToken": []byte(password)}, refused: true},
		{name: "user in an http URL", url: "http://mpha@git.example.com/org/fleet.git", refused: true},
		{name: "upper-case scheme", url: "HTTP://git.example.com/org/fleet.git",
			data: map[string][]byte{"username": []byte("mpha"), "password": []byte(password)}, refused: true},
		{name: "allowed over http", url: "http://git.example.com/org/fleet.git",
			data: map[string][]byte{"username": []byte("mpha"), "password": []byte(password)}, allow: true},
		{name: "anonymous over http", url: "http://git.example.com/org/fleet.git"},
		{name: "only a CA over http", url: "http://git.example.com/org/fleet.git", data: map[string][]byte{"ca.crt": []byte("ca")}},
		{name: "basic auth over https", url: "https://git.example.com/org/fleet.git",
			data: map[string][]byte{"username": []byte("mpha"), "password": []byte(password)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			auth, err := gitrepo.NewAuth(tc.url, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			_, err = gitrepo.New(gitrepo.Options{URL: tc.url, Auth: auth, AllowHTTPCredentials: tc.allow,
				Author: git.Signature{Name: "mpha", Email: "mpha@example.invalid"}})
			if got := errors.Is(err, gitrepo.ErrCredentialsOverHTTP); got != tc.refused {
				t.Fatalf("refused = %v, want %v (err = %v)", got, tc.refused, err)
			}
			if !tc.refused && err != nil {
				t.Fatal(err)
			}
			if err != nil && (!strings.Contains(err.Error(), "--insecure-http-credentials") || strings.Contains(err.Error(), password)) {
				t.Errorf("the message should name the flag and not the credential: %v", err)
			}
		})
	}
	// Without Auth, New derives it from the URL: a user in it is refused as well.
	if _, err := gitrepo.New(gitrepo.Options{URL: "http://mpha@git.example.com/org/fleet.git",
		Author: git.Signature{Name: "mpha", Email: "mpha@example.invalid"}}); !errors.Is(err, gitrepo.ErrCredentialsOverHTTP) {
		t.Errorf("user in the URL, no Auth: err = %v", err)
	}
}
