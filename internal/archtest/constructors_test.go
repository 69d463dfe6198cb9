package archtest

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// constructors are the functions that set up an outside part, and the one production file that
// may call each (docs/design.md §9: each outside part is set up in one place, shared by the agent
// and the CLI). A second caller is a second set-up that can drift from the first: the CLI's copy of the Git
// writer once committed unsigned where the agent signed.
var constructors = []struct{ pkg, fn, file string }{
	{"gitops/gitrepo", "New", "agent/git.go"},
	{"gitops/gitrepo", "NewAuth", "agent/git.go"},
	{"gitops/gitrepo", "NewSigner", "agent/git.go"},
}

func TestOneConstructorPerOutsidePart(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Dir,GoFiles", module+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	moduleDir := strings.TrimSpace(string(root))
	calls := 0
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			ImportPath, Dir string
			GoFiles         []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		for _, name := range p.GoFiles {
			path := filepath.Join(p.Dir, name)
			rel, err := filepath.Rel(moduleDir, path)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range constructorCalls(t, path) {
				calls++
				if c.file = filepath.ToSlash(rel); !allowedCaller(c) {
					t.Errorf("%s calls %s.%s: only %s may; build it from there", c.file, c.pkg, c.fn, allowedFile(c))
				}
			}
		}
	}
	if calls == 0 {
		t.Error("found no call of a constructor: the check proves nothing")
	}
}

type call struct{ pkg, fn, file string }

// constructorCalls lists the calls in file of the functions in constructors.
func constructorCalls(t *testing.T, file string) []call {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{} // the name a file gives an import → its path under the module
	for _, imp := range f.Imports {
		path, _ := strconv.Unquote(imp.Path.Value)
		rel, ok := strings.CutPrefix(path, module+"/")
		if !ok {
			continue
		}
		name := rel[strings.LastIndex(rel, "/")+1:]
		if imp.Name != nil {
			name = imp.Name.Name
		}
		names[name] = rel
	}
	var out []call
	ast.Inspect(f, func(n ast.Node) bool {
		sel, ok := n.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		id, ok := sel.X.(*ast.Ident)
		if !ok {
			return true
		}
		for _, c := range constructors {
			if names[id.Name] == c.pkg && sel.Sel.Name == c.fn {
				out = append(out, call{pkg: c.pkg, fn: c.fn})
			}
		}
		return true
	})
	return out
}

func allowedCaller(c call) bool { return allowedFile(c) == c.file }

func allowedFile(c call) string {
	for _, k := range constructors {
		if k.pkg == c.pkg && k.fn == c.fn {
			return k.file
		}
	}
	return ""
}
