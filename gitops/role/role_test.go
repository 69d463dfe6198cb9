package role_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/role"
	"github.com/mpha-dev/mpha/internal/golden"
)

const schedule = "*/15 * * * *"

func workloads() []role.Workload {
	return []role.Workload{
		{Name: role.TSB, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "tsb"}}},
		{Name: role.IAM, Selector: &metav1.LabelSelector{
			MatchLabels: map[string]string{"app": "iam"},
			MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: "platform.tsb.tetrate.io/plane", Operator: metav1.LabelSelectorOpIn, Values: []string{"management"}},
			},
		}},
	}
}

func restore() *role.Restore { return &role.Restore{Name: role.RestoreJob, Schedule: schedule} }

// roles are the cases of the golden files, named after them.
func roles() map[string]role.Role {
	return map[string]role.Role{
		"active":             role.Active("", 0, workloads(), restore()),
		"active-3-replicas":  role.Active("tsb", 3, workloads(), restore()),
		"standby":            role.Standby("", workloads(), restore(), false),
		"standby-demoted":    role.Standby("", workloads(), restore(), true),
		"values-active":      role.Active("", 2, nil, restore()),
		"values-standby":     role.Standby("", nil, restore(), false),
		"external-db-active": role.Active("mp", 1, workloads(), nil),
	}
}

