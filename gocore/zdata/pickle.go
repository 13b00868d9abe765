// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// Decoding of raw ZODB data records (Python pickles) without going through
// a zodb.Connection: the block path loads ZBlk*/IOBTree/ZData records
// directly from the storage and decodes them here.
//
// A ZODB data record is two pickles back to back: the class description and
// the object state. Records holding block data (ZBlk0, ZData) are decoded by
// a fast path that recognises the opcodes genuine ZODB writes and returns the
// data as a sub-slice of the record (no copy); anything else falls back to
// the general og-rek decoder, so that every valid pickle decodes. The fuzz
// tests check that the fast path and og-rek agree.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	pickle "github.com/kisielk/og-rek"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// pickle opcodes used by the fast paths.
const (
	opProto          = 0x80
	opFrame          = 0x95
	opGlobal         = 'c'
	opStop           = '.'
	opMark           = '('
	opNone           = 'N'
	opTuple          = 't'
	opTuple1         = 0x85
	opTuple2         = 0x86
	opPut            = 'p'
	opBinput         = 'q'
	opLongBinput     = 'r'
	opMemoize        = 0x94
	opShortBinbytes  = 'C'
	opBinbytes       = 'B'
	opBinbytes8      = 0x8e
	opShortBinstring = 'U'
	opBinstring      = 'T'
)

// zref is a decoded persistent reference: the oid and, when the reference
// carries it, the class of the referenced object ("" if unknown).
type zref struct {
	Oid   zodb.Oid
	Class string
}

func (r zref) String() string {
	if r.Class == "" {
		return fmt.Sprintf("ref %s", r.Oid)
	}
	return fmt.Sprintf("ref %s(%s)", r.Class, r.Oid)
}

// errTypeName returns a Python-like name of a decoded pickle value for error messages.
func pyTypeName(x any) string {
	switch x := x.(type) {
	case nil:
		return "nothing"
	case pickle.None:
		return "None"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "unicode"
	case pickle.Bytes:
		return "bytes"
	case pickle.ByteString:
		return "str"
	case pickle.Tuple:
		return fmt.Sprintf("tuple[%d]", len(x))
	case []any:
		return "list"
	case pickle.Dict, map[any]any:
		return "dict"
	case pickle.Class:
		return "class " + x.Module + "." + x.Name
	case zref:
		return x.String()
	case pickle.Ref:
		return "persistent reference"
	case pickle.Call:
		return "call " + x.Callable.Module + "." + x.Callable.Name
	}
	return fmt.Sprintf("%T", x)
}

// ---- record = class pickle + state pickle ----
//
// ZODB writes both pickles with one pickler: the state pickle may refer to
// memo entries made by the class pickle (e.g. the class of a reference). The
// general path therefore decodes both with one decoder.

// decodeRecord decodes a raw ZODB data record into its class (e.g.
// "wendelin.bigfile.file_zodb.ZBlk0") and its state. Persistent references
// in the state are returned as zref.
func decodeRecord(rec []byte) (class string, state any, err error) {
	class, decodeState, err := decodeRecordClass(rec)
	if err != nil {
		return "", nil, err
	}
	state, err = decodeState()
	return class, state, err
}

// decodeRecordClass decodes the class of a raw record and returns a function
// that decodes its state, for callers that check the class first.
//
// Python dicts decode as Go maps (og-rek's PyDict mode is off): no state this
// package reads holds a dict, and hashing a crafted key made of nested
// shared tuples would take exponential time in PyDict mode, while a Go map
// rejects such a key at once.
func decodeRecordClass(rec []byte) (class string, decodeState func() (any, error), err error) {
	if class, state, ok := fastRecord(rec); ok {
		return class, func() (any, error) { return state, nil }, nil
	}
	d := pickle.NewDecoderWithConfig(bytes.NewReader(rec), &pickle.DecoderConfig{
		StrictUnicode:  true,
		PersistentLoad: loadRef,
	})
	x, err := d.Decode()
	if err != nil {
		return "", nil, malformedf("class pickle: %s", err)
	}
	class, err = pyClass(x)
	if err != nil {
		return "", nil, malformedf("class pickle: %s", err)
	}
	return class, func() (any, error) {
		state, err := d.Decode()
		if err != nil {
			return nil, malformedf("state pickle: %s", err)
		}
		return state, nil
	}, nil
}

