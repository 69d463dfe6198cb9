package charts

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/doc"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/agent"
)

// Field is one key of the agent's configuration, as the reference and the schema show it.
type Field struct {
	// Path is the key path ("git.url"); Section is the top-level key it sits under ("" for the
	// top level's own scalars).
	Path, Section string
	// Type says what the value is, for people ("string", "duration", "list of strings", ...).
	Type string
	// Default is Config.Default's value, JSON-encoded; "" when it has none.
	Default string
	Doc     string
	Enum    []string
	// Secret marks a Secret's name (never the secret itself).
	Secret   bool
	Required bool
}

// Reference is the configuration's keys, the sections' docs and the JSON schema of the whole.
type Reference struct {
	Fields []Field
	// Sections holds each top-level object's type doc, by key.
	Sections map[string]string
	Schema   map[string]any
	// Defaults is Config.Default's result on an empty configuration, without secrets.names (which
	// follows kubernetes.installModel) and without empty values.
	Defaults map[string]any
	// SecretNames are the default secrets.names per install model.
	SecretNames map[string][]string
}

// required are the keys without which Config.Validate fails whatever else is set (the agreement
// test in chart_test.go proves each against Validate). The chart's templates require them
// (mpha.config.required), not its schema: `helm lint` validates the schema against the chart's
// own defaults, which cannot name a cluster, while it tolerates a template's `required`.
var required = []string{"cluster", "pair", "git.url", "nats.url"}

// patterns narrow strings that Validate checks as Kubernetes names (DNS-1123 label or subdomain).
const (
	labelPattern     = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	subdomainPattern = `^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	// durationPattern is what time.ParseDuration accepts, signs aside.
	durationPattern = `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
)

var labelKeys = map[string]bool{"cluster": true, "pair": true, "flux.namespace": true, "kubernetes.namespace": true,
	"sealedSecrets.controllerNamespace": true}

// BuildReference reads agent.Config by reflection, its defaults by calling Config.Default, its
// enumerations from agent.Enumerations, and the doc comments from the Go source under root (the
// module's root folder).
func BuildReference(root string) (*Reference, error) {
	docs, err := loadDocs(root)
	if err != nil {
		return nil, err
	}
	var c agent.Config
	c.Default()
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding the defaults: %w", err)
	}
	var defaults map[string]any
	if err := json.Unmarshal(raw, &defaults); err != nil {
		return nil, err
	}
	delete(defaults["secrets"].(map[string]any), "names")
	prune(defaults)
	w := &walker{docs: docs, defaults: defaults, enums: agent.Enumerations(), ref: &Reference{Sections: map[string]string{},
		Defaults: defaults, SecretNames: map[string][]string{}}}
	for _, m := range w.enums["kubernetes.installModel"] {
		w.ref.SecretNames[m] = agent.DefaultSecretNames(m)
	}
	w.ref.Schema = w.object(reflect.TypeFor[agent.Config](), "")
	w.ref.Schema["description"] = "The agent's configuration (agent.Config): rendered into the agent's ConfigMap. Secrets are named, never inlined."
	for path := range w.enums {
		if !slices.ContainsFunc(w.ref.Fields, func(f Field) bool { return f.Path == path }) {
			return nil, fmt.Errorf("agent.Enumerations names %q, which is not a configuration key", path)
		}
	}
	return w.ref, nil
}

type walker struct {
	docs     map[string]string
	defaults map[string]any
	enums    map[string][]string
	ref      *Reference
}

var durationType = reflect.TypeFor[metav1.Duration]()

// object is the schema of a struct, every field a property, nothing else allowed.
func (w *walker) object(t reflect.Type, prefix string) map[string]any {
	props := map[string]any{}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if !sf.IsExported() || name == "-" || name == "" {
			continue
		}
		path := join(prefix, name)
		doc := w.docs[t.PkgPath()+"."+t.Name()+"."+sf.Name]
		ft := deref(sf.Type)
		if ft.Kind() == reflect.Struct && ft != durationType {
			if prefix == "" {
				w.ref.Sections[name] = w.docs[ft.PkgPath()+"."+ft.Name()]
			}
			s := w.object(ft, path)
			s["description"] = firstSentence(cmpOr(doc, w.docs[ft.PkgPath()+"."+ft.Name()]))
			props[name] = s
			continue
		}
		s, typ := w.leaf(ft, path, sf.Name)
		f := Field{Path: path, Section: section(prefix), Type: typ, Doc: doc, Enum: w.enums[path],
			Secret: isSecretRef(sf.Name, ft), Required: slices.Contains(required, path)}
		if v, ok := lookup(w.defaults, path); ok {
			b, _ := json.Marshal(v)
			f.Default = string(b)
			s["default"] = v
		}
		if doc != "" {
			s["description"] = oneLine(doc)
		}
		props[name] = s
		w.ref.Fields = append(w.ref.Fields, f)
	}
	return map[string]any{"type": "object", "properties": props, "additionalProperties": false}
}

