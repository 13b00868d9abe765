// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

// Package zpickle decodes the raw ZODB records WCFS reads straight from a
// storage, without a zodb.Connection: the states of ZBigFile, ZBlk0 (and its
// legacy name ZBlk), ZBlk1 and ZData (spec 4.1), and of the BTrees nodes of
// their tables, LOBTree/LOBucket (blktab) and IOBTree/IOBucket (ZBlk1 chunk
// tables). The data layer (gocore/zdata) uses it on the block path and to
// check records before neo/go decodes them; the block history
// (gocore/history) uses it to diff blktab nodes across revisions.
//
// # Records
//
// A ZODB data record is two pickles back to back, written by one pickler (the
// second may refer to the memo of the first): the class, then the state.
// The class is a class object (module.name), or (class, args), or
// ((module, name), args). Persistent references in the state are an oid, or
// (oid, class), the oid being 8 bytes (Python 3 bytes or Python 2 str).
//
// Decoded states:
//
//	ZBigFile            (blksize, blktab)                  DecodeZBigFile
//	ZBlk0, ZBlk, ZData  bytes (Python 2: str)              DecodeBytes
//	ZBlk1               reference to its IOBTree           DecodeRef
//	LOBTree, IOBTree    None                               DecodeNode: empty tree
//	                    ((bucket_state,),)                 one bucket stored inline
//	                    ((kid0, key1, kid1, ..., keyN, kidN), firstbucket)
//	LOBucket, IOBucket  ((k0, v0, k1, v1, ...),)  or  ((k0, v0, ...), next)
//
// Bucket values are references (to ZBlk0/ZBlk1 in a blktab, to ZData in a
// chunk table) and decode to the oids they refer to. The decoder checks what
// makes a BTree node valid: keys are ints of the family's range in ascending
// order, values are references, kids are references to nodes of the family,
// all trees or all buckets, firstbucket and next are references to buckets.
// Other checks (the range of a blksize, the class of the record a value
// refers to) are the callers'.
//
// # The machine
//
// The records are decoded by a small pickle machine that runs the opcodes
// Python's picklers write for such states in protocols 1 to 5 (Python 2 and
// 3), and no other: values are small structs, strings are spans of the
// record (DecodeBytes returns the data without copying it), tuples live in
// an arena, and a decoding allocates only its result. A record that uses
// another opcode (text protocol 0 strings, lists, dicts, floats, object
// construction, ...) is an error: no state of these classes holds such values
// and no ZODB writes protocol 0. Whatever the machine accepts, og-rek (the
// general decoder, which neo/go uses) decodes to the same values; the fuzz
// test checks that, and that every state decoder agrees with a reference
// interpretation of og-rek's values. Time and memory are linear in the
// record: memo indices must come in sequence as picklers write them, ints
// are at most int64, descents into values are bounded.
//
// Errors say what is wrong and where ("LOBucket state pickle: offset 12:
// memo entry 3 not set", "LOBucket state: key 2: None, not int"); every
// error means that the record is not a valid state of its class. Callers add
// the oid and the revision.
package zpickle