// pyClass normalises a decoded class description as ZODB writes it: klass,
// (klass, args) or ((module, name), args).
func pyClass(x any) (string, error) {
	if t, ok := x.(pickle.Tuple); ok {
		if len(t) != 2 {
			return "", fmt.Errorf("expected class or (class, args); got %s", pyTypeName(x))
		}
		x = t[0]
		if t, ok := x.(pickle.Tuple); ok {
			if len(t) != 2 {
				return "", fmt.Errorf("expected (module, name); got %s", pyTypeName(x))
			}
			mod, err1 := pickle.AsString(t[0])
			name, err2 := pickle.AsString(t[1])
			if err1 != nil || err2 != nil {
				return "", fmt.Errorf("expected (module, name); got (%s, %s)",
					pyTypeName(t[0]), pyTypeName(t[1]))
			}
			return classPath(mod, name), nil
		}
	}
	k, ok := x.(pickle.Class)
	if !ok {
		return "", fmt.Errorf("expected class; got %s", pyTypeName(x))
	}
	return classPath(k.Module, k.Name), nil
}

// decodeBytesRecord decodes a raw record whose state must be a bytes object
// (or a Python 2 str): ZBlk0 and ZData. The data aliases rec when the fast
// path recognises the record, which it does for what ZODB writes.
func decodeBytesRecord(rec []byte) (class string, data []byte, err error) {
	if class, n, ok := fastClass(rec); ok {
		if data, ok := fastBytes(rec[n:]); ok {
			return class, data, nil
		}
	}
	class, x, err := decodeRecord(rec)
	if err != nil {
		return class, nil, err
	}
	b, err := pickle.AsBytes(x)
	if err != nil {
		return class, nil, malformedf("%s state: expected bytes; got %s", classShort(class), pyTypeName(x))
	}
	return class, []byte(b), nil
}

// fastClass recognises the class pickle that ZODB writes for classes without
// __getnewargs__ ("[PROTO n] GLOBAL 'module\nname\n' [memo put] STOP"), and
// returns the class path and the length of the class pickle.
func fastClass(data []byte) (class string, n int, ok bool) {
	i := skipProto(data, 0)
	if i >= len(data) || data[i] != opGlobal {
		return "", 0, false
	}
	i++
	mod, i, ok := readLine(data, i)
	if !ok {
		return "", 0, false
	}
	name, i, ok := readLine(data, i)
	if !ok {
		return "", 0, false
	}
	i, ok = skipMemoPut(data, i)
	if !ok || i >= len(data) || data[i] != opStop {
		return "", 0, false
	}
	return classPathBytes(mod, name), i + 1, true
}

// fastBytes recognises a state pickle "[PROTO n] [FRAME n] <bytes|py2 str
// opcode> [memo put] STOP". The returned slice aliases state.
func fastBytes(state []byte) ([]byte, bool) {
	i := skipProto(state, 0)
	if i >= len(state) {
		return nil, false
	}
	op := state[i]
	i++
	var l uint64
	switch op {
	case opShortBinbytes, opShortBinstring:
		if i+1 > len(state) {
			return nil, false
		}
		l = uint64(state[i])
		i++
	case opBinbytes, opBinstring:
		if i+4 > len(state) {
			return nil, false
		}
		l = uint64(binary.LittleEndian.Uint32(state[i:]))
		if op == opBinstring && int32(l) < 0 {
			return nil, false // let og-rek report it
		}
		i += 4
	case opBinbytes8:
		if i+8 > len(state) {
			return nil, false
		}
		l = binary.LittleEndian.Uint64(state[i:])
		i += 8
	default:
		return nil, false
	}
	if l > uint64(len(state)-i) {
		return nil, false
	}
	data := state[i : i+int(l)]
	i += int(l)
	i, ok := skipMemoPut(state, i)
	if !ok || i >= len(state) || state[i] != opStop {
		return nil, false
	}
	return data, true
}

