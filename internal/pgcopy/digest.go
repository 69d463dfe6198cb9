package pgcopy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
)

// Digest is an order-independent checksum of a table's rows: the count and two sums (mod 2^64)
// of a keyed 64-bit hash of each row's binary COPY representation. The source's is taken from
// the stream as it is copied, the target's by reading the loaded table back; equal digests mean
// the same multiset of rows, whatever order or how many streams loaded them. The keys are drawn
// for each sync and never leave the process, so the sums say nothing about the data.
type Digest struct {
	Rows   int64
	Sum    [2]uint64
	Bytes  int64 // size of the binary stream, headers included
	chunks int
}

// Add merges another stream's digest of the same table (a chunk of it).
func (d *Digest) Add(o Digest) {
	d.Rows += o.Rows
	d.Sum[0] += o.Sum[0]
	d.Sum[1] += o.Sum[1]
	d.Bytes += o.Bytes
	d.chunks++
}

// Equal compares the rows and sums (not the bytes: chunks repeat the header).
func (d Digest) Equal(o Digest) bool { return d.Rows == o.Rows && d.Sum == o.Sum }

func (d Digest) String() string {
	return fmt.Sprintf("%d rows, %016x%016x", d.Rows, d.Sum[0], d.Sum[1])
}

// keys are the two hash seeds of one sync.
type keys [2]maphash.Seed

func newKeys() keys { return keys{maphash.MakeSeed(), maphash.MakeSeed()} }

var copySignature = []byte("PGCOPY\n\377\r\n\x00")

// errCopyFormat is a stream that is not binary COPY as PostgreSQL writes it.
var errCopyFormat = errors.New("malformed binary COPY stream")

// digester is an io.Writer that parses a binary COPY stream (header, tuples, trailer) and hashes
// each tuple; it keeps the unparsed tail of one write for the next.
type digester struct {
	keys   keys
	d      Digest
	buf    []byte
	header bool
	done   bool
}

func newDigester(k keys) *digester { return &digester{keys: k} }

func (g *digester) Write(p []byte) (int, error) {
	g.d.Bytes += int64(len(p))
	if len(g.buf) == 0 {
		// The usual case: PostgreSQL sends one row per message, so parse in place.
		n, err := g.parse(p)
		if err != nil {
			return 0, err
		}
		g.buf = append(g.buf, p[n:]...)
		return len(p), nil
	}
	g.buf = append(g.buf, p...)
	n, err := g.parse(g.buf)
	if err != nil {
		return 0, err
	}
	// Keep the tail; copy it down so that buf does not grow without bound.
	g.buf = g.buf[:copy(g.buf, g.buf[n:])]
	return len(p), nil
}

// parse consumes whole items from b and returns how many bytes it used.
func (g *digester) parse(b []byte) (int, error) {
	used := 0
	if !g.header {
		if len(b) < len(copySignature)+8 {
			return 0, nil
		}
		if !bytes.Equal(b[:len(copySignature)], copySignature) {
			return 0, fmt.Errorf("%w: no signature", errCopyFormat)
		}
		ext := int(binary.BigEndian.Uint32(b[len(copySignature)+4:]))
		if len(b) < len(copySignature)+8+ext {
			return 0, nil
		}
		used = len(copySignature) + 8 + ext
		g.header = true
	}
	for used+2 <= len(b) {
		if g.done {
			return 0, fmt.Errorf("%w: data after the trailer", errCopyFormat)
		}
		fields := int16(binary.BigEndian.Uint16(b[used:]))
		if fields == -1 {
			g.done = true
			used += 2
			continue
		}
		if fields < 0 {
			return 0, fmt.Errorf("%w: field count %d", errCopyFormat, fields)
		}
		end, ok := tupleEnd(b, used+2, int(fields))
		if !ok {
			break
		}
		row := b[used:end]
		g.d.Rows++
		g.d.Sum[0] += maphash.Bytes(g.keys[0], row)
		g.d.Sum[1] += maphash.Bytes(g.keys[1], row)
		used = end
	}
	return used, nil
}

// tupleEnd finds where a tuple of n fields starting at off ends; false when b holds only part of it.
func tupleEnd(b []byte, off, n int) (int, bool) {
	for range n {
		if off+4 > len(b) {
			return 0, false
		}
		l := int32(binary.BigEndian.Uint32(b[off:]))
		off += 4
		if l > 0 {
			off += int(l)
		}
	}
	return off, off <= len(b)
}

// digest returns the stream's digest; an unfinished stream is an error.
func (g *digester) digest() (Digest, error) {
	if !g.done || len(g.buf) > 0 {
		return g.d, fmt.Errorf("%w: the stream ended without its trailer", errCopyFormat)
	}
	return g.d, nil
}