// leaf is the schema of a value that is not a nested section, and its type for people.
func (w *walker) leaf(t reflect.Type, path, goName string) (map[string]any, string) {
	switch {
	case t == durationType:
		return map[string]any{"type": "string", "pattern": durationPattern}, "duration"
	case t == reflect.TypeFor[time.Duration]():
		return map[string]any{"type": "integer"}, "nanoseconds"
	}
	switch t.Kind() {
	case reflect.String:
		s := map[string]any{"type": "string"}
		typ := "string"
		switch {
		case w.enums[path] != nil:
			s["enum"] = w.enums[path]
			typ = "one of " + strings.Join(w.enums[path], ", ")
		case isSecretRef(goName, t):
			s["pattern"] = "^$|^" + subdomainPattern[1:]
			s["maxLength"] = 253
			typ = "Secret name"
		case labelKeys[path]:
			s["pattern"], s["maxLength"] = labelPattern, 63
		}
		return s, typ
	case reflect.Bool:
		return map[string]any{"type": "boolean"}, "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}, "integer"
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}, "number"
	case reflect.Slice, reflect.Array:
		et := deref(t.Elem())
		if et.Kind() == reflect.Struct && et != durationType {
			return map[string]any{"type": "array", "items": w.object(et, path+"[]")}, "list of objects"
		}
		items, typ := w.leaf(et, path+"[]", "")
		return map[string]any{"type": "array", "items": items}, "list of " + plural(typ)
	case reflect.Map:
		et := deref(t.Elem())
		if et.Kind() == reflect.Interface {
			return map[string]any{"type": "object"}, "map"
		}
		items, typ := w.leaf(et, path+".*", "")
		return map[string]any{"type": "object", "additionalProperties": items}, "map of " + plural(typ)
	}
	return map[string]any{}, "any"
}

func plural(typ string) string {
	if strings.HasPrefix(typ, "one of") || strings.HasPrefix(typ, "list") || strings.HasPrefix(typ, "map") {
		return typ
	}
	return typ + "s"
}

// isSecretRef: a string field named ...Secret holds a Secret's name.
func isSecretRef(goName string, t reflect.Type) bool {
	return t.Kind() == reflect.String && strings.HasSuffix(goName, "Secret")
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func section(prefix string) string {
	s, _, _ := strings.Cut(prefix, ".")
	return s
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func lookup(m map[string]any, path string) (any, bool) {
	var cur any = m
	for p := range strings.SplitSeq(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = mm[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// prune drops empty values: the defaults hold only what Default sets.
func prune(m map[string]any) {
	for k, v := range m {
		switch x := v.(type) {
		case map[string]any:
			prune(x)
			if len(x) == 0 {
				delete(m, k)
			}
		case nil:
			delete(m, k)
		case string:
			if x == "" {
				delete(m, k)
			}
		case bool:
			if !x {
				delete(m, k)
			}
		case float64:
			if x == 0 {
				delete(m, k)
			}
		case []any:
			if len(x) == 0 {
				delete(m, k)
			}
		}
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func firstSentence(s string) string {
	s = oneLine(s)
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}

// loadDocs reads the doc comments of every struct type and field in the module's agent and
// gitops packages, keyed "<import path>.<Type>" and "<import path>.<Type>.<Field>".
func loadDocs(root string) (map[string]string, error) {
	const module = "github.com/mpha-dev/mpha"
	out := map[string]string{}
	for _, top := range []string{"agent", "gitops"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(dir string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			rel, _ := filepath.Rel(root, dir)
			return readDocs(dir, module+"/"+filepath.ToSlash(rel), out)
		})
		if err != nil {
			return nil, fmt.Errorf("reading doc comments: %w", err)
		}
	}
	return out, nil
}

func readDocs(dir, importPath string, out map[string]string) error {
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var files []*ast.File
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.ParseComments)
			if err != nil {
				return err
			}
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return nil
	}
	p, err := doc.NewFromFiles(fset, files, importPath, doc.PreserveAST)
	if err != nil {
		return err
	}
	for _, t := range p.Types {
		out[importPath+"."+t.Name] = strings.TrimSpace(t.Doc)
		for _, spec := range t.Decl.Specs {
			ts, ok := spec.(*ast.TypeSpec)
			if !ok {
				continue
			}
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				continue
			}
			for _, f := range st.Fields.List {
				text := strings.TrimSpace(f.Doc.Text())
				if text == "" {
					text = strings.TrimSpace(f.Comment.Text())
				}
				for _, n := range f.Names {
					out[importPath+"."+ts.Name.Name+"."+n.Name] = text
				}
			}
		}
	}
	return nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
