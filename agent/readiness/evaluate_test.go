package readiness_test

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/agent/readiness"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/seal/sealtest"
)

const floating = "active.tsb.example.com"

var key = bytes.Repeat([]byte("k"), 32)

// fixture is a pair whose secrets match: the standby holds what the active exported.
type fixture struct {
	leaks        *sealtest.Leaks
	ca, otherCA  *sealtest.CA
	secrets      []*corev1.Secret
	activeValues map[string]any
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{leaks: &sealtest.Leaks{}, ca: sealtest.NewCA(t, "shared root"), otherCA: sealtest.NewCA(t, "west's own root")}
	f.secrets = sealtest.Site{Namespace: "tsb", SigningKid: "sig-1", JWKSKid: "jwks-1", CA: f.ca,
		DNSNames: []string{"mp1.tsb.example.com", floating}}.Secrets(t, f.leaks)
	for _, s := range f.secrets {
		s.Annotations = map[string]string{seal.ManagedAnnotation: "true"} // sealed-secrets may replace them
	}
	f.activeValues = map[string]any{
		"image":   map[string]any{"registry": "registry.example.com"},
		"secrets": map[string]any{"tsb": map[string]any{"adminPassword": "not-for-the-standby"}},
		"spec":    map[string]any{"hub": "registry.example.com/tsb", "organization": "tetrate"},
	}
	return f
}

// site turns secrets into a Site, after edit changes a copy of them.
func (f *fixture) site(t *testing.T, cluster string, edit func(map[string]*corev1.Secret)) readiness.Site {
	t.Helper()
	byName := map[string]*corev1.Secret{}
	for _, s := range f.secrets {
		c := s.DeepCopy()
		byName[c.Name] = c
	}
	if edit != nil {
		edit(byName)
	}
	site := readiness.Site{Cluster: cluster, Secrets: map[string]seal.Facts{}, Release: "tsb/mp revision 1"}
	for _, n := range names() {
		s, ok := byName[n]
		if !ok {
			site.Secrets[n] = seal.Facts{}
			continue
		}
		facts, err := seal.SecretFacts(key, s)
		if err != nil {
			t.Fatal(err)
		}
		site.Secrets[n] = facts
	}
	return site
}

func names() []string {
	return []string{"iam-signing-key", "tsb-iam-jwks", "postgres-credentials", "tsb-certs", "xcp-central-cert"}
}

func (f *fixture) input(t *testing.T, editStandby func(map[string]*corev1.Secret)) readiness.Input {
	t.Helper()
	active := f.site(t, "east", nil)
	active.Values = f.activeValues
	standby := f.site(t, "west", editStandby)
	rendered := map[string]any{"image": f.activeValues["image"], "spec": f.activeValues["spec"]}
	standby.Values = map[string]any{"image": f.activeValues["image"], "spec": f.activeValues["spec"],
		"secrets": map[string]any{"tsb": map[string]any{"adminPassword": "hand-installed"}}}
	return readiness.Input{Active: active, Standby: standby, FloatingFQDN: floating, Rendered: rendered, Names: names()}
}

func reissue(f *fixture, t *testing.T, ca *sealtest.CA, dns ...string) func(map[string]*corev1.Secret) {
	return func(m map[string]*corev1.Secret) {
		for _, n := range []string{"tsb-certs", "xcp-central-cert"} {
			crt, k := ca.Leaf(t, dns...)
			f.leaks.Add(k)
			m[n].Data["tls.crt"], m[n].Data["tls.key"], m[n].Data["ca.crt"] = crt, k, ca.PEM
		}
	}
}