// loadRef converts a persistent reference into zref.
//
// ZODB references are (oid, class) or, for classes with __getnewargs__, a
// bare oid; oid is 8 bytes (py3 bytes or py2 str). Cross-database and weak
// references (lists) are not used by wendelin.core and are rejected.
func loadRef(ref pickle.Ref) (any, error) {
	switch pid := ref.Pid.(type) {
	case pickle.Tuple:
		if len(pid) != 2 {
			return nil, fmt.Errorf("persistent reference: expected (oid, class); got tuple[%d]", len(pid))
		}
		oid, err := xoid(pid[0])
		if err != nil {
			return nil, err
		}
		var class string
		switch k := pid[1].(type) {
		case pickle.Class:
			class = classPath(k.Module, k.Name)
		case pickle.None:
			// class unknown
		default:
			c, err := pyClass(pickle.Tuple{k, pickle.None{}})
			if err != nil {
				return nil, fmt.Errorf("persistent reference: bad class %s", pyTypeName(k))
			}
			class = c
		}
		return zref{Oid: oid, Class: class}, nil

	case pickle.Bytes, pickle.ByteString:
		oid, err := xoid(pid)
		if err != nil {
			return nil, err
		}
		return zref{Oid: oid}, nil
	}
	return nil, fmt.Errorf("persistent reference: unsupported form %s", pyTypeName(ref.Pid))
}

// xoid converts an unpickled 8-byte big-endian oid.
func xoid(x any) (zodb.Oid, error) {
	b, err := pickle.AsBytes(x)
	if err != nil || len(b) != 8 {
		return 0, fmt.Errorf("persistent reference: oid must be 8 bytes; got %s", pyTypeName(x))
	}
	return zodb.Oid(binary.BigEndian.Uint64([]byte(b))), nil
}

// knownClasses are the classes the block path meets in every record.
var knownClasses = []string{
	ClassZData, ClassZBlk0, ClassZBlk1, ClassZBlk, ClassZBigFile,
	classIOBTree, classIOBucket, classLOBTree, classLOBucket,
}

// classPath returns mod + "." + name, without allocating for known classes.
func classPath(mod, name string) string {
	for _, c := range knownClasses {
		if len(c) == len(mod)+1+len(name) && c[len(mod)] == '.' && c[:len(mod)] == mod && c[len(mod)+1:] == name {
			return c
		}
	}
	return mod + "." + name
}

// classPathBytes is classPath for byte slices.
func classPathBytes(mod, name []byte) string {
	for _, c := range knownClasses {
		if len(c) == len(mod)+1+len(name) && c[len(mod)] == '.' && c[:len(mod)] == string(mod) && c[len(mod)+1:] == string(name) {
			return c
		}
	}
	return string(mod) + "." + string(name)
}

// ---- opcode helpers ----

// skipProto skips PROTO n and FRAME n opcodes at data[i:].
func skipProto(data []byte, i int) int {
	for {
		switch {
		case i+1 < len(data) && data[i] == opProto && data[i+1] <= 5:
			i += 2
		case i+8 < len(data) && data[i] == opFrame:
			i += 9
		default:
			return i
		}
	}
}

// skipMemoPut skips one optional memo store opcode at data[i:].
func skipMemoPut(data []byte, i int) (int, bool) {
	if i >= len(data) {
		return i, false
	}
	switch data[i] {
	case opBinput:
		i += 2
	case opLongBinput:
		i += 5
	case opMemoize:
		i++
	case opPut:
		_, j, ok := readLine(data, i+1)
		if !ok {
			return i, false
		}
		i = j
	}
	return i, i <= len(data)
}

// readLine returns data[i:] up to the next '\n' and the position after it.
func readLine(data []byte, i int) (line []byte, next int, ok bool) {
	if i > len(data) {
		return nil, i, false
	}
	j := bytes.IndexByte(data[i:], '\n')
	if j < 0 {
		return nil, i, false
	}
	return data[i : i+j], i + j + 1, true
}

// classShort returns the last component of a dotted class path.
func classShort(class string) string {
	if i := strings.LastIndexByte(class, '.'); i >= 0 {
		return class[i+1:]
	}
	return class
}
