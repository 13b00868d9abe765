// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zpickle

// The pickle machine: it runs one pickle into a value. Values are small
// structs (no interface boxing); strings are spans of the record, tuples are
// ranges of an arena, so that decoding a record allocates nothing besides the
// machine's reused buffers.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// pickle opcodes the machine runs (see Python's pickletools)
const (
	opMark           = '('
	opStop           = '.'
	opInt            = 'I' // decimal line; "01"/"00" are True/False
	opBinint         = 'J'
	opBinint1        = 'K'
	opLong           = 'L' // decimal line ending with 'L'
	opBinint2        = 'M'
	opNone           = 'N'
	opBinpersid      = 'Q'
	opBinstring      = 'T'
	opShortBinstring = 'U'
	opBinunicode     = 'X'
	opGlobal         = 'c'
	opBinget         = 'h'
	opLongBinget     = 'j'
	opBinput         = 'q'
	opLongBinput     = 'r'
	opTuple          = 't'
	opEmptyTuple     = ')'
	opBinbytes       = 'B'
	opShortBinbytes  = 'C'
	opProto          = 0x80
	opTuple1         = 0x85
	opTuple2         = 0x86
	opTuple3         = 0x87
	opNewtrue        = 0x88
	opNewfalse       = 0x89
	opLong1          = 0x8a
	opShortBinUni    = 0x8c
	opStackGlobal    = 0x93
	opMemoize        = 0x94
	opFrame          = 0x95
)

// kind is the type of a machine value.
type kind uint8

const (
	kMark    kind = iota + 1
	kNone         // None
	kBool         // i = 0 or 1
	kInt          // i
	kBytes        // Python 3 bytes: rec[off:off+n]
	kStr          // Python 2 str: rec[off:off+n]
	kUnicode      // rec[off:off+n]
	kClass        // i = index of the class path in machine.classes
	kTuple        // items arena[i:i+n]
	kRef          // persistent reference: i = oid; off = index in machine.classes, -1 if not given
)

// val is a value on the machine's stack, in its memo or in its arena.
type val struct {
	i    int64
	n    int32
	off  int32
	kind kind
}

// Limits that keep the machine's memory linear in the record size.
const (
	// MaxRecord is the size of the largest record the decoder takes (no
	// state of these classes comes near: blocks are at most 1 GiB);
	// offsets in the record fit in int32.
	MaxRecord = 1<<31 - 1

	// maxLong1 is the largest LONG1 the machine takes: an int64.
	maxLong1 = 8

	// maxIntLine bounds INT and LONG lines (an int64 has 19 digits).
	maxIntLine = 32
)

// machine runs pickles. The class pickle and the state pickle of a record
// share one memo, as ZODB writes them with one pickler.
//
// The stack, the memo and the arena are used up to sp, nm and na: the
// slices themselves change only when they grow, so that the loop writes no
// pointer (and runs no GC write barrier) per opcode.
type machine struct {
	rec     []byte
	pos     int
	stack   []val
	sp      int
	memo    []val // kind 0: not set
	nm      int   // memo indices in use
	nmemo   int   // entries set in memo (MEMOIZE stores at this index)
	arena   []val // tuple items
	na      int
	classes []string // class paths met by GLOBAL and STACK_GLOBAL
	known   []int8   // their index in knownClasses, -1 for others
}

var machines = sync.Pool{New: func() any { return new(machine) }}

func getMachine(rec []byte) *machine {
	m := machines.Get().(*machine)
	m.rec, m.pos, m.sp, m.nm, m.nmemo, m.na = rec, 0, 0, 0, 0, 0
	m.classes, m.known = m.classes[:0], m.known[:0]
	return m
}

// push puts v on the stack.
func (m *machine) push(v val) {
	if m.sp == len(m.stack) {
		m.stack = append(m.stack, v)
		m.stack = m.stack[:cap(m.stack)]
	}
	m.stack[m.sp] = v
	m.sp++
}

