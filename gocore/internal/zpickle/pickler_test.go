// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zpickle

// A pickler for tests that writes records the way Python's picklers do for
// ZODB, in the dialect of each Python and protocol (memo numbering, tuple
// and int opcodes, Python 2 str vs bytes), so that every state layout can be
// checked in every dialect, beyond what the fixture databases hold.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// dialect is how one Python pickler writes a record.
type dialect struct {
	name        string
	proto       int  // 0: no PROTO opcode
	memo0       int  // first memo index: 1 for Python 2's cPickle, 0 for Python 3
	py2         bool // oids and bytes as str; ints beyond int32 as INT text (else LONG1)
	tupleN      bool // TUPLE1..3 for short tuples (protocol ≥ 2)
	memoize     bool // MEMOIZE instead of BINPUT (protocol ≥ 4)
	stackGlobal bool // classes by STACK_GLOBAL (protocol ≥ 4), in FRAMEs
}

var dialects = []dialect{
	{name: "py2-proto1", memo0: 1, py2: true},
	{name: "py2-proto2", proto: 2, memo0: 1, py2: true, tupleN: true},
	{name: "py2-proto3", proto: 3, memo0: 1, py2: true, tupleN: true},
	{name: "py3-proto3", proto: 3, tupleN: true},
	{name: "py3-proto4", proto: 4, tupleN: true, memoize: true, stackGlobal: true},
}

// Python values for the test pickler.
type (
	pyTuple []any
	pyBytes []byte // bytes (Python 3) or str (Python 2: the dialect decides)
	pyStr   string // Python 2 str, whatever the dialect
	pyUni   string // unicode
	pyClass string // module.name
	pyRef   Ref    // (oid, class), or oid when Class is ""
	pyNone  struct{}
)

// pickle writes the record (class, state) in dialect d.
func (d dialect) pickle(class string, state any) []byte {
	p := &pickler{d: d, memo: map[string]int{}, next: d.memo0}
	p.dump(pyClass(class))
	p.dump(state)
	return p.buf.Bytes()
}

type pickler struct {
	d    dialect
	buf  bytes.Buffer
	memo map[string]int // class path -> memo index
	next int
}

func (p *pickler) dump(x any) {
	if p.d.proto > 0 {
		p.buf.Write([]byte{opProto, byte(p.d.proto)})
	}
	if p.d.stackGlobal {
		p.buf.WriteByte(opFrame)
		p.buf.Write(make([]byte, 8)) // frame length: not checked by readers
	}
	p.save(x)
	p.buf.WriteByte(opStop)
}

// put memoizes the value just written and returns its index.
func (p *pickler) put() int {
	i := p.next
	p.next++
	switch {
	case p.d.memoize:
		p.buf.WriteByte(opMemoize)
	case i < 256:
		p.buf.Write([]byte{opBinput, byte(i)})
	default:
		p.buf.WriteByte(opLongBinput)
		p.buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(i)))
	}
	return i
}

func (p *pickler) get(i int) {
	if i < 256 {
		p.buf.Write([]byte{opBinget, byte(i)})
		return
	}
	p.buf.WriteByte(opLongBinget)
	p.buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(i)))
}

func (p *pickler) str(short, long byte, b []byte) {
	if len(b) < 256 {
		p.buf.Write([]byte{short, byte(len(b))})
	} else {
		p.buf.WriteByte(long)
		p.buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(len(b))))
	}
	p.buf.Write(b)
}

func (p *pickler) save(x any) {
	switch x := x.(type) {
	case pyNone:
		p.buf.WriteByte(opNone)
	case bool:
		switch {
		case p.d.proto >= 2 && x:
			p.buf.WriteByte(opNewtrue)
		case p.d.proto >= 2:
			p.buf.WriteByte(opNewfalse)
		case x:
			p.buf.WriteString("I01\n")
		default:
			p.buf.WriteString("I00\n")
		}
	case int64:
		switch {
		case x >= 0 && x <= 0xff:
			p.buf.Write([]byte{opBinint1, byte(x)})
		case x >= 0 && x <= 0xffff:
			p.buf.Write([]byte{opBinint2, byte(x), byte(x >> 8)})
		case x >= math.MinInt32 && x <= math.MaxInt32:
			p.buf.WriteByte(opBinint)
			p.buf.Write(binary.LittleEndian.AppendUint32(nil, uint32(x)))
		case p.d.py2:
			fmt.Fprintf(&p.buf, "I%d\n", x) // a Python 2 int of 64 bits
		default:
			b := binary.LittleEndian.AppendUint64(nil, uint64(x))
			for len(b) > 1 && (b[len(b)-1] == 0 && b[len(b)-2]&0x80 == 0 || b[len(b)-1] == 0xff && b[len(b)-2]&0x80 != 0) {
				b = b[:len(b)-1] // minimal two's complement
			}
			p.buf.Write([]byte{opLong1, byte(len(b))})
			p.buf.Write(b)
		}
	case pyBytes:
		if p.d.py2 {
			p.str(opShortBinstring, opBinstring, x)
		} else {
			p.str(opShortBinbytes, opBinbytes, x)
		}
		p.put()
	case pyStr:
		p.str(opShortBinstring, opBinstring, []byte(x))
		p.put()
	case pyUni:
		p.str(opShortBinUni, opBinunicode, []byte(x))
		p.put()
	case pyClass:
		if i, ok := p.memo[string(x)]; ok {
			p.get(i)
			return
		}
		dot := strings.LastIndexByte(string(x), '.')
		mod, name := string(x)[:dot], string(x)[dot+1:]
		if p.d.stackGlobal {
			p.save(pyUni(mod))
			p.save(pyUni(name))
			p.buf.WriteByte(opStackGlobal)
		} else {
			fmt.Fprintf(&p.buf, "c%s\n%s\n", mod, name)
		}
		p.memo[string(x)] = p.put()
	case pyTuple:
		switch {
		case len(x) == 0:
			p.buf.WriteByte(opEmptyTuple)
			return // not memoized
		case p.d.tupleN && len(x) <= 3:
			for _, item := range x {
				p.save(item)
			}
			p.buf.WriteByte(opTuple1 + byte(len(x)-1))
		default:
			p.buf.WriteByte(opMark)
			for _, item := range x {
				p.save(item)
			}
			p.buf.WriteByte(opTuple)
		}
		p.put()
	case pyRef:
		oid := pyBytes(binary.BigEndian.AppendUint64(nil, uint64(x.Oid)))
		if x.Class == "" {
			p.save(oid)
		} else {
			p.save(pyTuple{oid, pyClass(x.Class)})
		}
		p.buf.WriteByte(opBinpersid)
	default:
		panic(fmt.Sprintf("pickler: %T", x))
	}
}

// ---- states ----

func ref(oid zodb.Oid, class string) pyRef { return pyRef{Oid: oid, Class: class} }

// bucketState returns ((k0, v0, k1, v1, ...),) or, with next, ((...), next).
func bucketState(next any, kv ...any) pyTuple {
	if next == nil {
		return pyTuple{pyTuple(kv)}
	}
	return pyTuple{pyTuple(kv), next}
}

// treeState returns ((kid0, key1, kid1, ...), firstbucket).
func treeState(first any, kidsAndKeys ...any) pyTuple {
	return pyTuple{pyTuple(kidsAndKeys), first}
}
