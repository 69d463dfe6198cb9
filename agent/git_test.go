package agent_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// Git.NewWriter, the one constructor of the Git writer: a signing key that cannot sign is refused
// (never an unsigned writer), naming the setting and not the key; credentials over plain http are
// gitrepo's to refuse, unless allowed. (That the commits are signed: cmd/mpha's
// TestSecretsExportOnce, against a real Git server.)
func TestGitNewWriter(t *testing.T) {
	cfg, err := agent.Parse([]byte(with("git", "git: {url: https://git.example.com/fleet.git, branch: live, signingKeySecret: mpha-git-signing}")))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := testrig.OpenPGPKeyPair(t, "mpha agent", "mpha-east@mpha.invalid")
	auth := map[string][]byte{"username": []byte("mpha"), "password": []byte("git-token-4c1d")}
	const bad = "not-a-key-7e3f9a"
	overHTTP := agent.Git{URL: "http://git.example.com/fleet.git", Branch: "main"}
	for _, tc := range []struct {
		name  string
		git   agent.Git
		s     agent.GitSecrets
		allow bool
		check func(error) bool
	}{
		{"signing key", cfg.Git, agent.GitSecrets{Auth: auth, SigningKey: map[string][]byte{"key": key}}, false, noError},
		{"no signing key", cfg.Git, agent.GitSecrets{Auth: auth}, false, noError},
		{"a key that does not parse", cfg.Git, agent.GitSecrets{SigningKey: map[string][]byte{"key": []byte(bad)}}, false, func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "git.signingKeySecret mpha-git-signing") && !strings.Contains(err.Error(), bad)
		}},
		{"a signing key Secret without a key", cfg.Git, agent.GitSecrets{SigningKey: map[string][]byte{}}, false, func(err error) bool { return err != nil }},
		{"credentials over http", overHTTP, agent.GitSecrets{Auth: auth}, false, func(err error) bool {
			return errors.Is(err, gitrepo.ErrCredentialsOverHTTP)
		}},
		{"credentials over http, allowed", overHTTP, agent.GitSecrets{Auth: auth}, true, noError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.git.NewWriter(tc.s, gitrepo.Options{Author: agent.GitAuthor(cfg.Cluster), AllowHTTPCredentials: tc.allow}); !tc.check(err) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

func noError(err error) bool { return err == nil }