func TestEvaluate(t *testing.T) {
	f := newFixture(t)
	allPass := map[string]readiness.Status{}
	for _, c := range readiness.Checks() {
		allPass[c] = readiness.Pass
	}
	with := func(overrides map[string]readiness.Status) map[string]readiness.Status {
		m := maps.Clone(allPass)
		maps.Copy(m, overrides)
		return m
	}
	tests := []struct {
		name string
		in   func(t *testing.T) readiness.Input
		want map[string]readiness.Status
		// evidence holds, per check, substrings its evidence must contain.
		evidence map[string][]string
	}{
		{
			name: "everything matches",
			in:   func(t *testing.T) readiness.Input { return f.input(t, nil) },
			want: allPass,
			evidence: map[string][]string{
				readiness.SigningKeyKid: {"kid sig-1 on both east and west"},
				readiness.JWKSKid:       {"kid jwks-1 on both"},
				readiness.SecretsInSync: {"5 secret(s) equal"},
				readiness.RootCA:        {"one CA (sha256 " + f.ca.Fingerprint()[:16]},
				readiness.ValuesDrift:   {"has the values rendered from east (active)"},
			},
		},
		{
			name: "signing key kid differs",
			in: func(t *testing.T) readiness.Input {
				return f.input(t, func(m map[string]*corev1.Secret) { m["iam-signing-key"].Data["kid"] = []byte("sig-2") })
			},
			want:     with(map[string]readiness.Status{readiness.SigningKeyKid: readiness.Fail, readiness.SecretsInSync: readiness.Fail}),
			evidence: map[string][]string{readiness.SigningKeyKid: {"east (active) has sig-1", "west (standby) has sig-2"}, readiness.SecretsInSync: {"data differs (keyed digests) for iam-signing-key"}},
		},
		{
			name: "signing key missing on the standby",
			in: func(t *testing.T) readiness.Input {
				return f.input(t, func(m map[string]*corev1.Secret) { delete(m, "iam-signing-key") })
			},
			want:     with(map[string]readiness.Status{readiness.SigningKeyKid: readiness.Fail, readiness.SecretsInSync: readiness.Fail}),
			evidence: map[string][]string{readiness.SigningKeyKid: {"iam-signing-key is missing on west (standby)"}, readiness.SecretsInSync: {"missing on west (standby): iam-signing-key"}},
		},
		{
			name: "signing key without a kid",
			in: func(t *testing.T) readiness.Input {
				return f.input(t, func(m map[string]*corev1.Secret) { delete(m["iam-signing-key"].Data, "kid") })
			},
			want:     with(map[string]readiness.Status{readiness.SigningKeyKid: readiness.Fail, readiness.SecretsInSync: readiness.Fail}),
			evidence: map[string][]string{readiness.SigningKeyKid: {"iam-signing-key on west (standby) has no kid"}},
		},
		{
			name: "JWKS kids differ",
			in: func(t *testing.T) readiness.Input {
				return f.input(t, func(m map[string]*corev1.Secret) {
					m["tsb-iam-jwks"].Data["jwks.json"] = []byte(`{"keys":[{"kid":"jwks-1"},{"kid":"jwks-0"}]}`)
				})
			},
			want:     with(map[string]readiness.Status{readiness.JWKSKid: readiness.Fail, readiness.SecretsInSync: readiness.Fail}),
			evidence: map[string][]string{readiness.JWKSKid: {"east (active) has jwks-1", "west (standby) has jwks-0,jwks-1"}},
		},
		{
			name: "the standby's certificates come from another CA",
			in: func(t *testing.T) readiness.Input {
				return f.input(t, reissue(f, t, f.otherCA, "mp2.tsb.example.com", floating))
			},
			want: with(map[string]readiness.Status{readiness.RootCA: readiness.Fail, readiness.SecretsInSync: readiness.Fail}),
			evidence: map[string][]string{readiness.RootCA: {"different root CAs", f.ca.Fingerprint()[:16], f.otherCA.Fingerprint()[:16],
				"tsb-certs on west (standby)"}},
		},
		{
			name: "tsb-certs and xcp-central-cert from different CAs on one site",
			in: func(t *testing.T) readiness.Input {
				return f.input(t, func(m map[string]*corev1.Secret) {
					crt, k := f.otherCA.Leaf(t, floating)
					f.leaks.Add(k)
					m["xcp-central-cert"].Data = map[string][]byte{"tls.crt": append(crt, f.otherCA.PEM...), "tls.key": k}
				})
			},
			want:     with(map[string]readiness.Status{readiness.RootCA: readiness.Fail, readiness.SecretsInSync: readiness.Fail}),
			evidence: map[string][]string{readiness.RootCA: {"different root CAs", "xcp-central-cert on west (standby)"}},
		},
		{
			name: "a leaf lacks the floating FQDN",
			in:   func(t *testing.T) readiness.Input { return f.input(t, reissue(f, t, f.ca, "mp2.tsb.example.com")) },
			want: with(map[string]readiness.Status{readiness.RootCA: readiness.Fail, readiness.SecretsInSync: readiness.Fail}),
			evidence: map[string][]string{readiness.RootCA: {"tsb-certs on west (standby): the leaf's DNS SANs (mp2.tsb.example.com) lack the floating FQDN " + floating,
				"xcp-central-cert on west (standby)"}},
		},
		{
			name: "a wildcard SAN covers the floating FQDN",
			in: func(t *testing.T) readiness.Input {
				return f.input(t, reissue(f, t, f.ca, "mp2.tsb.example.com", "*.tsb.example.com"))
			},
			want: with(map[string]readiness.Status{readiness.SecretsInSync: readiness.Fail}),
		},
		{
			name: "no CA certificate to compare",
			in: func(t *testing.T) readiness.Input {
				return f.input(t, func(m map[string]*corev1.Secret) { delete(m["tsb-certs"].Data, "ca.crt") })
			},
			want:     with(map[string]readiness.Status{readiness.RootCA: readiness.Warn, readiness.SecretsInSync: readiness.Fail}),
			evidence: map[string][]string{readiness.RootCA: {"tsb-certs on west (standby): no CA certificate to compare"}},
		},
		{
			name: "a certificate that does not parse",
			in: func(t *testing.T) readiness.Input {
				return f.input(t, func(m map[string]*corev1.Secret) { m["tsb-certs"].Data["tls.crt"] = []byte("not a certificate") })
			},
			want:     with(map[string]readiness.Status{readiness.RootCA: readiness.Fail, readiness.SecretsInSync: readiness.Fail}),
			evidence: map[string][]string{readiness.RootCA: {"tsb-certs on west (standby): tls.crt:"}},
		},
		{
			name: "selfSigned in the standby's values",
			in: func(t *testing.T) readiness.Input {
				in := f.input(t, nil)
				in.Standby.Values = map[string]any{"image": f.activeValues["image"], "spec": map[string]any{
					"hub": "registry.example.com/tsb", "organization": "tetrate", "certIssuer": map[string]any{"selfSigned": map[string]any{}}}}
				return in
			},
			want:     with(map[string]readiness.Status{readiness.RootCA: readiness.Fail, readiness.ValuesDrift: readiness.Fail}),
			evidence: map[string][]string{readiness.RootCA: {"spec.certIssuer.selfSigned is set in west (standby)'s Helm values"}, readiness.ValuesDrift: {"spec.certIssuer"}},
		},
		{
			name: "selfSigned in the rendered values when the active's are not visible",
			in: func(t *testing.T) readiness.Input {
				in := f.input(t, nil)
				in.Active.Values, in.Active.ValuesUnknown = nil, "only its rendered values are in Git"
				in.Rendered = map[string]any{"spec": map[string]any{"certIssuer": map[string]any{"selfSigned": true}}}
				return in
			},
			want:     with(map[string]readiness.Status{readiness.RootCA: readiness.Fail, readiness.ValuesDrift: readiness.Fail}),
			evidence: map[string][]string{readiness.RootCA: {"set in the values rendered from east (active)"}},
		},
		{
			name: "a null selfSigned is not set",
			in: func(t *testing.T) readiness.Input {
				in := f.input(t, nil)
				in.Active.Values = map[string]any{"spec": map[string]any{"certIssuer": map[string]any{"selfSigned": nil}}}
				return in
			},
			want: allPass,
		},
		{
			name: "postgres credentials differ",
			in: func(t *testing.T) readiness.Input {
				return f.input(t, func(m map[string]*corev1.Secret) {
					p := sealtest.Random(t, "other-password")
					f.leaks.Add(p)
					m["postgres-credentials"].Data["password"] = p
				})
			},
			want:     with(map[string]readiness.Status{readiness.SecretsInSync: readiness.Fail}),
			evidence: map[string][]string{readiness.SecretsInSync: {"data differs (keyed digests) for postgres-credentials"}},
		},
		{
			name: "values drifted",
			in: func(t *testing.T) readiness.Input {
				in := f.input(t, nil)
				in.Standby.Values = map[string]any{"image": map[string]any{"registry": "elsewhere.example.com"}, "spec": map[string]any{"hub": "x"}}
				return in
			},
			want:     with(map[string]readiness.Status{readiness.ValuesDrift: readiness.Fail}),
			evidence: map[string][]string{readiness.ValuesDrift: {"3 value path(s)", "image.registry, spec.hub, spec.organization", "values not shown"}},
		},
		{
			name: "standby not installed yet",
			in: func(t *testing.T) readiness.Input {
				in := f.input(t, nil)
				in.Standby.Values, in.Standby.Release = nil, ""
				return in
			},
			want:     with(map[string]readiness.Status{readiness.ValuesDrift: readiness.Warn}),
			evidence: map[string][]string{readiness.ValuesDrift: {"not installed yet"}},
		},
		{
			name: "no floating FQDN",
			in: func(t *testing.T) readiness.Input {
				in := f.input(t, nil)
				in.FloatingFQDN = ""
				return in
			},
			want:     with(map[string]readiness.Status{readiness.RootCA: readiness.Warn}),
			evidence: map[string][]string{readiness.RootCA: {"floating FQDN is unknown"}},
		},
		{
			name: "the active's view: the standby is not visible, local checks still run",
			in: func(t *testing.T) readiness.Input {
				in := f.input(t, nil)
				crt, k := f.ca.Leaf(t, "mp1.tsb.example.com")
				f.leaks.Add(k)
				facts, err := seal.SecretFacts(key, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Annotations: managed},
					Data: map[string][]byte{"tls.crt": crt, "tls.key": k, "ca.crt": f.ca.PEM}})
				if err != nil {
					t.Fatal(err)
				}
				in.Active.Secrets["tsb-certs"] = facts
				why := "no live facts of west reach the active before its heartbeats do"
				in.Standby = readiness.Site{Cluster: "west", SecretsUnknown: why, ValuesUnknown: why}
				in.Rendered, in.RenderedUnknown = nil, "the standby's agent compares them"
				return in
			},
			want: map[string]readiness.Status{readiness.SigningKeyKid: readiness.Warn, readiness.JWKSKid: readiness.Warn,
				readiness.SecretsInSync: readiness.Warn, readiness.RootCA: readiness.Fail, readiness.ValuesDrift: readiness.Warn,
				readiness.SecretsManaged: readiness.Pass},
			evidence: map[string][]string{
				readiness.SigningKeyKid: {"cannot compare with west (standby): no live facts"},
				readiness.RootCA:        {"cannot compare with west (standby)", "tsb-certs on east (active): the leaf's DNS SANs (mp1.tsb.example.com) lack"},
				readiness.ValuesDrift:   {"the standby's agent compares them"},
			},
		},
		{
			name: "the active seen through Git without kid annotations",
			in: func(t *testing.T) readiness.Input {
				in := f.input(t, nil)
				in.Active.Via = "as exported to Git"
				fs := in.Active.Secrets["iam-signing-key"]
				fs.Kids, fs.Sealed = nil, true
				in.Active.Secrets["iam-signing-key"] = fs
				delete(in.Active.Secrets, "tsb-certs") // not exported
				return in
			},
			want: with(map[string]readiness.Status{readiness.SigningKeyKid: readiness.Warn, readiness.RootCA: readiness.Warn, readiness.SecretsInSync: readiness.Warn}),
			evidence: map[string][]string{
				readiness.SigningKeyKid: {"SealedSecret of iam-signing-key on east (active, as exported to Git) carries no kid"},
				readiness.RootCA:        {"tsb-certs on east (active, as exported to Git) unknown: tsb-certs is not exported"},
			},
		},
		{
			name: "the active's own copies are not managed by sealed-secrets",
			in: func(t *testing.T) readiness.Input {
				in := f.input(t, nil)
				in.Active = f.site(t, "east", unmanage("iam-signing-key", "tsb-iam-jwks"))
				in.Active.Values = f.activeValues
				return in
			},
			want: with(map[string]readiness.Status{readiness.SecretsManaged: readiness.Warn}),
			evidence: map[string][]string{readiness.SecretsManaged: {
				"on east (active), sealed-secrets may not replace iam-signing-key and tsb-iam-jwks",
				"after a failover the new active's exports cannot reach them",
				"fix: kubectl -n tsb annotate secret iam-signing-key tsb-iam-jwks sealedsecrets.bitnami.com/managed=true (in east)"}},
		},
		{
			name: "the standby's own secret is not managed, nor annotated true",
			in: func(t *testing.T) readiness.Input {
				return f.input(t, func(m map[string]*corev1.Secret) {
					m["postgres-credentials"].Annotations[seal.ManagedAnnotation] = "false"
				})
			},
			want: with(map[string]readiness.Status{readiness.SecretsManaged: readiness.Warn}),
			evidence: map[string][]string{readiness.SecretsManaged: {"on west (standby), sealed-secrets may not replace postgres-credentials",
				"the active's exports cannot reach it", "annotate secret postgres-credentials sealedsecrets.bitnami.com/managed=true (in west)"}},
		},
		{
			name: "the standby's copies are owned by their SealedSecrets",
			in: func(t *testing.T) readiness.Input {
				return f.input(t, func(m map[string]*corev1.Secret) {
					for _, s := range m {
						s.Annotations = nil
						s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "bitnami.com/v1alpha1", Kind: "SealedSecret", Name: s.Name, UID: "u",
							Controller: &controller}}
					}
				})
			},
			want:     allPass,
			evidence: map[string][]string{readiness.SecretsManaged: {"on east (active) and west (standby) may be replaced by SealedSecrets"}},
		},
		{
			name: "a SealedSecret that owns but does not control the copy is not enough",
			in: func(t *testing.T) readiness.Input {
				return f.input(t, func(m map[string]*corev1.Secret) {
					s := m["tsb-iam-jwks"]
					s.Annotations = nil
					s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "bitnami.com/v1alpha1", Kind: "SealedSecret", Name: s.Name, UID: "u"}}
				})
			},
			want:     with(map[string]readiness.Status{readiness.SecretsManaged: readiness.Warn}),
			evidence: map[string][]string{readiness.SecretsManaged: {"may not replace tsb-iam-jwks (sealedsecrets.bitnami.com/managed is not \"true\""}},
		},
		{
			name: "facts from Git cannot tell, absent secrets are not this check's",
			in: func(t *testing.T) readiness.Input {
				in := f.input(t, nil)
				for n, fs := range in.Active.Secrets {
					fs.Sealed, fs.Managed = true, false
					in.Active.Secrets[n] = fs
				}
				in.Active.Via = "as exported to Git"
				in.Standby = f.site(t, "west", func(m map[string]*corev1.Secret) {
					for _, n := range names() {
						delete(m, n)
					}
				})
				in.Standby.Values = in.Active.Values
				return in
			},
			want: with(map[string]readiness.Status{readiness.SigningKeyKid: readiness.Fail, readiness.JWKSKid: readiness.Fail,
				readiness.SecretsInSync: readiness.Fail, readiness.RootCA: readiness.Fail}),
			evidence: map[string][]string{readiness.SecretsManaged: {"nothing to check"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := readiness.Evaluate(tc.in(t))
			if len(got) != len(readiness.Checks()) {
				t.Fatalf("got %d results, want %d", len(got), len(readiness.Checks()))
			}
			for i, r := range got {
				if r.Check != readiness.Checks()[i] {
					t.Errorf("result %d is %s, want %s", i, r.Check, readiness.Checks()[i])
				}
				if r.Status != tc.want[r.Check] {
					t.Errorf("%s: %s, want %s: %s", r.Check, r.Status, tc.want[r.Check], r.Evidence)
				}
				if r.Evidence == "" {
					t.Errorf("%s: no evidence", r.Check)
				}
				for _, want := range tc.evidence[r.Check] {
					if !strings.Contains(r.Evidence, want) {
						t.Errorf("%s: evidence lacks %q:\n%s", r.Check, want, r.Evidence)
					}
				}
				f.leaks.Scan(t, r.Check+" evidence", r.Evidence)
				if strings.Contains(r.Evidence, "not-for-the-standby") || strings.Contains(r.Evidence, "hand-installed") || strings.Contains(r.Evidence, "elsewhere") {
					t.Errorf("%s: evidence holds a value: %s", r.Check, r.Evidence)
				}
			}
		})
	}
}

