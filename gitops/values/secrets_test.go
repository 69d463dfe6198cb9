package values_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/gitops/values"
)

// Every planted credential's value holds "s3cr3t": the tests scan the rendered bytes for it
// rather than trust the list of stripped paths.
const planted = "s3cr3t"

// A PEM private key (a fixture: it is cut short, no key at all).
const pemKey = "-----BEGIN RSA PRIVATE KEY-----\nMIIEs3cr3tAAKCAQEA\n-----END RSA PRIVATE KEY-----\n"

func TestRenderStripsCredentials(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		doc  string
		opts values.Options
		// stripped are the paths reported; keep are substrings the output must still hold.
		stripped []string
		keep     []string
	}{
		{
			name:     "the data store's password",
			doc:      "spec: {dataStore: {postgres: {address: pg:5432, name: tsb, password: s3cr3t-pg}}}",
			stripped: []string{"spec.dataStore.postgres.password"},
			keep:     []string{"address: pg:5432"},
		},
		{
			name:     "components' passwords",
			doc:      "spec: {components: {apiServer: {password: s3cr3t-a}, iamServer: {adminPassword: s3cr3t-b, port: 8000}}}",
			stripped: []string{"spec.components.apiServer.password", "spec.components.iamServer.adminPassword"},
			keep:     []string{"port: 8000"},
		},
		{
			name:     "an OIDC client secret",
			doc:      "spec: {identityProvider: {oidc: {clientId: mp, clientSecret: s3cr3t-oidc, redirectUri: https://mp/cb}}}",
			stripped: []string{"spec.identityProvider.oidc.clientSecret"},
			keep:     []string{"clientId: mp", "redirectUri: https://mp/cb"},
		},
		{
			name: "the operator's env",
			doc: `operator: {deployment: {env: [
  {name: DB_PASSWORD, value: s3cr3t-env},
  {name: LOG_LEVEL, value: debug},
  {name: GITHUB_TOKEN, value: s3cr3t-gh},
  {name: AWS_SECRET_ACCESS_KEY, value: s3cr3t-aws},
  {name: TOKEN_TTL, value: 1h},
  {name: PASSWORD_FILE, value: /etc/pw},
  {name: PG_PASSWORD, valueFrom: {secretKeyRef: {name: pg, key: password}}}]}}`,
			stripped: []string{"operator.deployment.env[0].value", "operator.deployment.env[2].value", "operator.deployment.env[3].value"},
			keep: []string{"name: DB_PASSWORD", "value: debug", "value: 1h", "value: /etc/pw",
				"secretKeyRef:\n", "key: password"},
		},
		{
			name: "keys naming a credential, however spelled",
			doc: `spec: {x: {privateKey: s3cr3t-1, private_key: s3cr3t-2, apiKey: s3cr3t-3, API_KEY: s3cr3t-4, token: s3cr3t-5,
  accessToken: s3cr3t-6, credentials: s3cr3t-7, keyMaterial: s3cr3t-8, tls.key: s3cr3t-9, sshKeyPem: s3cr3t-10,
  passwd: s3cr3t-11, dbPass: s3cr3t-12, pin: 1234, webhookSecret: 987654, tokens: [s3cr3t-13, s3cr3t-14]}}`,
			stripped: []string{"spec.x.API_KEY", "spec.x.accessToken", "spec.x.apiKey", "spec.x.credentials", "spec.x.dbPass",
				"spec.x.keyMaterial", "spec.x.passwd", "spec.x.privateKey", "spec.x.private_key", "spec.x.sshKeyPem",
				"spec.x.tls.key", "spec.x.token", "spec.x.tokens", "spec.x.webhookSecret"},
			keep: []string{"pin: 1234"},
		},
		{
			// The keys TSB's chart documents under secrets (tsb-mp-ha.md §3), found elsewhere.
			name: "the managementplane chart's secret keys outside secrets",
			doc: `spec: {copy: {
  tsb: {adminPassword: s3cr3t-admin, cert: CERT-tsb, key: "` + strings.ReplaceAll(pemKey, "\n", `\n`) + `"},
  postgres: {username: tsb, password: s3cr3t-pg, cacert: CA-pg, clientcert: CERT-pg, clientkey: s3cr3t-pgkey},
  elasticsearch: {username: elastic, password: s3cr3t-es, cacert: CA-es},
  ldap: {binddn: "cn=admin,dc=tetrate,dc=io", bindpassword: s3cr3t-ldap, cacert: CA-ldap},
  oidc: {clientSecret: s3cr3t-oidc, deviceClientSecret: s3cr3t-device},
  azure: {clientSecret: s3cr3t-azure},
  xcp: {autoGenerateCerts: true, rootca: CA-xcp, rootcakey: s3cr3t-root, central: {additionalDNSNames: [a.example.com]}}}}
operator: {pullSecret: s3cr3t-pull}`,
			stripped: []string{"operator.pullSecret", "spec.copy.azure.clientSecret", "spec.copy.elasticsearch.password", "spec.copy.ldap.bindpassword",
				"spec.copy.oidc.clientSecret", "spec.copy.oidc.deviceClientSecret", "spec.copy.postgres.clientkey",
				"spec.copy.postgres.password", "spec.copy.tsb.adminPassword", "spec.copy.tsb.key", "spec.copy.xcp.rootcakey"},
			keep: []string{"username: tsb", "binddn: cn=admin,dc=tetrate,dc=io", "cacert: CA-pg", "cert: CERT-tsb", "rootca: CA-xcp",
				"autoGenerateCerts: true", "a.example.com"},
		},
		{
			// Kubernetes names references this way (a Secret volume, a projected token): a map
			// under a credential key is looked into. Its encoding-named children are credentials,
			// and every scalar in a plural one (a map of names to secrets).
			name: "a map under a credential key",
			doc: `spec: {x: {secret: {secretName: tsb-certs, defaultMode: 420, items: [{key: tls.crt, path: tls.crt}]},
  serviceAccountToken: {audience: mp, expirationSeconds: 3600}, token: {value: s3cr3t-v, ttl: 1h},
  privateKey: {pem: s3cr3t-pem, format: pkcs8}, credentials: {username: s3cr3t-u, password: s3cr3t-c},
  secrets: {myapp: s3cr3t-app, nested: {user: u}, enabled: true},
  serviceAccount: {secrets: [{name: sa-token}]}}}`,
			stripped: []string{"spec.x.credentials.password", "spec.x.credentials.username", "spec.x.privateKey.pem",
				"spec.x.secrets.myapp", "spec.x.token.value"},
			keep: []string{"secretName: tsb-certs", "defaultMode: 420", "key: tls.crt", "audience: mp", "expirationSeconds: 3600",
				"ttl: 1h", "format: pkcs8", "user: u", "enabled: true", "name: sa-token"},
		},
		{
			name: "credentials by their look, whatever the key",
			doc: `spec: {x: {caBundle: "` + strings.ReplaceAll(pemKey, "\n", `\n`) + `", dsn: "postgres://tsb:s3cr3t-dsn@pg:5432/tsb",
  list: ["https://u:s3cr3t-url@h/"], plain: "https://h.example.com/x", cert: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}`,
			stripped: []string{"spec.x.caBundle", "spec.x.dsn", "spec.x.list[0]"},
			keep:     []string{"plain: https://h.example.com/x", "BEGIN CERTIFICATE"},
		},
		{
			name: "keys that only look like credentials",
			doc: `spec:
  imagePullSecrets: [{name: regcred}]
  tokenIssuer: {jwt: {signingKeysSecret: tsb-certs, expiration: 1h, tokenPruneInterval: 1h,
    issuers: [{name: first, algorithm: RS256, signingKey: tls.key}]}}
  components: {apiServer: {kubeSpec: {deployment: {
    env: [{name: SECRET_NAME, value: pg-credentials}],
    tolerations: [{key: dedicated, operator: Equal, value: tsb}],
    volumes: [{name: certs, secret: {secretName: tsb-certs}}],
    envFrom: [{secretRef: {name: pg}}]}}}}
  x: {tokenTTL: 1h, tokenExpiration: 2h, passwordFile: /etc/pw, apiKeyID: k1, caSecretName: ca,
    automountServiceAccountToken: false, password: "", existingSecret: es-creds}
operator: {serviceAccount: {imagePullSecrets: [regcred]}}`,
			keep: []string{"name: regcred", "signingKeysSecret: tsb-certs", "signingKey: tls.key", "tokenPruneInterval: 1h",
				"value: pg-credentials", "key: dedicated", "secretName: tsb-certs", "secretRef:", "tokenTTL: 1h", "tokenExpiration: 2h",
				"passwordFile: /etc/pw", "apiKeyID: k1", "caSecretName: ca", "automountServiceAccountToken: false", `password: ""`,
				"existingSecret: es-creds", "- regcred"},
		},
		{
			name: "the configured allow-list",
			doc:  "spec: {x: {sessionToken: not-a-s3cr3t-really, oauthClientSecret: s3cr3t-o}, components: {a: {kubeSpec: {deployment: {env: [{name: MY_TOKEN, value: public-value}]}}}}}",
			opts: values.Options{NotSecret: []string{"session*", "spec.components.*.kubeSpec.deployment.env[].value"}},
			// sessionToken is kept: the test's scan below skips its value, which holds the marker.
			stripped: []string{"spec.x.oauthClientSecret"},
			keep:     []string{"sessionToken: not-a-s3cr3t-really", "value: public-value"},
		},
		{
			name:     "an override carrying a credential",
			doc:      "operator: {deployment: {replicaCount: 1}}",
			opts:     values.Options{Overrides: values.Overrides{"operator.deployment.env": []any{map[string]any{"name": "DB_PASSWORD", "value": "s3cr3t-set"}}}},
			stripped: []string{"operator.deployment.env[0].value"},
			keep:     []string{"replicaCount: 1"},
		},
		{
			name:     "secrets itself is dropped, not reported",
			doc:      "secrets: {tsb: {adminPassword: s3cr3t-x}}\nimage: {registry: r}",
			stripped: nil,
			keep:     []string{"registry: r"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src, err := values.ParseFile([]byte(tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			r, err := values.Render(src, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.stripped, r.Stripped); diff != "" {
				t.Errorf("stripped paths (-want +got):\n%s", diff)
			}
			out, err := values.Marshal(r.Values)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(out), "\n") {
				if strings.Contains(line, planted) && !strings.Contains(line, "not-a-s3cr3t-really") {
					t.Errorf("a planted credential reached the output: %q", line)
				}
			}
			if bytes.Contains(out, []byte("PRIVATE KEY")) {
				t.Error("a private key reached the output")
			}
			for _, k := range tc.keep {
				if !bytes.Contains(out, []byte(k)) {
					t.Errorf("output lost %q:\n%s", k, out)
				}
			}
			for _, p := range r.Stripped {
				if strings.Contains(p, planted) {
					t.Errorf("a stripped path holds a value: %q", p)
				}
			}
			// In refuse mode the same input is refused, naming the same paths and no value.
			_, err = values.Render(src, values.Options{Overrides: tc.opts.Overrides, NotSecret: tc.opts.NotSecret, SecretValues: values.SecretsRefuse})
			var se *values.SecretsError
			switch {
			case len(tc.stripped) == 0 && err != nil:
				t.Errorf("refuse mode refused values with no credential: %v", err)
			case len(tc.stripped) > 0 && !errors.As(err, &se):
				t.Errorf("refuse mode: got %v, want a SecretsError", err)
			case len(tc.stripped) > 0:
				if diff := cmp.Diff(tc.stripped, se.Paths); diff != "" {
					t.Errorf("refused paths (-want +got):\n%s", diff)
				}
				if strings.Contains(err.Error(), planted) || !strings.Contains(err.Error(), tc.stripped[0]) {
					t.Errorf("refusal %q must name the paths and no value", err)
				}
			}
		})
	}
}

