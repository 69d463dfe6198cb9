// Package strictyaml decodes YAML documents that people write (configuration, pair.yaml) strictly:
// duplicate keys, unknown keys and keys whose case differs from the field's are errors that name
// the key, and a value of the wrong type or form is an error that names its field's path. It
// imports nothing of mpha.
package strictyaml

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Unmarshal decodes b into v (a pointer to a struct with json tags). YAML → JSON refuses
// duplicate keys; sigs.k8s.io/json then refuses unknown keys and, unlike encoding/json, mis-cased
// ones ("maxlag" is not maxLag). Each value that does not decode is reported as a *FieldError.
func Unmarshal(b []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(j, v, kjson.DisallowUnknownFields)
	if err != nil {
		// The decoder stops at the first bad value, names its field in Go's words, and not at
		// all when a field's own decoder fails (`time: invalid duration "banana"`): find every
		// bad value again, by its path.
		var fes []error
		locate(j, reflect.TypeOf(v), "", &fes)
		if len(fes) == 0 {
			return err
		}
		return errors.Join(fes...)
	}
	return errors.Join(strict...)
}

// FieldError is a value that does not decode into its field.
type FieldError struct {
	// Path is the field's path in the document ("heartbeatInterval", "health.probes[0].name").
	Path string
	// Msg says what is wrong ("invalid duration \"banana\"", "want an integer, got a string").
	Msg string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return "the document: " + e.Msg
	}
	return e.Path + ": " + e.Msg
}

// locate walks the JSON document along type t and appends a *FieldError for each value that
// does not decode, in field order.
func locate(raw json.RawMessage, t reflect.Type, path string, errs *[]error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isNull(raw) {
		return
	}
	if reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) || t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
		add(errs, decodeLeaf(raw, t, path)) // its own decoder, or base64 bytes
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			add(errs, mismatch(raw, t, path))
			return
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, inline := jsonName(f)
			if inline { // an embedded struct's fields are the parent's (metav1.TypeMeta)
				locate(raw, f.Type, path, errs)
				continue
			}
			if name == "" {
				continue
			}
			if v, ok := obj[name]; ok {
				locate(v, f.Type, join(path, name), errs)
			}
		}
	case reflect.Slice, reflect.Array:
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) != nil {
			add(errs, mismatch(raw, t, path))
			return
		}
		for i, e := range list {
			locate(e, t.Elem(), path+"["+strconv.Itoa(i)+"]", errs)
		}
	case reflect.Map:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			add(errs, mismatch(raw, t, path))
			return
		}
		for _, k := range slices.Sorted(maps.Keys(obj)) {
			locate(obj[k], t.Elem(), join(path, k), errs)
		}
	default:
		add(errs, decodeLeaf(raw, t, path))
	}
}

func add(errs *[]error, fe *FieldError) {
	if fe != nil {
		*errs = append(*errs, fe)
	}
}

// decodeLeaf decodes one value on its own, and says why it does not.
func decodeLeaf(raw json.RawMessage, t reflect.Type, path string) *FieldError {
	err := json.Unmarshal(raw, reflect.New(t).Interface())
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return mismatch(raw, t, path)
	}
	// A field's own decoder speaks for it; "time: " only names the package that said it.
	return &FieldError{Path: path, Msg: strings.TrimPrefix(err.Error(), "time: ")}
}

func mismatch(raw json.RawMessage, t reflect.Type, path string) *FieldError {
	return &FieldError{Path: path, Msg: fmt.Sprintf("want %s, got %s", want(t), got(raw))}
}

// want describes what a Go type accepts, in the words of a YAML file.
func want(t reflect.Type) string {
	if reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
		if t.Name() == "Duration" {
			return `a duration such as "10s" or "1m30s"`
		}
		return "a " + strings.ToLower(t.Name())
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("an integer (%d bits)", t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("a non-negative integer (%d bits)", t.Bits())
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a map"
	}
	return t.String()
}

// got describes a JSON value by its kind, and a short number by itself.
func got(raw json.RawMessage) string {
	s := strings.TrimSpace(string(raw))
	switch {
	case strings.HasPrefix(s, "{"):
		return "a map"
	case strings.HasPrefix(s, "["):
		return "a list"
	case strings.HasPrefix(s, `"`):
		return "a string" // not echoed: it may be a credential in the wrong place
	case s == "true" || s == "false":
		return s
	}
	if len(s) > 32 {
		return "a number"
	}
	return "the number " + s
}

func isNull(raw json.RawMessage) bool { return strings.TrimSpace(string(raw)) == "null" }

// jsonName is the key of a struct field, as encoding/json names it; inline for an embedded
// struct without a name of its own.
func jsonName(f reflect.StructField) (name string, inline bool) {
	name, _, _ = strings.Cut(f.Tag.Get("json"), ",")
	if f.Anonymous && name == "" {
		t := f.Type
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		return "", t.Kind() == reflect.Struct
	}
	switch {
	case !f.IsExported() || name == "-":
		return "", false
	case name == "":
		return f.Name, false
	}
	return name, false
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
