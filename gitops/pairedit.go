package gitops

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"

	"github.com/mpha-dev/mpha/internal/canonyaml"
)

// EditPair returns raw, a pair.yaml, with next's active, epoch and lastFailover: the fields a
// failover changes. pair.yaml is written by a person and then edited by failovers, so the rest
// stays as that person wrote it: key order, comments, quoting, blank lines. Each changed value is
// replaced where it stands and a missing lastFailover is appended; only a file whose values
// cannot be found that way (tags, anchors, escapes, a null lastFailover) is re-encoded through
// yaml.v3, which still keeps its comments and key order. An edit that changes nothing returns
// raw's exact bytes, so an unchanged pair never makes a commit. next must equal raw's pair in
// every other field.
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
	out, spliceErr := splicePair(raw, next)
	if spliceErr == nil {
		spliceErr = holds(out, next)
	}
	if spliceErr == nil {
		return out, nil
	}
	out, err = reencodePair(raw, next)
	if err == nil {
		err = holds(out, next)
	}
	if err != nil {
		return nil, fmt.Errorf("editing pair.yaml: %w (in place: %v)", err, spliceErr)
	}
	return out, nil
}

// sameMembers reports whether a and b agree on everything a failover leaves alone.
func sameMembers(a, b *Pair) bool {
	return a.APIVersion == b.APIVersion && a.Kind == b.Kind && a.Name == b.Name &&
		a.FloatingFQDN == b.FloatingFQDN && slices.Equal(a.Clusters, b.Clusters)
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

// splice is one replacement of raw[from:to].
type splice struct {
	from, to int
	text     string
}

// splicePair replaces the changed values in raw's text, each within its own bytes.
func splicePair(raw []byte, next *Pair) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode ||
		doc.Content[0].Style&yaml.FlowStyle != 0 {
		return nil, errors.New("not a block mapping")
	}
	idx := newLineIndex(raw)
	edits, err := stateEdits(idx, doc.Content[0], next)
	if err != nil {
		return nil, err
	}
	lf, err := failoverEdits(idx, doc.Content[0], next.LastFailover)
	if err != nil {
		return nil, err
	}
	edits = append(edits, lf...)
	slices.SortFunc(edits, func(a, b splice) int { return b.from - a.from })
	out := slices.Clone(raw)
	for _, e := range edits {
		out = slices.Concat(out[:e.from], []byte(e.text), out[e.to:])
	}
	return out, nil
}

// stateEdits are the splices of active and epoch.
func stateEdits(idx lineIndex, top *yaml.Node, next *Pair) ([]splice, error) {
	var edits []splice
	for _, e := range []struct {
		key, value string
		isString   bool
	}{{"active", next.Active, true}, {"epoch", fmt.Sprint(next.Epoch), false}} {
		v := lookup(top, e.key)
		if v == nil {
			return nil, fmt.Errorf("%s: not found", e.key)
		}
		s, err := idx.replace(v, e.value, e.isString)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.key, err)
		}
		edits = append(edits, s...)
	}
	return edits, nil
}

