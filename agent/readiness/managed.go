package readiness

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/mpha-dev/mpha/gitops/seal"
)

// managedCheck (secrets-managed) looks at every exported secret a site holds live: the
// sealed-secrets controller refuses to overwrite a Secret it neither owns nor may manage
// (seal.ManagedAnnotation). On the standby that stops the active's exports now; on the active it stops
// the other side's exports from replacing these copies after a failover, so the roles swap but
// the secrets no longer follow. A warning, not a failure: the failover itself is not at risk.
// Evidence names secrets and the fix, never data. Facts read from Git cannot tell and are skipped.
func managedCheck(in Input) Result {
	var v verdict
	var seen, clean []string
	for _, site := range []Site{in.Active, in.Standby} {
		if site.SecretsUnknown != "" {
			continue
		}
		var unmanaged []string
		live := false
		for _, n := range slices.Compact(slices.Sorted(slices.Values(in.Names))) {
			f, ok := site.Secrets[n]
			if !ok || !f.Present || f.Sealed {
				continue
			}
			live = true
			if !f.Managed {
				unmanaged = append(unmanaged, n)
			}
		}
		if !live {
			continue
		}
		seen = append(seen, site.name())
		if len(unmanaged) == 0 {
			clean = append(clean, site.name())
			continue
		}
		v.add(Warn, "on %s, sealed-secrets may not replace %s (%s %s not %q and no SealedSecret owns %s), so %s; "+
			"fix: kubectl -n %s annotate secret %s %s=true (in %s)",
			site.name(), list(unmanaged), seal.ManagedAnnotation, isAre(unmanaged), "true", itThem(unmanaged),
			managedConsequence(site, unmanaged), cmp.Or(site.Namespace, "tsb"), strings.Join(unmanaged, " "), seal.ManagedAnnotation, site.Cluster)
	}
	if len(seen) == 0 {
		// Missing secrets are secrets-in-sync's to report.
		return v.result(SecretsManaged, "no exported secret is held live on a site seen here: nothing to check")
	}
	return v.result(SecretsManaged, fmt.Sprintf("the exported secrets on %s may be replaced by SealedSecrets (owned by one or annotated %s)",
		list(clean), seal.ManagedAnnotation))
}

func managedConsequence(site Site, names []string) string {
	if site.role == "standby" {
		return "the active's exports cannot reach " + itThem(names)
	}
	return "after a failover the new active's exports cannot reach " + itThem(names)
}

func isAre(names []string) string {
	if len(names) == 1 {
		return "is"
	}
	return "are"
}

func itThem(names []string) string {
	if len(names) == 1 {
		return "it"
	}
	return "them"
}