// tuple replaces the values on the stack from k on (and the MARK before
// them, if mark) with their tuple.
func (m *machine) tuple(k int, mark bool) {
	items := m.stack[k:m.sp]
	if m.na+len(items) > len(m.arena) {
		m.arena = append(m.arena[:m.na], items...)
		m.arena = m.arena[:cap(m.arena)]
	} else {
		copy(m.arena[m.na:], items)
	}
	t := val{kind: kTuple, i: int64(m.na), n: int32(len(items))}
	m.na += len(items)
	m.sp = k
	if mark {
		m.sp--
	}
	m.push(t)
}

// release gives m back to the pool; values taken from it must not be used
// afterwards (strings and spans of the record stay valid).
func (m *machine) release() {
	if len(m.arena) > 1<<16 || len(m.memo) > 1<<16 || len(m.stack) > 1<<16 || cap(m.classes) > 1<<10 {
		return // do not keep what one big record needed
	}
	m.rec = nil
	clear(m.classes[:cap(m.classes)])
	machines.Put(m)
}

// run executes one pickle up to its STOP and returns its value.
//
// The machine runs the opcodes Python's picklers write for the states of
// these classes in protocols 1 to 5: no text protocol 0 strings or memo keys,
// no lists, dicts, sets, floats, object construction or extensions. A
// pickle that uses another opcode is an error, as is one that og-rek would
// reject; whatever the machine accepts, og-rek decodes to the same value (the
// fuzz test checks it). It takes time and memory linear in the pickle.
func (m *machine) run() (val, error) {
	m.sp = 0
	rec, pos := m.rec, m.pos // pos: a register
	for pos < len(rec) {
		at := pos
		op := rec[at]
		pos++
		left := len(rec) - pos
		switch op {
		case opStop:
			if m.sp != 1 || m.stack[0].kind == kMark {
				return m.fail(at, "STOP with %d values on the stack", m.sp)
			}
			m.pos = pos
			return m.stack[0], nil

		case opProto:
			if left < 1 || rec[pos] > 5 {
				return m.fail(at, "bad PROTO")
			}
			pos++
		case opFrame:
			if left < 8 {
				return m.fail(at, "truncated FRAME")
			}
			pos += 8
		case opMark:
			m.push(val{kind: kMark})
		case opNone:
			m.push(val{kind: kNone})
		case opNewtrue, opNewfalse:
			m.push(val{kind: kBool, i: int64(opNewfalse - op)})

		case opBinint1:
			if left < 1 {
				return m.fail(at, "truncated BININT1")
			}
			m.push(val{kind: kInt, i: int64(rec[pos])})
			pos++
		case opBinint2:
			if left < 2 {
				return m.fail(at, "truncated BININT2")
			}
			m.push(val{kind: kInt, i: int64(binary.LittleEndian.Uint16(rec[pos:]))})
			pos += 2
		case opBinint:
			if left < 4 {
				return m.fail(at, "truncated BININT")
			}
			m.push(val{kind: kInt, i: int64(int32(binary.LittleEndian.Uint32(rec[pos:])))})
			pos += 4
		case opLong1:
			if left < 1 || rec[pos] > maxLong1 || int(rec[pos]) > left-1 {
				return m.fail(at, "LONG1 truncated or beyond int64")
			}
			b := rec[pos+1 : pos+1+int(rec[pos])]
			pos += 1 + len(b)
			var v int64 // little-endian two's complement
			for i := len(b) - 1; i >= 0; i-- {
				v = v<<8 | int64(b[i])
			}
			if n := len(b); n > 0 && n < 8 && b[n-1]&0x80 != 0 {
				v -= 1 << (8 * n)
			}
			m.push(val{kind: kInt, i: v})
		case opInt, opLong:
			i := bytes.IndexByte(rec[pos:], '\n')
			if i < 0 || i > maxIntLine {
				return m.fail(at, "INT/LONG line missing or too long")
			}
			v, isBool, err := parseIntLine(op, rec[pos:pos+i])
			if err != nil {
				return m.fail(at, "%s", err)
			}
			pos += i + 1
			k := kInt
			if isBool {
				k = kBool
			}
			m.push(val{kind: k, i: v})

		case opShortBinbytes, opShortBinstring, opShortBinUni, opBinbytes, opBinstring, opBinunicode:
			var n int
			switch op {
			case opShortBinbytes, opShortBinstring, opShortBinUni:
				if left < 1 {
					return m.fail(at, "truncated string")
				}
				n = int(rec[pos])
				pos++
			default:
				if left < 4 {
					return m.fail(at, "truncated string")
				}
				n = int(binary.LittleEndian.Uint32(rec[pos:]))
				pos += 4
			}
			if n > len(rec)-pos {
				return m.fail(at, "truncated string")
			}
			k := kBytes
			switch op {
			case opShortBinstring, opBinstring:
				k = kStr
			case opShortBinUni, opBinunicode:
				k = kUnicode
			}
			m.push(val{kind: k, off: int32(pos), n: int32(n)})
			pos += n

		case opGlobal:
			i := bytes.IndexByte(rec[pos:], '\n')
			j := -1
			if i >= 0 {
				j = bytes.IndexByte(rec[pos+i+1:], '\n')
			}
			if j < 0 {
				return m.fail(at, "truncated GLOBAL")
			}
			m.push(m.class(rec[pos:pos+i], rec[pos+i+1:pos+i+1+j]))
			pos += i + 1 + j + 1
		case opStackGlobal:
			k := m.sp - 2
			if k < 0 || m.stack[k].kind != kUnicode || m.stack[k+1].kind != kUnicode {
				return m.fail(at, "STACK_GLOBAL needs two unicode strings")
			}
			m.stack[k] = m.class(m.span(m.stack[k]), m.span(m.stack[k+1]))
			m.sp = k + 1

		case opBinput, opLongBinput, opMemoize:
			idx := m.nmemo
			switch op {
			case opBinput:
				if left < 1 {
					return m.fail(at, "truncated BINPUT")
				}
				idx = int(rec[pos])
				pos++
			case opLongBinput:
				if left < 4 {
					return m.fail(at, "truncated LONG_BINPUT")
				}
				idx = int(binary.LittleEndian.Uint32(rec[pos:]))
				pos += 4
			}
			if m.sp == 0 || m.stack[m.sp-1].kind == kMark {
				return m.fail(at, "memo store of nothing")
			}
			switch {
			case idx >= m.nm:
				// picklers number memo entries in sequence (from 0 or
				// 1): refusing gaps keeps the memo linear in the record
				if idx > m.nm+1 {
					return m.fail(at, "memo index %d out of sequence", idx)
				}
				if idx >= len(m.memo) {
					m.memo = append(m.memo, val{}, val{})
					m.memo = m.memo[:cap(m.memo)]
				}
				if idx > m.nm {
					m.memo[m.nm] = val{} // not set
				}
				m.nm = idx + 1
				m.nmemo++
			case m.memo[idx].kind == 0:
				m.nmemo++
			}
			m.memo[idx] = m.stack[m.sp-1]
		case opBinget, opLongBinget:
			var idx int
			if op == opBinget {
				if left < 1 {
					return m.fail(at, "truncated BINGET")
				}
				idx = int(rec[pos])
				pos++
			} else {
				if left < 4 {
					return m.fail(at, "truncated LONG_BINGET")
				}
				idx = int(binary.LittleEndian.Uint32(rec[pos:]))
				pos += 4
			}
			if idx >= m.nm || m.memo[idx].kind == 0 {
				return m.fail(at, "memo entry %d not set", idx)
			}
			m.push(m.memo[idx])

		case opEmptyTuple:
			m.push(val{kind: kTuple, i: int64(m.na)})
		case opTuple:
			k := m.sp - 1
			for k >= 0 && m.stack[k].kind != kMark {
				k--
			}
			if k < 0 {
				return m.fail(at, "TUPLE without MARK")
			}
			m.tuple(k+1, true)
		case opTuple1, opTuple2, opTuple3:
			k := m.sp - int(op-opTuple1+1)
			if k < 0 {
				return m.fail(at, "TUPLE%d of too few values", op-opTuple1+1)
			}
			for _, v := range m.stack[k:m.sp] {
				if v.kind == kMark {
					return m.fail(at, "TUPLE%d of a MARK", op-opTuple1+1)
				}
			}
			// as m.tuple(k, false), without calls for the pairs of
			// every reference
			n := m.sp - k
			if m.na+n > len(m.arena) {
				m.tuple(k, false)
				break
			}
			for i, v := range m.stack[k:m.sp] {
				m.arena[m.na+i] = v
			}
			m.stack[k] = val{kind: kTuple, i: int64(m.na), n: int32(n)}
			m.na += n
			m.sp = k + 1

		case opBinpersid:
			n := m.sp
			if n == 0 {
				return m.fail(at, "BINPERSID of nothing")
			}
			pid, class := m.stack[n-1], val{kind: kNone}
			if pid.kind == kTuple && pid.n == 2 {
				pid, class = m.arena[pid.i], m.arena[pid.i+1]
			}
			// the common case inline; badRef says what is wrong otherwise
			if (pid.kind == kBytes || pid.kind == kStr) && pid.n == 8 && (class.kind == kClass || class.kind == kNone) {
				if oid := binary.BigEndian.Uint64(rec[pid.off:]); zodb.Oid(oid) != zodb.InvalidOid {
					ref := val{kind: kRef, i: int64(oid), off: -1}
					if class.kind == kClass {
						ref.off = int32(class.i)
					}
					m.stack[n-1] = ref
					break
				}
			}
			return m.fail(at, "%s", m.badRef(pid, class))

		default:
			return m.fail(at, "unsupported opcode 0x%02x", op)
		}
	}
	return m.fail(pos, "truncated: no STOP")
}