var (
	managed    = map[string]string{seal.ManagedAnnotation: "true"}
	controller = true
)

// unmanage strips the managed annotation from the named secrets.
func unmanage(names ...string) func(map[string]*corev1.Secret) {
	return func(m map[string]*corev1.Secret) {
		for _, n := range names {
			delete(m[n].Annotations, seal.ManagedAnnotation)
		}
	}
}

func TestReport(t *testing.T) {
	rep := readiness.NewReport("east", "west", []readiness.Result{
		{Check: "a", Status: readiness.Pass}, {Check: "b", Status: readiness.Warn}, {Check: "c", Status: readiness.Pass},
	})
	if rep.Status != readiness.Warn {
		t.Errorf("status %s, want warn", rep.Status)
	}
	if got := readiness.Fail.Worse(readiness.Pass); got != readiness.Fail {
		t.Errorf("fail.Worse(pass) = %s", got)
	}
	if got := readiness.NewReport("east", "west", nil).Status; got != readiness.Pass {
		t.Errorf("no checks: %s, want pass", got)
	}
}

// Every check Evaluate runs is listed by Checks, in its order, and described (doctor's help is
// made from Describe).
func TestChecksDescribed(t *testing.T) {
	var ran []string
	for _, r := range readiness.Evaluate(readiness.Input{}) {
		ran = append(ran, r.Check)
	}
	if !slices.Equal(ran, readiness.Checks()) {
		t.Errorf("Evaluate ran %v, Checks lists %v", ran, readiness.Checks())
	}
	for _, c := range ran {
		if readiness.Describe(c) == "" {
			t.Errorf("check %s has no description", c)
		}
	}
	if d := readiness.Describe("no-such-check"); d != "" {
		t.Errorf("Describe(no-such-check) = %q", d)
	}
}
