// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zpickle

// The decoder against og-rek, the general pickle decoder neo/go uses:
// whatever the machine accepts, og-rek decodes to the same values, and every
// state decoder gives what an interpretation of og-rek's values written
// independently here (the oracle) gives. Seed corpus: testdata/fuzz/FuzzDecode
// (records of the genuine-ZODB fixtures, see TestGenFuzzSeeds, and inputs
// that once failed).
//
//	go test -run=NONE -fuzz=FuzzDecode -fuzztime=1m ./gocore/internal/zpickle

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"testing"
	"unsafe"

	pickle "github.com/kisielk/og-rek"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

func FuzzDecode(f *testing.F) {
	for _, d := range dialects {
		for _, c := range layouts() {
			f.Add(d.pickle(c.class, c.state))
		}
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		checkRecord(t, rec)
	})
}

// checkRecord checks every decoder on rec against og-rek and the oracle.
func checkRecord(t *testing.T, rec []byte) {
	t.Helper()
	var r results
	r.decode(rec)
	r.checkInvariants(t, rec)

	m := getMachine(rec)
	defer m.release()
	cls, err1 := m.run()
	st, err2 := m.run()
	if err1 != nil || err2 != nil {
		return // the machine refuses the record: the decoders fail
	}

	// og-rek decodes the same values
	d := pickle.NewDecoderWithConfig(bytes.NewReader(rec), &pickle.DecoderConfig{
		StrictUnicode:  true,
		PersistentLoad: oracleRef,
	})
	ocls, err := d.Decode()
	if err != nil {
		t.Fatalf("machine decodes %q; og-rek fails on the class: %v", rec, err)
	}
	ost, err := d.Decode()
	if err != nil {
		t.Fatalf("machine decodes %q; og-rek fails on the state: %v", rec, err)
	}
	seen := map[[2]any]bool{}
	if !m.equal(cls, ocls, seen) || !m.equal(st, ost, seen) {
		t.Fatalf("%q:\nmachine class %s, state %s\nog-rek  class %#v, state %#v", rec, m.typeName(cls), m.typeName(st), ocls, ost)
	}

	// and the decoders give what the oracle gives
	var o results
	o.oracle(ocls, ost)
	if !reflect.DeepEqual(r.cmp(), o.cmp()) {
		t.Fatalf("%q:\ndecoder %+v\noracle  %+v", rec, r.cmp(), o.cmp())
	}
}

// results are the outcomes of every decoder on one record.
type results struct {
	class    string
	classErr error
	bytes    []byte
	bytesErr error
	ref      Ref
	refErr   error
	zf       ZBigFileState
	zfErr    error
	node     [3]Node // by Family (0 unused)
	nodeErr  [3]error
}

func (r *results) decode(rec []byte) {
	r.class, r.classErr = Class(rec)
	var class string
	class, r.bytes, r.bytesErr = DecodeBytes(rec)
	r.checkClass(class)
	class, r.ref, r.refErr = DecodeRef(rec)
	r.checkClass(class)
	class, r.zf, r.zfErr = DecodeZBigFile(rec)
	r.checkClass(class)
	for _, f := range []Family{IO, LO} {
		r.node[f], r.nodeErr[f] = DecodeNode(rec, f)
	}
}

// checkClass: the decoders return the class whenever Class does.
func (r *results) checkClass(class string) {
	if class != "" && class != r.class {
		panic(fmt.Sprintf("class %q; Class: %q", class, r.class))
	}
}

// cmp returns what must match between the decoder and the oracle: values,
// and whether there was an error.
func (r *results) cmp() []any {
	v := []any{r.class, r.classErr == nil, string(r.bytes), r.bytesErr == nil, r.ref, r.refErr == nil,
		r.zf, r.zfErr == nil}
	for _, f := range []Family{IO, LO} {
		v = append(v, r.node[f], r.nodeErr[f] == nil)
	}
	return v
}