// fail returns the error of the opcode at position at. (Not inlined: the
// loop of run stays small.)
//
//go:noinline
func (m *machine) fail(at int, format string, argv ...any) (val, error) {
	return val{}, fmt.Errorf("offset %d: "+format, append([]any{at}, argv...)...)
}

// parseIntLine parses the line of INT ("01"/"00" for True/False) or LONG
// (digits then 'L'); values beyond int64 are refused.
func parseIntLine(op byte, line []byte) (v int64, isBool bool, err error) {
	s := string(line)
	if op == opInt && (s == "01" || s == "00") {
		return int64(s[1] - '0'), true, nil
	}
	if op == opLong {
		if len(s) == 0 || s[len(s)-1] != 'L' {
			return 0, false, fmt.Errorf("LONG %q does not end with L", s)
		}
		s = s[:len(s)-1]
	}
	v, err = strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("integer %q: not an int64", s)
	}
	return v, false, nil
}

// span returns the bytes of a string value.
func (m *machine) span(v val) []byte { return m.rec[v.off : v.off+v.n] }

// items returns the items of a tuple value.
func (m *machine) items(t val) []val { return m.arena[t.i : t.i+int64(t.n)] }

// class returns the class value of module.name, its path resolved once.
func (m *machine) class(mod, name []byte) val {
	path, id := classPath(mod, name)
	m.classes = append(m.classes, path)
	m.known = append(m.known, id)
	return val{kind: kClass, i: int64(len(m.classes) - 1)}
}

