// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// A small pickle machine for the records on the block path (ZBlk1 states,
// IOBTree/IOBucket chunk tables, blktab nodes, ZBigFile states): it runs the
// binary opcodes ZODB writes for them (protocols 1-3, Python 2 and 3) and
// gives up on anything else, in which case og-rek decodes the record. It
// produces exactly the values og-rek produces (the fuzz tests compare them),
// several times faster: no buffered reader, memo in a slice, no string keys.

import (
	"bytes"
	"encoding/binary"

	pickle "github.com/kisielk/og-rek"
)

// more pickle opcodes (see pickle.go for the others)
const (
	opBinint      = 'J'
	opBinint1     = 'K'
	opBinint2     = 'M'
	opBinget      = 'h'
	opLongBinget  = 'j'
	opBinpersid   = 'Q'
	opTuple3      = 0x87
	opEmptyTuple  = ')'
	opNewtrue     = 0x88
	opNewfalse    = 0x89
	opBinunicode  = 'X'
	opShortBinUni = 0x8c
)

// vmMark is a MARK on the machine's stack.
type vmMark struct{}

// maxFastMemo bounds memo indices the fast path handles.
const maxFastMemo = 1 << 16

// fastRecord decodes a record (class pickle, then state pickle sharing one
// memo, as ZODB writes them). ok=false means the record uses something the
// machine does not run, or is malformed: decode it with og-rek.
func fastRecord(rec []byte) (class string, state any, ok bool) {
	m := vm{data: rec}
	x, ok := m.run()
	if !ok {
		return "", nil, false
	}
	class, err := pyClass(x)
	if err != nil {
		return "", nil, false
	}
	state, ok = m.run()
	if !ok {
		return "", nil, false
	}
	return class, state, true
}

type vm struct {
	data  []byte
	pos   int
	stack []any
	memo  []any
	isset []bool
}

// run executes one pickle up to STOP and returns its value.
func (m *vm) run() (_ any, ok bool) {
	m.stack = m.stack[:0]
	data := m.data
	for m.pos < len(data) {
		op := data[m.pos]
		m.pos++
		switch op {
		case opStop:
			if len(m.stack) != 1 {
				return nil, false
			}
			v := m.stack[0]
			if _, isMark := v.(vmMark); isMark {
				return nil, false
			}
			return v, true

		case opProto:
			v, ok := m.u8()
			if !ok || v > 5 {
				return nil, false
			}
		case opFrame:
			if _, ok := m.bytes(8); !ok {
				return nil, false
			}
		case opMark:
			m.stack = append(m.stack, vmMark{})
		case opNone:
			m.stack = append(m.stack, pickle.None{})
		case opNewtrue:
			m.stack = append(m.stack, true)
		case opNewfalse:
			m.stack = append(m.stack, false)

		case opBinint:
			b, ok := m.bytes(4)
			if !ok {
				return nil, false
			}
			m.stack = append(m.stack, int64(int32(binary.LittleEndian.Uint32(b))))
		case opBinint1:
			v, ok := m.u8()
			if !ok {
				return nil, false
			}
			m.stack = append(m.stack, int64(v))
		case opBinint2:
			b, ok := m.bytes(2)
			if !ok {
				return nil, false
			}
			m.stack = append(m.stack, int64(binary.LittleEndian.Uint16(b)))

		case opShortBinbytes, opShortBinstring, opShortBinUni:
			n, ok := m.u8()
			if !ok {
				return nil, false
			}
			if !m.pushString(op, int(n)) {
				return nil, false
			}
		case opBinbytes, opBinstring, opBinunicode:
			b, ok := m.bytes(4)
			if !ok {
				return nil, false
			}
			if !m.pushString(op, int(binary.LittleEndian.Uint32(b))) {
				return nil, false
			}

		case opGlobal:
			mod, ok := m.line()
			if !ok {
				return nil, false
			}
			name, ok := m.line()
			if !ok {
				return nil, false
			}
			m.stack = append(m.stack, pickle.Class{Module: string(mod), Name: string(name)})

		case opBinput, opLongBinput:
			idx, ok := m.memoIndex(op == opBinput)
			if !ok || len(m.stack) == 0 {
				return nil, false
			}
			top := m.stack[len(m.stack)-1]
			if _, isMark := top.(vmMark); isMark {
				return nil, false
			}
			for len(m.memo) <= idx {
				m.memo = append(m.memo, nil)
				m.isset = append(m.isset, false)
			}
			m.memo[idx], m.isset[idx] = top, true

		case opBinget, opLongBinget:
			idx, ok := m.memoIndex(op == opBinget)
			if !ok || idx >= len(m.memo) || !m.isset[idx] {
				return nil, false
			}
			m.stack = append(m.stack, m.memo[idx])

		case opEmptyTuple:
			m.stack = append(m.stack, pickle.Tuple{})
		case opTuple:
			k := len(m.stack) - 1
			for k >= 0 {
				if _, isMark := m.stack[k].(vmMark); isMark {
					break
				}
				k--
			}
			if k < 0 {
				return nil, false
			}
			t := append(pickle.Tuple{}, m.stack[k+1:]...)
			m.stack = append(m.stack[:k], t)
		case opTuple1, opTuple2, opTuple3:
			n := int(op-opTuple1) + 1
			k := len(m.stack) - n
			if k < 0 {
				return nil, false
			}
			for _, v := range m.stack[k:] {
				if _, isMark := v.(vmMark); isMark {
					return nil, false
				}
			}
			t := append(pickle.Tuple{}, m.stack[k:]...)
			m.stack = append(m.stack[:k], t)

		case opBinpersid:
			n := len(m.stack)
			if n == 0 {
				return nil, false
			}
			pid := m.stack[n-1]
			if _, isMark := pid.(vmMark); isMark {
				return nil, false
			}
			ref, err := loadRef(pickle.Ref{Pid: pid})
			if err != nil {
				return nil, false
			}
			m.stack[n-1] = ref

		default:
			return nil, false
		}
	}
	return nil, false // no STOP
}

// memoIndex reads the argument of a memo opcode: 1 byte (short) or 4.
func (m *vm) memoIndex(short bool) (int, bool) {
	if short {
		v, ok := m.u8()
		return int(v), ok
	}
	b, ok := m.bytes(4)
	if !ok {
		return 0, false
	}
	v := binary.LittleEndian.Uint32(b)
	return int(v), v < maxFastMemo
}

func (m *vm) u8() (byte, bool) {
	if m.pos >= len(m.data) {
		return 0, false
	}
	m.pos++
	return m.data[m.pos-1], true
}

func (m *vm) bytes(n int) ([]byte, bool) {
	if n < 0 || n > len(m.data)-m.pos {
		return nil, false
	}
	b := m.data[m.pos : m.pos+n]
	m.pos += n
	return b, true
}

func (m *vm) line() ([]byte, bool) {
	i := bytes.IndexByte(m.data[m.pos:], '\n')
	if i < 0 {
		return nil, false
	}
	b := m.data[m.pos : m.pos+i]
	m.pos += i + 1
	return b, true
}

// pushString pushes n bytes as the Go value og-rek gives the opcode.
func (m *vm) pushString(op byte, n int) bool {
	b, ok := m.bytes(n)
	if !ok {
		return false
	}
	switch op {
	case opShortBinbytes, opBinbytes:
		m.stack = append(m.stack, pickle.Bytes(b))
	case opShortBinstring, opBinstring:
		m.stack = append(m.stack, pickle.ByteString(b)) // py2 str (StrictUnicode)
	default:
		return false // unicode: og-rek checks UTF-8; not on the block path
	}
	return true
}
