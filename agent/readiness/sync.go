package readiness

import (
	"fmt"
	"slices"
)

// syncCheck compares the keyed digests of every exported secret on both sites
// (secrets-in-sync). Evidence names secrets, never values or digests.
func syncCheck(in Input) Result {
	var v verdict
	for _, site := range []Site{in.Active, in.Standby} {
		if site.SecretsUnknown != "" {
			v.add(Warn, "cannot compare with %s: %s", site.name(), site.SecretsUnknown)
			return v.result(SecretsInSync, "")
		}
	}
	var equal, differ, noDigest, absent []string
	missing := map[string][]string{} // site name → secrets missing there
	for _, n := range slices.Compact(slices.Sorted(slices.Values(in.Names))) {
		a, aok, awhy := in.Active.facts(n)
		s, sok, swhy := in.Standby.facts(n)
		switch {
		case !aok:
			v.add(Warn, "%s: %s", n, awhy)
		case !sok:
			v.add(Warn, "%s: %s", n, swhy)
		case !a.Present && !s.Present:
			absent = append(absent, n)
		case !a.Present:
			missing[in.Active.name()] = append(missing[in.Active.name()], n)
		case !s.Present:
			missing[in.Standby.name()] = append(missing[in.Standby.name()], n)
		case a.Digest == "" || s.Digest == "":
			noDigest = append(noDigest, n)
		case a.Digest != s.Digest:
			differ = append(differ, n)
		default:
			equal = append(equal, n)
		}
	}
	if len(differ) > 0 {
		v.add(Fail, "data differs (keyed digests) for %s: the standby's copy is stale or was changed there; let the active's agent re-export and Flux apply", list(differ))
	}
	for _, site := range []Site{in.Active, in.Standby} {
		if m := missing[site.name()]; len(m) > 0 {
			v.add(Fail, "missing on %s: %s", site.name(), list(m))
		}
	}
	if len(noDigest) > 0 {
		v.add(Warn, "no digest to compare for %s (sealed without the agents' key?)", list(noDigest))
	}
	pass := fmt.Sprintf("%d secret(s) equal by keyed digest on both: %s", len(equal), list(equal))
	if len(absent) > 0 {
		note := "absent on both (not used here): " + list(absent)
		if len(v.notes) > 0 {
			v.notes = append(v.notes, note)
		} else {
			pass += "; " + note
		}
	}
	return v.result(SecretsInSync, pass)
}
