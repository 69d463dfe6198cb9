package readiness

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/values"
)

// SelfSignedPath is the ManagementPlane values path that makes each MP mint its own root CA
// (tsb-mp-ha.md §7): any non-null value there fails root-ca.
const SelfSignedPath = "spec.certIssuer.selfSigned"

// rootCACheck: one CA in tsb-certs and xcp-central-cert on both sites, the floating FQDN in every
// leaf's DNS SANs, and no self-signed issuer in any values (root-ca).
func rootCACheck(in Input) Result {
	var v verdict
	cas := map[string][]string{} // CA fingerprint → where it was seen
	if in.FloatingFQDN == "" {
		v.add(Warn, "the floating FQDN is unknown: leaf SANs not checked")
	}
	for _, site := range []Site{in.Active, in.Standby} {
		if site.SecretsUnknown != "" {
			v.add(Warn, "cannot compare with %s: %s", site.name(), site.SecretsUnknown)
			continue
		}
		for _, name := range []string{TSBCertsSecret, XCPCentralSecret} {
			certCheck(&v, cas, site, name, in.FloatingFQDN)
		}
	}
	if len(cas) > 1 {
		var seen []string
		for _, fp := range slices.Sorted(maps.Keys(cas)) {
			seen = append(seen, fmt.Sprintf("CA %s in %s", short(fp), list(cas[fp])))
		}
		v.add(Fail, "different root CAs: %s; issue both MPs' tsb-certs and xcp-central-cert from one shared CA", strings.Join(seen, " vs "))
	}
	selfSignedCheck(&v, in)
	var pass string
	for fp := range cas {
		pass = fmt.Sprintf("one CA (sha256 %s) in %s and %s on both; leaf SANs include %s; no %s",
			short(fp), TSBCertsSecret, XCPCentralSecret, in.FloatingFQDN, SelfSignedPath)
	}
	return v.result(RootCA, pass)
}

// certCheck records secret name's CA on site and checks its leaf's SANs.
func certCheck(v *verdict, cas map[string][]string, site Site, name, fqdn string) {
	f, ok, why := site.facts(name)
	where := name + " on " + site.name()
	switch {
	case !ok:
		v.add(Warn, "%s unknown: %s", where, why)
		return
	case !f.Present:
		v.add(Fail, "%s is missing", where)
		return
	case f.Problem != "" && f.Sealed:
		v.add(Warn, "%s: %s", where, f.Problem)
		return
	case f.Problem != "":
		v.add(Fail, "%s: %s", where, f.Problem)
		return
	case f.CA == "" && f.Sealed:
		v.add(Warn, "%s: no CA fingerprint recorded (%s)", where, seal.CAAnnotation)
	case f.CA == "":
		v.add(Warn, "%s: no CA certificate to compare (no %s, and %s holds only the leaf): add %s", where, seal.CAKey, seal.TLSKey, seal.CAKey)
	default:
		cas[f.CA] = append(cas[f.CA], where)
	}
	if fqdn == "" {
		return
	}
	switch {
	case !f.Leaf && f.Sealed:
		v.add(Warn, "%s: no leaf SANs recorded (%s)", where, seal.DNSNamesAnnotation)
	case !f.Leaf:
		v.add(Fail, "%s has no %s", where, seal.TLSKey)
	case !covers(f.DNSNames, fqdn):
		v.add(Fail, "%s: the leaf's DNS SANs (%s) lack the floating FQDN %s; reissue it with that name", where, sans(f.DNSNames), fqdn)
	}
}

// covers reports whether a DNS SAN matches host, with a wildcard standing for one left-most label.
func covers(names []string, host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if n == host {
			return true
		}
		if rest, ok := strings.CutPrefix(n, "*."); ok {
			if _, parent, found := strings.Cut(host, "."); found && parent == rest {
				return true
			}
		}
	}
	return false
}

func sans(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	if len(names) > 6 {
		return strings.Join(names[:6], ", ") + fmt.Sprintf(" and %d more", len(names)-6)
	}
	return strings.Join(names, ", ")
}

// selfSignedCheck fails for spec.certIssuer.selfSigned in any values the pair runs. The rendered
// values stand for the active's when those are not visible (they are copied from them).
func selfSignedCheck(v *verdict, in Input) {
	type source struct {
		what string
		vals map[string]any
	}
	var srcs []source
	for _, site := range []Site{in.Active, in.Standby} {
		if site.ValuesUnknown == "" && site.Values != nil {
			srcs = append(srcs, source{site.name() + "'s Helm values", site.Values})
		}
	}
	if in.Active.ValuesUnknown != "" && in.Rendered != nil {
		srcs = append(srcs, source{"the values rendered from " + in.Active.name(), in.Rendered})
	}
	for _, s := range srcs {
		if val, ok := values.Get(s.vals, SelfSignedPath); ok && val != nil {
			v.add(Fail, "%s is set in %s: each MP would mint its own root CA; remove it and give both MPs the same CA", SelfSignedPath, s.what)
		}
	}
}

// short abbreviates a fingerprint for evidence: enough to tell CAs apart.
func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16] + "…"
	}
	return fp
}
