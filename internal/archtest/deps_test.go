// Package archtest checks the dependency rules of docs/design.md §9 with `go list`:
// cmd → agent → gitops, never back; internal/* is a leaf; the test rig reaches no production code;
// an outside part (the Git writer) is set up in one place.
package archtest

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/mpha-dev/mpha"

type pkg struct {
	ImportPath string
	Deps       []string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json=ImportPath,Deps,Imports", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 3 {
		t.Fatalf("go list found %d packages; the check would prove nothing", len(pkgs))
	}
	return pkgs
}

// under reports whether path is the package prefix or below it. prefix is inside the module
// ("gitops/plan") or, when its first element is a domain, a full import path ("github.com/...").
func under(path, prefix string) bool {
	p := module + "/" + prefix
	if first, _, _ := strings.Cut(prefix, "/"); strings.Contains(first, ".") {
		p = prefix
	}
	return path == p || strings.HasPrefix(path, p+"/")
}

// The Git libraries, which the pure packages (style.md §4.1) never reach: gitops/gitrepo speaks
// Git for them.
const (
	goGit   = "github.com/go-git/go-git"
	fluxGit = "github.com/fluxcd/pkg/git"
	pure    = "a pure package: files in, files out; its caller reads and writes through gitops/gitrepo"
)

// Test helper packages are for tests only: no other package imports one.
func TestHelperPackagesOnlyInTests(t *testing.T) {
	helpers := 0
	for _, p := range listPackages(t) {
		if helperPackage(p.ImportPath) {
			helpers++
			continue
		}
		for _, d := range p.Deps {
			if strings.HasPrefix(d, module+"/") && helperPackage(d) {
				t.Errorf("%s depends on the test helper package %s", p.ImportPath, d)
			}
		}
	}
	if helpers == 0 {
		t.Error("found no test helper package: the check proves nothing")
	}
}

// A rule forbids packages under from to depend (directly or not) on packages under to.
var rules = []struct{ from, to, why string }{
	{"gitops", "agent", "gitops is below agent"},
	{"gitops", "cmd", "gitops is below cmd"},
	{"agent", "cmd", "agent is below cmd"},
	{"internal", "agent", "internal/* is a leaf"},
	{"internal", "gitops", "internal/* is a leaf"},
	{"internal", "cmd", "internal/* is a leaf"},
	{"agent", "internal/testrig", "the rig is for tests only"},
	{"gitops", "internal/testrig", "the rig is for tests only"},
	{"cmd", "internal/testrig", "the rig is for tests only"},
	{"agent", "internal/golden", "golden files are for tests only"},
	{"gitops", "internal/golden", "golden files are for tests only"},
	{"cmd", "internal/golden", "golden files are for tests only"},
	{"agent", "internal/helmtest", "the fixture chart is for tests only"},
	{"gitops", "internal/helmtest", "the fixture chart is for tests only"},
	{"cmd", "internal/helmtest", "the fixture chart is for tests only"},
	{"cmd", "gitops/seal/sealtest", "certificate fixtures are for tests only"},
	{"agent/export", "agent/readiness", "the exporter takes a secret's facts and annotations from gitops/seal"},
	// The watchers are below the failover: it runs their checks, and all read heartbeats
	// through agent/heartbeat's Reader.
	{"agent/database", "agent/failover", "the failover runs the database check and sync, not the other way round"},
	{"agent/health", "agent/failover", "the watch suggests a failover by an event, never by a call"},
	{"gitops/plan", "gitops/gitrepo", pure},
	{"gitops/plan", goGit, pure},
	{"gitops/plan", fluxGit, pure},
	{"gitops/failback", "gitops/gitrepo", pure},
	{"gitops/failback", goGit, pure},
	{"gitops/failback", fluxGit, pure},
	{"gitops/values", "gitops/gitrepo", pure},
	{"gitops/values", goGit, pure},
	{"gitops/values", fluxGit, pure},
	{"gitops/role", "gitops/gitrepo", pure},
	{"gitops/role", goGit, pure},
	{"gitops/role", fluxGit, pure},
}

// helperPackage reports a package of test helpers (agent/failover/failovertest): only tests
// import it, and it may use the rig.
func helperPackage(path string) bool {
	return strings.HasSuffix(path[strings.LastIndex(path, "/")+1:], "test")
}

func TestDependencyDirection(t *testing.T) {
	for _, p := range listPackages(t) {
		for _, r := range rules {
			if !under(p.ImportPath, r.from) {
				continue
			}
			if helperPackage(p.ImportPath) && strings.HasSuffix(r.why, "for tests only") {
				continue
			}
			for _, d := range p.Deps {
				if under(d, r.to) {
					t.Errorf("%s depends on %s: %s", p.ImportPath, d, r.why)
				}
			}
		}
	}
}

// The production binary never links the test-only servers.
func TestBinaryLinksNoTestServers(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.ImportPath != module+"/cmd/mpha" {
			continue
		}
		for _, d := range p.Deps {
			// The fake clientset's path is split so that a grep for fake clients finds only real uses.
			for _, banned := range []string{"github.com/nats-io/nats-server", "github.com/fluxcd/pkg/gittestserver", "k8s.io/client-go/kubernetes/" + "fake"} {
				if strings.HasPrefix(d, banned) {
					t.Errorf("cmd/mpha links %s", d)
				}
			}
		}
		return
	}
	t.Fatal("cmd/mpha not found")
}