// checkInvariants checks what the decoders promise, whatever the record.
func (r *results) checkInvariants(t *testing.T, rec []byte) {
	t.Helper()
	if r.bytesErr == nil && len(r.bytes) > 0 {
		p, r0 := uintptr(unsafe.Pointer(&r.bytes[0])), uintptr(unsafe.Pointer(&rec[0]))
		if p < r0 || p >= r0+uintptr(len(rec)) {
			t.Fatalf("DecodeBytes: data does not alias the record")
		}
	}
	for _, f := range []Family{IO, LO} {
		n, err := r.node[f], r.nodeErr[f]
		if err != nil {
			continue
		}
		lo, hi := f.keyRange()
		ok := len(n.Keys) == len(n.Kids) && (n.Kind == Tree || n.Kind == Bucket)
		ok = ok && (n.Kind == Tree || len(n.Kids) == 0 && !n.Inline)
		ok = ok && !(n.Inline && len(n.Kids) > 0)
		ok = ok && (len(n.Kids) > 0) == (n.FirstBucket != zodb.InvalidOid)
		for i, k := range n.Keys {
			ok = ok && (i == 0 && k == 0 || i > 0 && k >= lo && k <= hi && (i == 1 || k > n.Keys[i-1]))
		}
		for i, e := range n.Entries {
			ok = ok && e.Key >= lo && e.Key <= hi && (i == 0 || e.Key > n.Entries[i-1].Key)
		}
		if !ok {
			t.Fatalf("DecodeNode(%s) gave an invalid node %+v", f.TreeClass(), n)
		}
	}
}

// ---- the oracle: og-rek's values interpreted ----

// oracleRef is og-rek's PersistentLoad: an 8-byte oid, or (oid, class).
func oracleRef(ref pickle.Ref) (any, error) {
	pid := ref.Pid
	var xclass any = pickle.None{}
	if t, ok := pid.(pickle.Tuple); ok {
		if len(t) != 2 {
			return nil, errors.New("bad pid")
		}
		pid, xclass = t[0], t[1]
	}
	b, err := pickle.AsBytes(pid)
	if err != nil || len(b) != 8 {
		return nil, errors.New("bad oid")
	}
	r := Ref{Oid: zodb.Oid(new(big.Int).SetBytes([]byte(b)).Uint64())}
	if r.Oid == zodb.InvalidOid {
		return nil, errors.New("invalid oid")
	}
	switch c := xclass.(type) {
	case pickle.None:
	case pickle.Class:
		r.Class = c.Module + "." + c.Name
	default:
		return nil, errors.New("bad class")
	}
	return r, nil
}

func (o *results) oracle(xclass, state any) {
	fail := errors.New("oracle")
	o.class, o.classErr = oracleClass(xclass)
	o.bytesErr, o.refErr, o.zfErr = fail, fail, fail
	o.nodeErr = [3]error{fail, fail, fail}
	if o.classErr != nil {
		return
	}
	if b, err := pickle.AsBytes(state); err == nil {
		o.bytes, o.bytesErr = []byte(b), nil
	}
	if r, ok := state.(Ref); ok {
		o.ref, o.refErr = r, nil
	}
	if t, ok := state.(pickle.Tuple); ok && len(t) == 2 {
		blksize, err := xint(t[0])
		blktab, ok := t[1].(Ref)
		if err == nil && ok {
			o.zf, o.zfErr = ZBigFileState{BlkSize: blksize, BlkTab: blktab}, nil
		}
	}
	for _, f := range []Family{IO, LO} {
		switch o.class {
		case f.TreeClass():
			o.node[f], o.nodeErr[f] = oracleTree(f, state)
		case f.BucketClass():
			n := Node{Kind: Bucket, FirstBucket: zodb.InvalidOid}
			n.Entries, n.Next, o.nodeErr[f] = oracleBucket(f, state)
			o.node[f] = n
		}
		if o.nodeErr[f] != nil {
			o.node[f] = Node{}
		}
	}
}

func oracleClass(x any) (string, error) {
	if t, ok := x.(pickle.Tuple); ok && len(t) == 2 {
		x = t[0]
		if mn, ok := x.(pickle.Tuple); ok && len(mn) == 2 {
			mod, err1 := pickle.AsString(mn[0])
			name, err2 := pickle.AsString(mn[1])
			if err1 != nil || err2 != nil {
				return "", errors.New("bad (module, name)")
			}
			return mod + "." + name, nil
		}
	}
	if c, ok := x.(pickle.Class); ok {
		return c.Module + "." + c.Name, nil
	}
	return "", errors.New("bad class")
}

// xint converts a Python int (not a bool) that fits int64.
func xint(x any) (int64, error) {
	if _, ok := x.(bool); ok {
		return 0, errors.New("bool")
	}
	return pickle.AsInt64(x)
}

func oracleKey(f Family, x any) (int64, error) {
	k, err := xint(x)
	lo, hi := f.keyRange()
	if err != nil || k < lo || k > hi {
		return 0, errors.New("bad key")
	}
	return k, nil
}

// oracleNodeRef: a reference to a node of f, of kind want (0: either).
func oracleNodeRef(f Family, x any, want Kind) (Ref, Kind, error) {
	r, ok := x.(Ref)
	if !ok {
		return r, 0, errors.New("not a ref")
	}
	switch {
	case r.Class == "":
		return r, 0, nil
	case r.Class == f.TreeClass() && want != Bucket:
		return r, Tree, nil
	case r.Class == f.BucketClass() && want != Tree:
		return r, Bucket, nil
	}
	return r, 0, errors.New("bad node class")
}

