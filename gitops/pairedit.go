package gitops

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v3"

	"github.com/mpha-dev/mpha/internal/canonyaml"
)

// EditPair returns raw, a pair.yaml, with next's active, epoch and lastFailover: the fields a
// failover changes. pair.yaml is written by a person and then edited by failovers, so the rest
// stays as that person wrote it: the values are set in raw's yaml.v3 node tree, which keeps key
// order, comments and each value's quoting and flow style (spacing and indentation are yaml.v3's,
// two spaces). An edit that changes nothing returns raw's exact bytes, so an unchanged pair never
// makes a commit. next must equal raw's pair in every other field.
func EditPair(raw []byte, next *Pair) ([]byte, error) {
	cur, err := ParsePair(raw)
	if err != nil {
		return nil, err
	}
	if err := next.Validate(); err != nil {
		return nil, err
	}
	if !sameMembers(cur, next) {
		return nil, errors.New("editing pair.yaml: only active, epoch and lastFailover may change")
	}
	if cur.LastFailover != nil && next.LastFailover == nil {
		return nil, errors.New("editing pair.yaml: lastFailover may be replaced, not removed")
	}
	if sameState(cur, next) {
		return raw, nil
	}
	out, err := editNodes(raw, next)
	if err == nil {
		err = holds(out, next)
	}
	if err != nil {
		return nil, fmt.Errorf("editing pair.yaml: %w", err)
	}
	return out, nil
}

// sameMembers reports whether a and b agree on everything a failover leaves alone.
func sameMembers(a, b *Pair) bool {
	return a.APIVersion == b.APIVersion && a.Kind == b.Kind && a.Name == b.Name &&
		a.FloatingFQDN == b.FloatingFQDN && sameTTL(a, b) && slices.Equal(a.Clusters, b.Clusters)
}

// sameTTL reports whether a and b set the same floatingTTL, or both leave it unset: an edit that
// dropped or added the key would change the record both agents render.
func sameTTL(a, b *Pair) bool {
	if a.FloatingTTL == nil || b.FloatingTTL == nil {
		return a.FloatingTTL == nil && b.FloatingTTL == nil
	}
	return a.FloatingTTL.Duration == b.FloatingTTL.Duration
}

// sameState reports whether a and b agree on what a failover changes.
func sameState(a, b *Pair) bool {
	if a.Active != b.Active || a.Epoch != b.Epoch || (a.LastFailover == nil) != (b.LastFailover == nil) {
		return false
	}
	x, y := a.LastFailover, b.LastFailover
	return x == nil || (x.Event == y.Event && x.From == y.From && x.To == y.To && x.At.Equal(y.At))
}

// holds checks that out is a valid pair.yaml holding want: the edit's own proof.
func holds(out []byte, want *Pair) error {
	got, err := ParsePair(out)
	if err != nil {
		return err
	}
	if !sameMembers(got, want) || !sameState(got, want) {
		return errors.New("the edited file does not read back as the pair intended")
	}
	return nil
}

// failoverFields are lastFailover's keys in the order mpha writes them.
var failoverFields = []string{"event", "from", "to", "at"}

func failoverValues(f *Failover) map[string]string {
	return map[string]string{"event": f.Event, "from": f.From, "to": f.To, "at": f.At.UTC().Format(time.RFC3339)}
}

// editNodes sets next's state in raw's node tree and encodes it again.
func editNodes(raw []byte, next *Pair) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("pair.yaml is not one mapping")
	}
	top := doc.Content[0]
	setScalar(top, "active", next.Active, "!!str")
	setScalar(top, "epoch", strconv.FormatInt(next.Epoch, 10), "!!int")
	lf := lookup(top, "lastFailover")
	if lf == nil || lf.Kind != yaml.MappingNode {
		// Absent, null or not a mapping: a block mapping of its own, comments kept.
		fresh := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if lf != nil {
			fresh.HeadComment, fresh.LineComment, fresh.FootComment = lf.HeadComment, lf.LineComment, lf.FootComment
		}
		setValue(top, "lastFailover", fresh)
		lf = fresh
	}
	values := failoverValues(next.LastFailover)
	for _, k := range failoverFields {
		setScalar(lf, k, values[k], "!!str")
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// lookup returns the value of key in mapping m, or nil.
func lookup(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// setScalar sets key's value in mapping m to value. An existing scalar keeps its quoting unless
// that is plain and the value would not read back as the same string in YAML 1.1 and 1.2
// (canonyaml's rule: "yes" is a bool to YAML 1.1), which then gets double quotes; a key that is
// missing, or holds something else, gets a new scalar.
func setScalar(m *yaml.Node, key, value, tag string) {
	style := yaml.Style(0)
	if old := lookup(m, key); old != nil && old.Kind == yaml.ScalarNode {
		style = old.Style &^ (yaml.TaggedStyle | yaml.LiteralStyle | yaml.FoldedStyle)
	}
	if style == 0 && tag == "!!str" && needsQuotes(value) {
		style = yaml.DoubleQuotedStyle
	}
	setValue(m, key, &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value, Style: style})
}

// needsQuotes reports whether canonyaml quotes value: a plain scalar would read back as another
// type or string somewhere.
func needsQuotes(value string) bool {
	b, err := canonyaml.Marshal(value)
	return err != nil || strings.HasPrefix(string(b), `"`) || strings.HasPrefix(string(b), `'`)
}

// setValue replaces the value of key in mapping m, keeping the comments around the old one, or
// appends the key.
func setValue(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			old := m.Content[i+1]
			v.HeadComment, v.LineComment, v.FootComment = old.HeadComment, old.LineComment, old.FootComment
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}
