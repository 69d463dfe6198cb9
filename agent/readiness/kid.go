package readiness

import (
	"slices"
	"strings"

	"github.com/mpha-dev/mpha/gitops/seal"
)

// kidCheck compares the kids of secret on both sites (signing-key-kid, jwks-kid). A site known to
// lack the secret or its kid fails whatever the other says; a site that cannot be seen is a warning.
func kidCheck(check, secret string, in Input) Result {
	var v verdict
	var known [][]string
	for _, site := range []Site{in.Active, in.Standby} {
		if kids, ok := siteKids(&v, secret, site); ok {
			known = append(known, kids)
		}
	}
	if len(known) == 2 && !slices.Equal(known[0], known[1]) {
		v.add(Fail, "%s kid differs: %s has %s, %s has %s; %s", secret,
			in.Active.name(), kidList(known[0]), in.Standby.name(), kidList(known[1]), kidAdvice(secret))
	}
	pass := ""
	if len(known) == 2 {
		pass = secret + " kid " + kidList(known[0]) + " on both " + in.Active.Cluster + " and " + in.Standby.Cluster
	}
	return v.result(check, pass)
}

// siteKids returns the kids of secret on site, or records why they are not known.
func siteKids(v *verdict, secret string, site Site) ([]string, bool) {
	f, ok, why := site.facts(secret)
	where := secret + " on " + site.name()
	switch {
	case !ok:
		v.add(Warn, "cannot compare with %s: %s", site.name(), why)
	case !f.Present:
		v.add(Fail, "%s is missing on %s; %s", secret, site.name(), missingAdvice(site))
	case f.Problem != "" && f.Sealed:
		v.add(Warn, "%s: %s", where, f.Problem)
	case len(f.Kids) == 0 && f.Sealed:
		v.add(Warn, "the SealedSecret of %s carries no kid (%s is unset: exported by an older agent?)", where, seal.KidAnnotation)
	case len(f.Kids) == 0:
		v.add(Fail, "%s has no kid (no data key %q, no JWKS with kids)", where, seal.KidKey)
	default:
		return f.Kids, true
	}
	return nil, false
}

func kidList(kids []string) string { return strings.Join(kids, ",") }

func kidAdvice(secret string) string {
	if secret == seal.SigningKeySecret {
		return "tokens issued by one MP fail on the other: apply the active's sealed " + secret +
			" on the standby and restart its iam (if the standby's operator generated its own key, it started before the key arrived)"
	}
	return "apply the active's sealed " + secret + " on the standby"
}

func missingAdvice(site Site) string {
	if site.role == "standby" {
		return "the active's agent exports it: check the exporter and the standby's sealed-secrets controller"
	}
	return "the active management plane lacks it: check its installation"
}