// badRef says what is wrong with a persistent id that BINPERSID does not
// take: a reference is the oid or (oid, class) — the forms ZODB writes for
// references inside a database —, or (oid, None); run passes the items of a
// pair. The oid is 8 bytes (Python 3 bytes, or Python 2 str), not
// zodb.InvalidOid.
func (m *machine) badRef(oid, class val) error {
	switch {
	case oid.kind == kTuple:
		return fmt.Errorf("persistent reference: expected oid or (oid, class); got %s", m.typeName(oid))
	case !(oid.kind == kBytes || oid.kind == kStr) || oid.n != 8:
		return fmt.Errorf("persistent reference: oid must be 8 bytes; got %s", m.typeName(oid))
	case class.kind != kNone && class.kind != kClass:
		return fmt.Errorf("persistent reference: expected a class; got %s", m.typeName(class))
	}
	return fmt.Errorf("persistent reference: invalid oid %x", m.span(oid))
}

// typeName names a value for error messages, as Python would.
func (m *machine) typeName(v val) string {
	switch v.kind {
	case kNone:
		return "None"
	case kBool:
		return "bool"
	case kInt:
		return "int"
	case kBytes:
		return "bytes"
	case kStr:
		return "str"
	case kUnicode:
		return "unicode"
	case kClass:
		return "class " + m.classes[v.i]
	case kTuple:
		return fmt.Sprintf("tuple[%d]", v.n)
	case kRef:
		return m.refOf(v).String()
	}
	return "mark"
}
