// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

// A fast path for decoding blktab records.
//
// Decoding bucket records with the general pickle decoder is most of the
// cost of an Update (a persistent reference per entry, a memo keyed by
// strings, an allocation per value). The records genuine ZODB writes use a
// handful of opcodes; this small stack machine runs those, without
// allocating per value, and gives up (ok=false) on anything else, leaving
// the record to the general decoder. The fuzz test checks that both agree
// whenever the fast path answers.

import (
	"bytes"
	"encoding/binary"
	"sync"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// fkind is the kind of a value of the fast machine.
type fkind uint8

const (
	fMark fkind = iota + 1
	fNone
	fInt
	fBytes // bytes or py2 str: rec[off:off+n]
	fStr   // unicode: rec[off:off+n]
	fClass // rec[off:off+n] = "module\nname"
	fTuple // items [i, i+n) of the arena
	fRef   // persistent reference: i = oid, class as fClass (n = 0: not given)
)

type fval struct {
	kind fkind
	n    int32
	off  int32
	i    int64
}

// class paths as GLOBAL writes them
var (
	globalLOBTree  = []byte("BTrees.LOBTree\nLOBTree")
	globalLOBucket = []byte("BTrees.LOBTree\nLOBucket")
)

// fmachine decodes a record: class pickle, then state pickle, one memo.
type fmachine struct {
	rec   []byte // < 2 GiB
	pos   int
	stack []fval
	memo  []fval
	nmemo int // entries set in memo
	arena []fval
}

// run executes one pickle up to STOP and returns its value.
func (m *fmachine) run() (fval, bool) {
	m.stack = m.stack[:0]
	rec := m.rec
	for m.pos < len(rec) {
		op := rec[m.pos]
		m.pos++
		switch op {
		case 0x80: // PROTO
			v, ok := m.read(1)
			if !ok || v[0] > 5 {
				return fval{}, false
			}
		case 0x95: // FRAME
			m.pos += 8
		case '(': // MARK
			m.push(fval{kind: fMark})
		case ')': // EMPTY_TUPLE
			m.push(fval{kind: fTuple, i: int64(len(m.arena))})
		case 'N':
			m.push(fval{kind: fNone})
		case 'K': // BININT1
			b, ok := m.read(1)
			if !ok {
				return fval{}, false
			}
			m.push(fval{kind: fInt, i: int64(b[0])})
		case 'M': // BININT2
			b, ok := m.read(2)
			if !ok {
				return fval{}, false
			}
			m.push(fval{kind: fInt, i: int64(binary.LittleEndian.Uint16(b))})
		case 'J': // BININT
			b, ok := m.read(4)
			if !ok {
				return fval{}, false
			}
			m.push(fval{kind: fInt, i: int64(int32(binary.LittleEndian.Uint32(b)))})
		case 0x8a: // LONG1
			n, ok := m.read(1)
			if !ok || n[0] > 8 {
				return fval{}, false
			}
			b, ok := m.read(int(n[0]))
			if !ok {
				return fval{}, false
			}
			var v int64
			for i := len(b) - 1; i >= 0; i-- {
				v = v<<8 | int64(b[i])
			}
			if len(b) > 0 && len(b) < 8 && b[len(b)-1]&0x80 != 0 {
				v -= 1 << (8 * len(b)) // negative
			}
			m.push(fval{kind: fInt, i: v})
		case 'C', 'U', 0x8c: // SHORT_BINBYTES, SHORT_BINSTRING, SHORT_BINUNICODE
			n, ok := m.read(1)
			if !ok {
				return fval{}, false
			}
			b, ok := m.read(int(n[0]))
			if !ok {
				return fval{}, false
			}
			kind := fBytes
			if op == 0x8c {
				kind = fStr
			}
			m.push(fval{kind: kind, off: int32(m.pos - len(b)), n: int32(len(b))})
		case 'B', 'T', 'X': // BINBYTES, BINSTRING, BINUNICODE
			n, ok := m.read(4)
			if !ok {
				return fval{}, false
			}
			b, ok := m.read(int(binary.LittleEndian.Uint32(n)))
			if !ok {
				return fval{}, false
			}
			kind := fBytes
			if op == 'X' {
				kind = fStr
			}
			m.push(fval{kind: kind, off: int32(m.pos - len(b)), n: int32(len(b))})
		case 'c': // GLOBAL module\nname\n
			i := bytes.IndexByte(rec[m.pos:], '\n')
			if i < 0 {
				return fval{}, false
			}
			j := bytes.IndexByte(rec[m.pos+i+1:], '\n')
			if j < 0 {
				return fval{}, false
			}
			m.push(fval{kind: fClass, off: int32(m.pos), n: int32(i + 1 + j)})
			m.pos += i + 1 + j + 1
		case 'q', 'r', 0x94: // BINPUT, LONG_BINPUT, MEMOIZE
			var idx int
			switch op {
			case 'q':
				b, ok := m.read(1)
				if !ok {
					return fval{}, false
				}
				idx = int(b[0])
			case 'r':
				b, ok := m.read(4)
				if !ok {
					return fval{}, false
				}
				idx = int(binary.LittleEndian.Uint32(b))
			default:
				idx = m.nmemo
			}
			if len(m.stack) == 0 || m.stack[len(m.stack)-1].kind == fMark || idx > len(m.memo)+1024 {
				return fval{}, false
			}
			for len(m.memo) <= idx {
				m.memo = append(m.memo, fval{})
			}
			if m.memo[idx].kind == 0 {
				m.nmemo++
			} else if op == 0x94 {
				return fval{}, false
			}
			m.memo[idx] = m.stack[len(m.stack)-1]
		case 'h', 'j': // BINGET, LONG_BINGET
			var idx int
			if op == 'h' {
				b, ok := m.read(1)
				if !ok {
					return fval{}, false
				}
				idx = int(b[0])
			} else {
				b, ok := m.read(4)
				if !ok {
					return fval{}, false
				}
				idx = int(binary.LittleEndian.Uint32(b))
			}
			if idx >= len(m.memo) || m.memo[idx].kind == 0 {
				return fval{}, false
			}
			m.push(m.memo[idx])
		case 't': // TUPLE
			k := len(m.stack) - 1
			for k >= 0 && m.stack[k].kind != fMark {
				k--
			}
			if k < 0 {
				return fval{}, false
			}
			t := m.tuple(m.stack[k+1:])
			m.stack = append(m.stack[:k], t)
		case 0x85, 0x86, 0x87: // TUPLE1, TUPLE2, TUPLE3
			n := int(op - 0x84)
			k := len(m.stack) - n
			if k < 0 || !m.noMark(k) {
				return fval{}, false
			}
			t := m.tuple(m.stack[k:])
			m.stack = append(m.stack[:k], t)
		case 'Q': // BINPERSID
			if len(m.stack) == 0 {
				return fval{}, false
			}
			pid := m.stack[len(m.stack)-1]
			ref := fval{kind: fRef}
			if pid.kind == fTuple {
				if pid.n != 2 {
					return fval{}, false
				}
				cls := m.arena[pid.i+1]
				if cls.kind != fClass {
					return fval{}, false
				}
				ref.off, ref.n = cls.off, cls.n
				pid = m.arena[pid.i]
			}
			if pid.kind != fBytes || pid.n != 8 {
				return fval{}, false
			}
			ref.i = int64(binary.BigEndian.Uint64(m.bytes(pid)))
			m.stack[len(m.stack)-1] = ref
		case '.': // STOP
			if len(m.stack) != 1 {
				return fval{}, false
			}
			return m.stack[0], true
		default:
			return fval{}, false
		}
	}
	return fval{}, false
}

func (m *fmachine) push(v fval) { m.stack = append(m.stack, v) }

func (m *fmachine) read(n int) ([]byte, bool) {
	if n < 0 || m.pos+n > len(m.rec) {
		return nil, false
	}
	b := m.rec[m.pos : m.pos+n]
	m.pos += n
	return b, true
}

func (m *fmachine) noMark(k int) bool {
	for _, v := range m.stack[k:] {
		if v.kind == fMark {
			return false
		}
	}
	return true
}

// tuple copies items to the arena and returns the tuple value.
func (m *fmachine) tuple(items []fval) fval {
	t := fval{kind: fTuple, i: int64(len(m.arena)), n: int32(len(items))}
	m.arena = append(m.arena, items...)
	return t
}

func (m *fmachine) items(t fval) []fval { return m.arena[t.i : t.i+int64(t.n)] }

func (m *fmachine) bytes(v fval) []byte { return m.rec[v.off : v.off+v.n] }

var fmachines = sync.Pool{New: func() any { return new(fmachine) }}

// fastRecord runs the class and the state pickles of rec, whose class must
// be class (as GLOBAL writes it). m goes back to fmachines after use.
func fastRecord(rec []byte, class []byte) (m *fmachine, state fval, ok bool) {
	if len(rec) >= 1<<31 {
		return nil, fval{}, false
	}
	m = fmachines.Get().(*fmachine)
	m.rec, m.pos, m.nmemo = rec, 0, 0
	m.stack, m.memo, m.arena = m.stack[:0], m.memo[:0], m.arena[:0]
	cls, ok := m.run()
	if ok && cls.kind == fClass && bytes.Equal(m.bytes(cls), class) {
		state, ok = m.run()
		if ok && m.pos == len(rec) {
			return m, state, true
		}
	}
	m.release()
	return nil, fval{}, false
}

func (m *fmachine) release() {
	m.rec = nil
	fmachines.Put(m)
}

// fastBucketEntries interprets a bucket state (see bucketEntries).
func (m *fmachine) bucketEntries(x fval) ([]entry, bool) {
	if x.kind != fTuple || x.n < 1 || x.n > 2 {
		return nil, false
	}
	d := m.items(x)[0]
	if d.kind != fTuple || d.n%2 != 0 {
		return nil, false
	}
	dv := m.items(d)
	ev := make([]entry, 0, len(dv)/2)
	for i := 0; i < len(dv); i += 2 {
		k, v := dv[i], dv[i+1]
		if k.kind != fInt || v.kind != fRef || v.i == 0 || (i > 0 && k.i <= ev[len(ev)-1].key) {
			return nil, false
		}
		ev = append(ev, entry{k.i, zodb.Oid(v.i)})
	}
	return ev, true
}

// fastBucket decodes an LOBucket record, if the fast path can.
func fastBucket(rec []byte) ([]entry, bool) {
	m, x, ok := fastRecord(rec, globalLOBucket)
	if !ok {
		return nil, false
	}
	defer m.release()
	return m.bucketEntries(x)
}

// fastTree decodes an LOBTree record, if the fast path can.
func fastTree(rec []byte) (*treeState, bool) {
	m, x, ok := fastRecord(rec, globalLOBTree)
	if !ok {
		return nil, false
	}
	defer m.release()
	if x.kind == fNone {
		return &treeState{}, true
	}
	if x.kind != fTuple || x.n < 1 || x.n > 2 {
		return nil, false
	}
	t := m.items(x)
	if x.n == 1 {
		if t[0].kind != fTuple || t[0].n != 1 {
			return nil, false
		}
		ev, ok := m.bucketEntries(m.items(t[0])[0])
		if !ok {
			return nil, false
		}
		return &treeState{inline: ev, isInline: true}, true
	}
	if t[0].kind != fTuple || t[0].n%2 != 1 {
		return nil, false
	}
	d := m.items(t[0])
	st := &treeState{kids: make([]zodb.Oid, 0, (len(d)+1)/2)}
	var kprev int64
	for i := 0; i < len(d); i += 2 {
		if i > 0 {
			k := d[i-1]
			if k.kind != fInt || (i > 2 && k.i <= kprev) {
				return nil, false
			}
			kprev = k.i
		}
		r := d[i]
		if r.kind != fRef {
			return nil, false
		}
		var kind nodeKind
		switch cls := m.bytes(r); {
		case r.n == 0:
			return nil, false
		case bytes.Equal(cls, globalLOBTree):
			kind = kindTree
		case bytes.Equal(cls, globalLOBucket):
			kind = kindBucket
		default:
			return nil, false
		}
		if st.kidKind != 0 && kind != st.kidKind {
			return nil, false
		}
		st.kidKind = kind
		st.kids = append(st.kids, zodb.Oid(r.i))
	}
	return st, true
}