func oracleBucket(f Family, x any) (entries []Entry, next zodb.Oid, err error) {
	next = zodb.InvalidOid
	t, ok := x.(pickle.Tuple)
	if !ok || len(t) < 1 || len(t) > 2 {
		return nil, next, errors.New("bad bucket")
	}
	kv, ok := t[0].(pickle.Tuple)
	if !ok || len(kv)%2 != 0 {
		return nil, next, errors.New("bad bucket data")
	}
	if len(t) == 2 {
		r, _, err := oracleNodeRef(f, t[1], Bucket)
		if err != nil {
			return nil, next, err
		}
		next = r.Oid
	}
	entries = []Entry{}
	for i := 0; i < len(kv); i += 2 {
		k, err := oracleKey(f, kv[i])
		v, ok := kv[i+1].(Ref)
		if err != nil || !ok || len(entries) > 0 && k <= entries[len(entries)-1].Key {
			return nil, next, errors.New("bad entry")
		}
		entries = append(entries, Entry{k, v.Oid})
	}
	return entries, next, nil
}

func oracleTree(f Family, x any) (n Node, err error) {
	n = Node{Kind: Tree, FirstBucket: zodb.InvalidOid, Next: zodb.InvalidOid}
	if _, ok := x.(pickle.None); ok {
		return n, nil
	}
	t, ok := x.(pickle.Tuple)
	if !ok || len(t) < 1 || len(t) > 2 {
		return n, errors.New("bad tree")
	}
	if len(t) == 1 {
		b, ok := t[0].(pickle.Tuple)
		if !ok || len(b) != 1 {
			return n, errors.New("bad inline bucket")
		}
		n.Inline = true
		n.Entries, n.Next, err = oracleBucket(f, b[0])
		return n, err
	}
	first, _, err := oracleNodeRef(f, t[1], Bucket)
	if err != nil {
		return n, err
	}
	n.FirstBucket = first.Oid
	d, ok := t[0].(pickle.Tuple)
	if !ok || len(d)%2 != 1 {
		return n, errors.New("bad tree data")
	}
	var kinds []Kind
	for i := 0; i < len(d); i += 2 {
		key := int64(0)
		if i > 0 {
			if key, err = oracleKey(f, d[i-1]); err != nil {
				return n, err
			}
			if i > 2 && key <= n.Keys[len(n.Keys)-1] {
				return n, errors.New("keys not ascending")
			}
		}
		r, kind, err := oracleNodeRef(f, d[i], 0)
		if err != nil {
			return n, err
		}
		n.Keys = append(n.Keys, key)
		n.Kids = append(n.Kids, r.Oid)
		kinds = append(kinds, kind)
	}
	named := slices.DeleteFunc(slices.Clone(kinds), func(k Kind) bool { return k == 0 })
	if len(slices.Compact(named)) > 1 {
		return n, errors.New("kids of mixed kinds")
	}
	if len(named) == len(kinds) {
		n.KidKind = named[0]
	}
	return n, nil
}

// ---- machine values vs og-rek's ----

// equal tells whether the machine value v is og-rek's x. seen holds the
// pairs of tuples already compared: memoized tuples are shared in both, and
// are compared once.
func (m *machine) equal(v val, x any, seen map[[2]any]bool) bool {
	switch v.kind {
	case kNone:
		_, ok := x.(pickle.None)
		return ok
	case kBool:
		b, ok := x.(bool)
		return ok && b == (v.i != 0)
	case kInt:
		i, err := xint(x)
		return err == nil && i == v.i
	case kBytes:
		b, ok := x.(pickle.Bytes)
		return ok && string(b) == string(m.span(v))
	case kStr:
		s, ok := x.(pickle.ByteString)
		return ok && string(s) == string(m.span(v))
	case kUnicode:
		s, ok := x.(string)
		return ok && s == string(m.span(v))
	case kClass:
		c, ok := x.(pickle.Class)
		return ok && c.Module+"."+c.Name == m.classes[v.i]
	case kRef:
		r, ok := x.(Ref)
		return ok && r == m.refOf(v)
	case kTuple:
		t, ok := x.(pickle.Tuple)
		if !ok || len(t) != int(v.n) {
			return false
		}
		if len(t) == 0 {
			return true
		}
		key := [2]any{v.i, &t[0]}
		if seen[key] {
			return true
		}
		seen[key] = true
		for i, item := range m.items(v) {
			if !m.equal(item, t[i], seen) {
				return false
			}
		}
		return true
	}
	return false
}