func TestMarshalGolden(t *testing.T) {
	t.Parallel()
	for name, r := range roles() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := r.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, "testdata/"+name+".golden.yaml", b)
			if !strings.HasPrefix(string(b), gitops.Header) {
				t.Error("the file does not start with mpha's header")
			}
			again, err := r.Marshal()
			if err != nil || string(again) != string(b) {
				t.Errorf("a second Marshal gave different bytes (err %v)", err)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for name, r := range roles() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := r.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := role.Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(r, got); diff != "" {
				t.Errorf("Marshal → Parse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConstructors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		r             role.Role
		ns            string
		replicas      int32
		suspended     bool
		deps, restore bool
	}{
		{"active defaults to one replica", role.Active("", 0, workloads(), restore()), "tsb", 1, true, true, true},
		{"active keeps the live count", role.Active("mp", 4, workloads(), restore()), "mp", 4, true, true, true},
		{"standby runs its restore job", role.Standby("", workloads(), restore(), false), "tsb", 0, false, true, true},
		{"demoted standby suspends it", role.Standby("", workloads(), restore(), true), "tsb", 0, true, true, true},
		{"values mode has no replicas", role.Active("", 3, nil, restore()), "tsb", 0, true, false, true},
		{"no restore job, nothing suspended", role.Standby("", workloads(), nil, true), "tsb", 0, false, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.r
			if r.Namespace != tc.ns || r.Replicas != tc.replicas || r.RestoreSuspended != tc.suspended ||
				(len(r.Deployments) > 0) != tc.deps || (r.Restore != nil) != tc.restore {
				t.Errorf("got %+v", r)
			}
			if err := r.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

// The file depends on the set of Deployments, not on the caller's order, and later changes to
// the caller's values do not reach a Role already built.
func TestMarshalIsStable(t *testing.T) {
	t.Parallel()
	ws := workloads()
	rj := restore()
	a := role.Standby("", ws, rj, false)
	ws[0], ws[1] = ws[1], ws[0]
	b := role.Standby("", ws, rj, false)
	ws[0].Selector.MatchLabels["app"] = "changed"
	rj.Schedule = "@daily"
	hand := role.Role{Namespace: "tsb", Deployments: workloads(), Restore: restore()} // unsorted
	var outs []string
	for _, r := range []role.Role{a, b, hand} {
		out, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, string(out))
	}
	if outs[0] != outs[1] || outs[0] != outs[2] {
		t.Errorf("the same role gave different files:\n%s\n%s\n%s", outs[0], outs[1], outs[2])
	}
	if strings.Contains(outs[0], "changed") || strings.Contains(outs[0], "@daily") {
		t.Error("a change to the caller's values reached the role")
	}
}

func TestValidateRefuses(t *testing.T) {
	t.Parallel()
	good := func() role.Role { return role.Standby("", workloads(), restore(), false) }
	tests := []struct {
		name   string
		change func(*role.Role)
		want   string
	}{
		{"bad namespace", func(r *role.Role) { r.Namespace = "TSB" }, `namespace "TSB"`},
		{"no namespace", func(r *role.Role) { r.Namespace = "" }, `namespace ""`},
		{"negative replicas", func(r *role.Role) { r.Replicas = -1 }, "replicas: must not be negative"},
		{"replicas in values mode", func(r *role.Role) { r.Deployments = nil; r.Replicas = 1 }, "no Deployments to scale"},
		{"bad name", func(r *role.Role) { r.Deployments[0].Name = "Tsb_" }, `deployments[0].name "Tsb_"`},
		{"duplicate", func(r *role.Role) { r.Deployments[1].Name = r.Deployments[0].Name }, "appears twice"},
		{"no selector", func(r *role.Role) { r.Deployments[0].Selector = nil }, "deployments[0].selector: must repeat"},
		{"empty selector", func(r *role.Role) { r.Deployments[1].Selector = &metav1.LabelSelector{} }, "deployments[1].selector: must repeat"},
		{"bad selector", func(r *role.Role) {
			r.Deployments[0].Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Near"}}
		}, "deployments[0].selector.matchExpressions[0].operator"},
		{"suspended without job", func(r *role.Role) { r.Restore = nil; r.RestoreSuspended = true }, "restoreSuspended: set, but there is no restore job"},
		{"bad job name", func(r *role.Role) { r.Restore.Name = "" }, `restore.name ""`},
		{"no schedule", func(r *role.Role) { r.Restore.Schedule = "" }, `restore.schedule ""`},
		{"two-line schedule", func(r *role.Role) { r.Restore.Schedule = "@daily\nx: 1" }, "restore.schedule"},
		{"padded schedule", func(r *role.Role) { r.Restore.Schedule = " @daily" }, "restore.schedule"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := good()
			tc.change(&r)
			err := r.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
			if _, merr := r.Marshal(); merr == nil {
				t.Error("Marshal wrote an invalid role")
			}
		})
	}
}

func TestEmptyRole(t *testing.T) {
	t.Parallel()
	r := role.Standby("", nil, nil, true)
	if err := r.Validate(); !errors.Is(err, role.ErrEmpty) {
		t.Errorf("Validate = %v, want ErrEmpty", err)
	}
	if _, err := role.Parse([]byte(gitops.Header)); !errors.Is(err, role.ErrEmpty) {
		t.Errorf("Parse of a header alone = %v, want ErrEmpty", err)
	}
}

func readGolden(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name + ".golden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseRefuses(t *testing.T) {
	t.Parallel()
	standby := readGolden(t, "standby")
	const cronSpec = "spec:\n  schedule: \"*/15 * * * *\"\n  suspend: false\n"
	tests := []struct{ name, from, to, want string }{
		{"no header", gitops.Header, "", "not owned by mpha"},
		{"other kind", "kind: CronJob", "kind: Job", "batch/v1 Job: role.yaml holds only"},
		{"old apiVersion", "apiVersion: apps/v1", "apiVersion: extensions/v1beta1", "extensions/v1beta1 Deployment"},
		{"no kind", "kind: CronJob\n", "", "batch/v1 : role.yaml holds only"},
		{"no type", "apiVersion: batch/v1\nkind: CronJob\n", "", "no apiVersion and kind"},
		{"no ssa annotation", "    kustomize.toolkit.fluxcd.io/ssa: Merge\n", "", "metadata.annotations: want exactly"},
		{"override", "ssa: Merge", "ssa: Override", "metadata.annotations: want exactly"},
		{"no prune annotation", "    kustomize.toolkit.fluxcd.io/prune: disabled\n", "", "metadata.annotations: want exactly"},
		{"extra annotation", "  annotations:\n", "  annotations:\n    a: b\n", "metadata.annotations: want exactly"},
		{"a label", "  annotations:\n", "  labels:\n    app.kubernetes.io/managed-by: mpha\n  annotations:\n", "metadata.labels: want none"},
		{"unknown spec field", "  replicas: 0\n", "  replicas: 0\n  paused: true\n", `unknown field "spec.paused"`},
		{"unknown metadata field", "  name: iam\n", "  name: iam\n  uid: x\n", `unknown field "metadata.uid"`},
		{"mis-cased key", "  replicas: 0\n", "  Replicas: 0\n", `unknown field "spec.Replicas"`},
		{"duplicate key", "  replicas: 0\n", "  replicas: 0\n  replicas: 1\n", `key "replicas" already set`},
		{"no replicas", "  replicas: 0\n", "", "spec.replicas: missing"},
		{"mixed replicas", "  replicas: 0\n", "  replicas: 1\n", "spec.replicas: 0, but an earlier Deployment has 1"},
		{"no selector", "  selector:\n    matchLabels:\n      app: tsb\n", "", "spec.selector: missing"},
		{"no suspend", "  suspend: false\n", "", "spec.suspend: missing"},
		{"no schedule", "  schedule: \"*/15 * * * *\"\n", "", `restore.schedule ""`},
		{"two restore jobs", cronSpec, cronSpec + "---\n" + standby[strings.LastIndex(standby, "apiVersion: batch/v1"):], "a second restore job"},
		{"two namespaces", "  namespace: tsb\nspec:\n  replicas", "  namespace: other\nspec:\n  replicas", `metadata.namespace: "tsb", but an earlier object is in "other"`},
		{"same Deployment twice", "  name: iam\n", "  name: tsb\n", `"tsb" appears twice`},
		{"negative replicas", "  replicas: 0\n", "  replicas: -1\n", "replicas"},
		{"replicas as text", "  replicas: 0\n", "  replicas: none\n", "spec.replicas"},
		{"a list", "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  annotations", "- apiVersion: apps/v1\n  kind: Deployment\nmetadata:\n  annotations", "decoding"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := strings.Replace(standby, tc.from, tc.to, 1)
			if in == standby {
				t.Fatalf("the case changes nothing: %q not in the golden file", tc.from)
			}
			_, err := role.Parse([]byte(in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseNotOwned(t *testing.T) {
	t.Parallel()
	_, err := role.Parse([]byte("apiVersion: apps/v1\nkind: Deployment\n"))
	if !errors.Is(err, gitops.ErrNotOwned) {
		t.Errorf("err = %v, want ErrNotOwned", err)
	}
}

// Parse tolerates what YAML allows around the documents: a leading "---", empty documents.
func TestParseToleratesSeparators(t *testing.T) {
	t.Parallel()
	standby := readGolden(t, "standby")
	in := gitops.Header + "---\n# comment\n---\n" + strings.TrimPrefix(standby, gitops.Header) + "---\n"
	got, err := role.Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(roles()["standby"], got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// FuzzParse: no input panics; an accepted file survives Marshal → Parse unchanged, and Marshal
// of that is stable.
func FuzzParse(f *testing.F) {
	for name := range roles() {
		f.Add([]byte(readGolden(f, name)))
	}
	f.Add([]byte(gitops.Header + "apiVersion: batch/v1\nkind: CronJob\n---\n---\nkind: Deployment\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := role.Parse(b)
		if err != nil {
			return
		}
		out, err := r.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed role: %v", err)
		}
		again, err := role.Parse(out)
		if err != nil {
			t.Fatalf("Parse of Marshal's output: %v\n%s", err, out)
		}
		if diff := cmp.Diff(r, again, cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("Parse → Marshal → Parse (-first +second):\n%s", diff)
		}
		out2, err := again.Marshal()
		if err != nil || string(out2) != string(out) {
			t.Fatalf("Marshal is not stable (err %v):\n%s\n%s", err, out, out2)
		}
	})
}