import (
	"fmt"
	"math"
	"strings"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// Class paths as wendelin.core and BTrees write them.
const (
	ClassZBigFile = "wendelin.bigfile.file_zodb.ZBigFile"
	ClassZBlk0    = "wendelin.bigfile.file_zodb.ZBlk0"
	ClassZBlk     = "wendelin.bigfile.file_zodb.ZBlk" // legacy name of ZBlk0
	ClassZBlk1    = "wendelin.bigfile.file_zodb.ZBlk1"
	ClassZData    = "wendelin.bigfile.file_zodb.ZData"

	ClassIOBTree  = "BTrees.IOBTree.IOBTree"
	ClassIOBucket = "BTrees.IOBTree.IOBucket"
	ClassLOBTree  = "BTrees.LOBTree.LOBTree"
	ClassLOBucket = "BTrees.LOBTree.LOBucket"
)

// knownClasses are returned without allocating, and told apart by index.
var knownClasses = [...]string{
	ClassZData, ClassZBlk0, ClassZBlk1, ClassZBlk, ClassZBigFile,
	ClassLOBucket, ClassLOBTree, ClassIOBucket, ClassIOBTree,
}

const (
	idLOBucket = 5
	idLOBTree  = 6
	idIOBucket = 7
	idIOBTree  = 8
)

// classPath returns module.name, without allocating for known classes, and
// its index in knownClasses (-1: not known).
func classPath(mod, name []byte) (string, int8) {
	for id, c := range knownClasses {
		if len(c) == len(mod)+1+len(name) && c[len(mod)] == '.' &&
			c[:len(mod)] == string(mod) && c[len(mod)+1:] == string(name) {
			return c, int8(id)
		}
	}
	return string(mod) + "." + string(name), -1
}

// Short returns the last component of a class path ("ZBlk0" for
// wendelin.bigfile.file_zodb.ZBlk0).
func Short(class string) string {
	return class[strings.LastIndexByte(class, '.')+1:]
}

// Ref is a persistent reference.
type Ref struct {
	Oid   zodb.Oid
	Class string // "" when the reference does not say
}

func (r Ref) String() string {
	if r.Class == "" {
		return fmt.Sprintf("ref %s", r.Oid)
	}
	return fmt.Sprintf("ref %s(%s)", r.Class, r.Oid)
}

// refOf converts a kRef value.
func (m *machine) refOf(v val) Ref {
	r := Ref{Oid: zodb.Oid(uint64(v.i))}
	if v.off >= 0 {
		r.Class = m.classes[v.off]
	}
	return r
}

// decode runs the class pickle of rec (and the state pickle, if state) and
// returns the machine, to be released after use, the class and the state.
// The class is returned as soon as the class pickle decoded, also with an
// error about the state.
func decode(rec []byte, state bool) (m *machine, class string, st val, err error) {
	if len(rec) > MaxRecord {
		return nil, "", val{}, fmt.Errorf("record of %d bytes: too large", len(rec))
	}
	m = getMachine(rec)
	x, err := m.run()
	if err == nil {
		class, err = m.className(x)
	}
	if err != nil {
		m.release()
		return nil, "", val{}, fmt.Errorf("class pickle: %w", err)
	}
	if state {
		st, err = m.run()
		if err != nil {
			m.release()
			return nil, class, val{}, fmt.Errorf("%s state pickle: %w", Short(class), err)
		}
	}
	return m, class, st, nil
}

// className resolves a class description: class, (class, args) or
// ((module, name), args).
func (m *machine) className(x val) (string, error) {
	if x.kind == kTuple {
		if x.n != 2 {
			return "", fmt.Errorf("expected class or (class, args); got %s", m.typeName(x))
		}
		x = m.items(x)[0]
		if x.kind == kTuple {
			mn := m.items(x)
			if x.n != 2 || !isString(mn[0]) || !isString(mn[1]) {
				return "", fmt.Errorf("expected (module, name); got %s", m.typeName(x))
			}
			path, _ := classPath(m.span(mn[0]), m.span(mn[1]))
			return path, nil
		}
	}
	if x.kind != kClass {
		return "", fmt.Errorf("expected class; got %s", m.typeName(x))
	}
	return m.classes[x.i], nil
}

// isString tells whether v is a unicode or a Python 2 str.
func isString(v val) bool { return v.kind == kUnicode || v.kind == kStr }

// Class decodes the class of a record.
func Class(rec []byte) (string, error) {
	m, class, _, err := decode(rec, false)
	if err != nil {
		return "", err
	}
	m.release()
	return class, nil
}

// DecodeBytes decodes a record whose state is bytes or a Python 2 str:
// ZBlk0, ZBlk, ZData. data aliases rec.
func DecodeBytes(rec []byte) (class string, data []byte, err error) {
	m, class, x, err := decode(rec, true)
	if err != nil {
		return class, nil, err
	}
	defer m.release()
	if x.kind != kBytes && x.kind != kStr {
		return class, nil, fmt.Errorf("%s state: expected bytes; got %s", Short(class), m.typeName(x))
	}
	return class, m.span(x), nil
}

// DecodeRef decodes a record whose state is a persistent reference: ZBlk1
// (to its chunk table).
func DecodeRef(rec []byte) (class string, ref Ref, err error) {
	m, class, x, err := decode(rec, true)
	if err != nil {
		return class, Ref{}, err
	}
	defer m.release()
	if x.kind != kRef {
		return class, Ref{}, fmt.Errorf("%s state: expected a persistent reference; got %s", Short(class), m.typeName(x))
	}
	return class, m.refOf(x), nil
}

// ZBigFileState is the state of a ZBigFile: (blksize, blktab).
type ZBigFileState struct {
	BlkSize int64
	BlkTab  Ref
}

// DecodeZBigFile decodes a record whose state is (blksize, blktab), as a
// ZBigFile's. It does not check the class, nor the range of blksize.
func DecodeZBigFile(rec []byte) (class string, st ZBigFileState, err error) {
	m, class, x, err := decode(rec, true)
	if err != nil {
		return class, st, err
	}
	defer m.release()
	if x.kind != kTuple || x.n != 2 {
		return class, st, fmt.Errorf("ZBigFile state: expected (blksize, blktab); got %s", m.typeName(x))
	}
	t := m.items(x)
	if t[0].kind != kInt {
		return class, st, fmt.Errorf("ZBigFile state: blksize: expected int; got %s", m.typeName(t[0]))
	}
	if t[1].kind != kRef {
		return class, st, fmt.Errorf("ZBigFile state: blktab: expected a persistent reference; got %s", m.typeName(t[1]))
	}
	return class, ZBigFileState{BlkSize: t[0].i, BlkTab: m.refOf(t[1])}, nil
}

// ---- BTrees ----

// Family is a family of BTrees: its tree and bucket classes and key range.
type Family uint8

const (
	IO Family = iota + 1 // IOBTree, IOBucket: int32 keys
	LO                   // LOBTree, LOBucket: int64 keys
)

// TreeClass returns the class path of the family's trees.
func (f Family) TreeClass() string { return knownClasses[f.ids()[Tree]] }

// BucketClass returns the class path of the family's buckets.
func (f Family) BucketClass() string { return knownClasses[f.ids()[Bucket]] }

// ids returns the indices of the tree and bucket classes in knownClasses,
// by Kind.
func (f Family) ids() [3]int8 {
	if f == IO {
		return [3]int8{-1, idIOBTree, idIOBucket}
	}
	return [3]int8{-1, idLOBTree, idLOBucket}
}

func (f Family) keyRange() (lo, hi int64) {
	if f == IO {
		return math.MinInt32, math.MaxInt32
	}
	return math.MinInt64, math.MaxInt64
}

// Kind says whether a BTree node is an interior node (tree) or a bucket.
type Kind uint8

const (
	Tree   Kind = 1
	Bucket Kind = 2
)

// Entry is one key of a bucket and its value, the oid of the object the
// value refers to. (The class a reference names is not kept: it is a hint,
// and callers check the records they load.)
type Entry struct {
	Key   int64
	Value zodb.Oid
}

// Node is the decoded state of a BTree node: a tree or a bucket.
type Node struct {
	Kind Kind

	// A tree with kids: Kids[i] covers the keys ≥ Keys[i] (Keys[0] is
	// unused: 0 for -∞) and < Keys[i+1]; they are all trees or all
	// buckets (KidKind; 0 when a reference does not say its class);
	// FirstBucket is the leftmost bucket. An empty tree, or a tree whose
	// only bucket is stored inline, has no kids and FirstBucket =
	// zodb.InvalidOid.
	Keys        []int64
	Kids        []zodb.Oid
	KidKind     Kind
	FirstBucket zodb.Oid

	// A bucket, or a tree with its only bucket stored inline (Inline):
	// the entries by ascending key, and the next bucket (zodb.InvalidOid
	// if none).
	Entries []Entry
	Inline  bool
	Next    zodb.Oid
}

// DecodeNode decodes a record of the tree or the bucket class of family f.
func DecodeNode(rec []byte, f Family) (Node, error) {
	m, class, x, err := decode(rec, true)
	if err != nil {
		return Node{}, err
	}
	defer m.release()
	n := Node{FirstBucket: zodb.InvalidOid, Next: zodb.InvalidOid}
	switch class {
	case f.TreeClass():
		n.Kind = Tree
		err = m.tree(f, x, &n)
	case f.BucketClass():
		n.Kind = Bucket
		err = m.bucket(f, x, &n)
	default:
		err = fmt.Errorf("class %s, expected %s or %s", class, f.TreeClass(), f.BucketClass())
	}
	if err != nil {
		return Node{}, err
	}
	return n, nil
}

// tree interprets a tree state into n.
func (m *machine) tree(f Family, x val, n *Node) error {
	name := Short(f.TreeClass())
	if x.kind == kNone {
		return nil // empty
	}
	if x.kind != kTuple || !(x.n == 1 || x.n == 2) {
		return fmt.Errorf("%s state: expected None or tuple[1..2]; got %s", name, m.typeName(x))
	}
	t := m.items(x)
	if x.n == 1 {
		// ((bucket_state,),)
		if t[0].kind != kTuple || t[0].n != 1 {
			return fmt.Errorf("%s state: inline bucket: expected tuple[1]; got %s", name, m.typeName(t[0]))
		}
		n.Inline = true
		if err := m.bucket(f, m.items(t[0])[0], n); err != nil {
			return fmt.Errorf("%s state: inline bucket: %w", name, err)
		}
		return nil
	}

	// ((kid0, key1, kid1, ..., keyN, kidN), firstbucket)
	if t[0].kind != kTuple || t[0].n%2 != 1 {
		return fmt.Errorf("%s state: expected (kid0, key1, kid1, ...); got %s", name, m.typeName(t[0]))
	}
	var err error
	if n.FirstBucket, _, err = m.nodeRef(f, t[1], Bucket); err != nil {
		return fmt.Errorf("%s state: firstbucket: %w", name, err)
	}
	d := m.items(t[0])
	nkid := (len(d) + 1) / 2
	keys := make([]int64, nkid)
	kids := make([]zodb.Oid, nkid)
	lo, hi := f.keyRange()
	ids := f.ids()
	var kidKind Kind
	unnamed := false
	for i := range kids {
		if i > 0 {
			k := d[2*i-1]
			if k.kind != kInt || k.i < lo || k.i > hi || i > 1 && k.i <= keys[i-1] {
				if _, err := m.key(f, k); err != nil {
					return fmt.Errorf("%s state: key %d: %w", name, i, err)
				}
				return fmt.Errorf("%s state: keys not ascending at %d", name, i)
			}
			keys[i] = k.i
		}
		// nodeRef, inlined for the common case
		x := d[2*i]
		var kind Kind
		switch {
		case x.kind == kRef && x.off < 0:
			unnamed = true
		case x.kind == kRef && m.known[x.off] == ids[Tree]:
			kind = Tree
		case x.kind == kRef && m.known[x.off] == ids[Bucket]:
			kind = Bucket
		default:
			_, _, err := m.nodeRef(f, x, 0)
			return fmt.Errorf("%s state: kid %d: %w", name, i, err)
		}
		if kind != 0 && kind != kidKind {
			if kidKind != 0 {
				return fmt.Errorf("%s state: kids of mixed kinds", name)
			}
			kidKind = kind
		}
		kids[i] = zodb.Oid(x.i)
	}
	if !unnamed {
		n.KidKind = kidKind
	}
	n.Keys, n.Kids = keys, kids
	return nil
}

// nodeRef interprets a reference to a node of family f, of kind want (0:
// either), and returns the oid and the kind the reference names (0: it names
// no class).
func (m *machine) nodeRef(f Family, x val, want Kind) (zodb.Oid, Kind, error) {
	if x.kind != kRef {
		return 0, 0, fmt.Errorf("expected a persistent reference; got %s", m.typeName(x))
	}
	if x.off < 0 {
		return zodb.Oid(x.i), 0, nil
	}
	ids := f.ids()
	switch id := m.known[x.off]; {
	case id == ids[Tree] && want != Bucket:
		return zodb.Oid(x.i), Tree, nil
	case id == ids[Bucket] && want != Tree:
		return zodb.Oid(x.i), Bucket, nil
	}
	what := Short(f.TreeClass()) + " or " + Short(f.BucketClass())
	if want == Bucket {
		what = Short(f.BucketClass())
	}
	return 0, 0, fmt.Errorf("%s is not a %s", m.refOf(x), what)
}

// bucket interprets a bucket state into n.
func (m *machine) bucket(f Family, x val, n *Node) error {
	name := Short(f.BucketClass())
	if x.kind != kTuple || !(x.n == 1 || x.n == 2) {
		return fmt.Errorf("%s state: expected tuple[1..2]; got %s", name, m.typeName(x))
	}
	t := m.items(x)
	if t[0].kind != kTuple || t[0].n%2 != 0 {
		return fmt.Errorf("%s state: expected (k0, v0, k1, v1, ...); got %s", name, m.typeName(t[0]))
	}
	if x.n == 2 {
		var err error
		if n.Next, _, err = m.nodeRef(f, t[1], Bucket); err != nil {
			return fmt.Errorf("%s state: next: %w", name, err)
		}
	}
	kv := m.items(t[0])
	lo, hi := f.keyRange()
	entries := make([]Entry, len(kv)/2)
	prev := int64(0)
	for i := range entries {
		k, v := kv[2*i], kv[2*i+1]
		if k.kind != kInt || k.i < lo || k.i > hi || i > 0 && k.i <= prev || v.kind != kRef {
			return m.badEntry(f, name, i, k, v, prev)
		}
		entries[i] = Entry{Key: k.i, Value: zodb.Oid(v.i)}
		prev = k.i
	}
	n.Entries = entries
	return nil
}

// badEntry says what is wrong with entry i (key k, value v) of a bucket,
// after a key prev.
func (m *machine) badEntry(f Family, name string, i int, k, v val, prev int64) error {
	if _, err := m.key(f, k); err != nil {
		return fmt.Errorf("%s state: key %d: %w", name, i, err)
	}
	if i > 0 && k.i <= prev {
		return fmt.Errorf("%s state: keys not ascending at %d", name, i)
	}
	return fmt.Errorf("%s state: value of key %d is %s, not a persistent reference", name, k.i, m.typeName(v))
}

// key interprets a key of family f.
func (m *machine) key(f Family, k val) (int64, error) {
	if k.kind != kInt {
		return 0, fmt.Errorf("%s, not int", m.typeName(k))
	}
	if lo, hi := f.keyRange(); k.i < lo || k.i > hi {
		return 0, fmt.Errorf("%d out of the key range", k.i)
	}
	return k.i, nil
}
