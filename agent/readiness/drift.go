package readiness

import (
	"fmt"
	"strings"

	"github.com/mpha-dev/mpha/gitops/values"
)

// maxPaths bounds the paths values-drift lists.
const maxPaths = 10

// driftCheck compares the standby's applied values with those rendered from the active's release
// (values-drift). Evidence lists paths, never values.
func driftCheck(in Input) Result {
	var v verdict
	switch {
	case in.Rendered == nil:
		v.add(Warn, "no values rendered from %s to compare: %s", in.Active.name(), in.RenderedUnknown)
	case in.Standby.ValuesUnknown != "":
		v.add(Warn, "cannot see %s's values: %s", in.Standby.name(), in.Standby.ValuesUnknown)
	case in.Standby.Values == nil:
		v.add(Warn, "%s's management plane is not installed yet (no deployed Helm release)", in.Standby.name())
	default:
		if paths := values.Diff(in.Rendered, kept(in.Standby.Values)); len(paths) > 0 {
			v.add(Fail, "%d value path(s) of %s's release %s differ from the values rendered from %s: %s (values not shown); let Flux apply the committed HelmRelease",
				len(paths), in.Standby.name(), in.Standby.Release, in.Active.name(), pathList(paths))
		}
	}
	return v.result(ValuesDrift, fmt.Sprintf("%s's release %s has the values rendered from %s", in.Standby.name(), in.Standby.Release, in.Active.name()))
}

// kept keeps the top-level keys a standby's values may hold: `secrets` travel as SealedSecrets
// (secrets-in-sync compares them), so a hand-installed standby's secrets are not drift.
func kept(m map[string]any) map[string]any {
	out := map[string]any{}
	for _, k := range values.Kept() {
		if v, ok := m[k]; ok {
			out[k] = v
		}
	}
	return out
}

func pathList(paths []string) string {
	if len(paths) > maxPaths {
		return strings.Join(paths[:maxPaths], ", ") + fmt.Sprintf(" and %d more", len(paths)-maxPaths)
	}
	return strings.Join(paths, ", ")
}
