package pgcopy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// copyStream builds a binary COPY stream of rows of byte-string fields (nil is NULL).
func copyStream(rows ...[][]byte) []byte {
	var b bytes.Buffer
	b.Write(copySignature)
	b.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	for _, r := range rows {
		_ = binary.Write(&b, binary.BigEndian, int16(len(r)))
		for _, f := range r {
			if f == nil {
				_ = binary.Write(&b, binary.BigEndian, int32(-1))
				continue
			}
			_ = binary.Write(&b, binary.BigEndian, int32(len(f)))
			b.Write(f)
		}
	}
	_ = binary.Write(&b, binary.BigEndian, int16(-1))
	return b.Bytes()
}

func digestOf(t *testing.T, k keys, parts ...[]byte) (Digest, error) {
	t.Helper()
	g := newDigester(k)
	for _, p := range parts {
		if _, err := g.Write(p); err != nil {
			return Digest{}, err
		}
	}
	return g.digest()
}

// The digest does not depend on how the stream is cut into writes, nor on the rows' order; it
// does depend on every byte of every row.
func TestDigest(t *testing.T) {
	k := newKeys()
	r1 := [][]byte{[]byte("tenant1"), nil, {0, 1, 2}}
	r2 := [][]byte{[]byte("tenant2"), []byte(`{"a":1}`), {}}
	stream := copyStream(r1, r2)
	whole, err := digestOf(t, k, stream)
	if err != nil {
		t.Fatal(err)
	}
	if whole.Rows != 2 {
		t.Fatalf("rows = %d, want 2", whole.Rows)
	}
	for cut := 1; cut < len(stream); cut++ {
		d, err := digestOf(t, k, stream[:cut], stream[cut:])
		if err != nil || !d.Equal(whole) {
			t.Fatalf("cut at %d: %v, %v; want %v", cut, d, err, whole)
		}
	}
	swapped, _ := digestOf(t, k, copyStream(r2, r1))
	if !swapped.Equal(whole) {
		t.Error("the digest depends on the rows' order")
	}
	changed, _ := digestOf(t, k, copyStream(r1, [][]byte{[]byte("tenant2"), []byte(`{"a":2}`), {}}))
	if changed.Equal(whole) {
		t.Error("a changed field gave the same digest")
	}
	nulled, _ := digestOf(t, k, copyStream([][]byte{[]byte("tenant1"), {}, {0, 1, 2}}, r2))
	if nulled.Equal(whole) {
		t.Error("NULL and an empty value gave the same digest")
	}
	dup, _ := digestOf(t, k, copyStream(r1, r1, r2, r2))
	var twice Digest
	twice.Add(whole)
	twice.Add(whole)
	if !dup.Equal(twice) {
		t.Error("chunk digests do not add up")
	}
}

func TestDigestRefusesBrokenStreams(t *testing.T) {
	k := newKeys()
	stream := copyStream([][]byte{[]byte("x")})
	tests := map[string][]byte{
		"no signature":    append([]byte("COPY"), stream[4:]...),
		"truncated":       stream[:len(stream)-3],
		"no trailer":      stream[:len(stream)-2],
		"after trailer":   append(append([]byte{}, stream...), 0, 1),
		"bad field count": append(append([]byte{}, stream[:19]...), 0xff, 0xf0),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := digestOf(t, k, b); !errors.Is(err, errCopyFormat) {
				t.Errorf("err = %v, want errCopyFormat", err)
			}
		})
	}
}

// The parser takes arbitrary bytes from the network: it must not panic, and cutting the input
// anywhere gives the same verdict.
func FuzzDigester(f *testing.F) {
	f.Add(copyStream([][]byte{[]byte("a"), nil}), 3)
	f.Add(copyStream(), 0)
	f.Add([]byte("PGCOPY\n\377\r\n\x00\x00\x00\x00\x00\xff\xff\xff\xff"), 5)
	k := newKeys()
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		whole, errWhole := digestOf(t, k, b)
		if cut < 0 || cut > len(b) {
			return
		}
		parts, errParts := digestOf(t, k, b[:cut], b[cut:])
		if (errWhole == nil) != (errParts == nil) || (errWhole == nil && !whole.Equal(parts)) {
			t.Errorf("whole: %v %v; cut at %d: %v %v", whole, errWhole, cut, parts, errParts)
		}
	})
}
