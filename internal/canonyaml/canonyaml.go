// Package canonyaml encodes values as YAML with a total, stable key order: map keys sorted
// byte-wise, as encoding/json sorts them. sigs.k8s.io/yaml sorts keys with the YAML library's
// "natural" order, which is not a strict order for keys such as "1B", "2" and "170": the result
// then depends on Go's random map order, and an unchanged input could produce a new commit.
package canonyaml

import (
	"bytes"
	"encoding/json"
	"fmt"

	yaml2 "go.yaml.in/yaml/v2"
	yaml "go.yaml.in/yaml/v3"
)

// Marshal encodes v (anything encoding/json accepts, honouring json tags) as block-style YAML.
func Marshal(v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding to JSON: %w", err)
	}
	// JSON is YAML: decoding it into a node keeps encoding/json's sorted key order.
	var doc yaml.Node
	if err := yaml.Unmarshal(j, &doc); err != nil {
		return nil, fmt.Errorf("reading JSON as YAML: %w", err)
	}
	plain(&doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encoding YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding YAML: %w", err)
	}
	return buf.Bytes(), nil
}

// plain drops the flow and quoting styles JSON brought, so the encoder writes block style and
// quotes only the strings that need it. The encoder quotes what YAML 1.2 would misread ("170");
// strings YAML 1.1 would misread ("yes", "on", "1:20") are quoted here, because Helm and
// sigs.k8s.io/yaml read YAML 1.1.
func plain(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && !plainIsString11(n.Value) {
		n.Style = yaml.DoubleQuotedStyle
	}
	for _, c := range n.Content {
		plain(c)
	}
}

// plainIsString11 reports whether s, written plain, reads back as the same string in YAML 1.1.
func plainIsString11(s string) bool {
	var v any
	if err := yaml2.Unmarshal([]byte(s), &v); err != nil {
		return false
	}
	got, ok := v.(string)
	return ok && got == s
}