// failoverEdits are the splices of lastFailover: its four values replaced, or the whole mapping
// appended at the end of the file.
func failoverEdits(idx lineIndex, top *yaml.Node, f *Failover) ([]splice, error) {
	want := failoverValues(f)
	lf := lookup(top, "lastFailover")
	switch {
	case lf == nil:
		block, err := failoverBlock(want, top.Content[0].Column-1)
		if err != nil {
			return nil, err
		}
		end := len(idx.raw)
		if end > 0 && idx.raw[end-1] != '\n' {
			block = "\n" + block
		}
		return []splice{{end, end, block}}, nil
	case lf.Kind != yaml.MappingNode:
		return nil, errors.New("lastFailover: not a mapping")
	}
	var edits []splice
	for _, k := range failoverFields {
		v := lookup(lf, k)
		if v == nil {
			return nil, fmt.Errorf("lastFailover.%s: not found", k)
		}
		s, err := idx.replace(v, want[k], true)
		if err != nil {
			return nil, fmt.Errorf("lastFailover.%s: %w", k, err)
		}
		edits = append(edits, s...)
	}
	return edits, nil
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

// replace is the splice that writes value over scalar node v, in v's quoting style, or none
// when v already holds it. It refuses a scalar whose text is not its value verbatim (escapes,
// tags, several lines): its extent in raw would be a guess.
func (idx lineIndex) replace(v *yaml.Node, value string, isString bool) ([]splice, error) {
	if v.Kind != yaml.ScalarNode {
		return nil, errors.New("not a scalar")
	}
	if v.Value == value {
		return nil, nil
	}
	var quote string
	switch {
	case v.Style == yaml.DoubleQuotedStyle:
		quote = `"`
	case v.Style == yaml.SingleQuotedStyle:
		quote = `'`
	case v.Style != 0:
		return nil, errors.New("not a plain or quoted scalar")
	}
	old := quote + v.Value + quote
	from, ok := idx.offset(v.Line, v.Column)
	if !ok || !bytes.HasPrefix(idx.raw[from:], []byte(old)) || strings.ContainsAny(v.Value, "\n\\'\"") {
		return nil, errors.New("its text is not its value verbatim")
	}
	text, err := scalarText(value, isString, v.Style)
	if err != nil {
		return nil, err
	}
	return []splice{{from, from + len(old), text}}, nil
}

// scalarText renders value as one YAML scalar: in style if quoted; else plain when YAML 1.1 and
// 1.2 both read it back as itself (canonyaml's rule), double-quoted otherwise.
func scalarText(value string, isString bool, style yaml.Style) (string, error) {
	var b []byte
	var err error
	switch {
	case style == yaml.DoubleQuotedStyle || style == yaml.SingleQuotedStyle:
		b, err = yaml.Marshal(&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value, Style: style})
	case isString:
		b, err = canonyaml.Marshal(value)
	default:
		b = []byte(value)
	}
	if err != nil {
		return "", fmt.Errorf("rendering %q: %w", value, err)
	}
	text := strings.TrimSuffix(string(b), "\n")
	if strings.Contains(text, "\n") {
		return "", fmt.Errorf("rendering %q: it takes several lines", value)
	}
	return text, nil
}

// failoverBlock is lastFailover as a block mapping whose key starts at column indent.
func failoverBlock(values map[string]string, indent int) (string, error) {
	pad := strings.Repeat(" ", indent)
	var b strings.Builder
	b.WriteString(pad + "lastFailover:\n")
	for _, k := range failoverFields {
		text, err := scalarText(values[k], true, 0)
		if err != nil {
			return "", err
		}
		b.WriteString(pad + "  " + k + ": " + text + "\n")
	}
	return b.String(), nil
}

// lineIndex maps yaml.v3's positions (1-based line, 1-based column counted in characters) to
// byte offsets in raw.
type lineIndex struct {
	raw    []byte
	starts []int
}

func newLineIndex(raw []byte) lineIndex {
	idx := lineIndex{raw: raw, starts: []int{0}}
	for i, c := range raw {
		if c == '\n' {
			idx.starts = append(idx.starts, i+1)
		}
	}
	return idx
}

func (idx lineIndex) offset(line, column int) (int, bool) {
	if line < 1 || line > len(idx.starts) || column < 1 {
		return 0, false
	}
	off := idx.starts[line-1]
	for range column - 1 {
		r, n := utf8.DecodeRune(idx.raw[off:])
		if n == 0 || r == '\n' {
			return 0, false
		}
		off += n
	}
	return off, true
}

// reencodePair sets the values in raw's yaml.v3 node tree and encodes it again: comments and key
// order survive, layout may not. It is the way for what splicePair cannot place.
func reencodePair(raw []byte, next *Pair) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("pair.yaml is not one mapping")
	}
	top := doc.Content[0]
	set(top, "active", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: next.Active})
	set(top, "epoch", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: fmt.Sprint(next.Epoch)})
	lf := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	values := failoverValues(next.LastFailover)
	for _, k := range failoverFields {
		text, err := scalarText(values[k], true, 0)
		if err != nil {
			return nil, err
		}
		// canonyaml's choice, as in place: yaml.v3 alone would leave "yes" plain, a bool in YAML 1.1.
		var style yaml.Style
		if strings.HasPrefix(text, `"`) {
			style = yaml.DoubleQuotedStyle
		}
		lf.Content = append(lf.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: values[k], Style: style})
	}
	set(top, "lastFailover", lf)
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

// set replaces the value of key in mapping m, keeping the comments around the old one, or
// appends the key.
func set(m *yaml.Node, key string, v *yaml.Node) {
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