// The input is never modified, even when credentials are stripped from the output.
func TestRenderStripLeavesItsInputAlone(t *testing.T) {
	t.Parallel()
	doc := "operator: {deployment: {env: [{name: DB_PASSWORD, value: s3cr3t}]}}\nspec: {dataStore: {postgres: {password: s3cr3t}}}\n"
	src, err := values.ParseFile([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := values.Marshal(src)
	if _, err := values.Render(src, values.Options{}); err != nil {
		t.Fatal(err)
	}
	if after, _ := values.Marshal(src); !bytes.Equal(before, after) {
		t.Errorf("Render modified its input:\n%s", after)
	}
}

func TestRenderOptionsAreValidated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		opts values.Options
		want string
	}{
		{values.Options{SecretValues: "keep"}, `secret values "keep": want one of [strip refuse]`},
		{values.Options{NotSecret: []string{"spec..x"}}, `"spec..x": empty path segment`},
		{values.Options{NotSecret: []string{""}}, `"": empty path segment`},
	}
	for _, tc := range tests {
		_, err := values.Render(map[string]any{}, tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.opts, err, tc.want)
		}
	}
	if err := values.ValidateNotSecret(values.BuiltinNotSecret()); err != nil {
		t.Errorf("the built-in allow-list: %v", err)
	}
}
