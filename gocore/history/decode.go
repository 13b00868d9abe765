// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

// Raw decoding of blktab records (LOBTree, LOBucket).
//
// The history compares the states of BTree nodes at two revisions for every
// commit. It needs only keys and oids, so it reads the records straight from
// the storage and decodes them here: no zodb.Connection, no live objects, one
// storage load per node state (a Connection's Get loads an object twice when
// it is not referenced from an object already in its cache).

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	pickle "github.com/kisielk/og-rek"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

const (
	classLOBTree  = "BTrees.LOBTree.LOBTree"
	classLOBucket = "BTrees.LOBTree.LOBucket"
)

// ErrCorrupt is the class of errors about blktab data that is not a valid
// LOBTree: a record that does not decode, children of mixed kinds, keys out
// of order, a node reachable twice, ...
var ErrCorrupt = errors.New("corrupt blktab")

func corruptf(format string, argv ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, argv...))
}

// entry is one key of a bucket: block number → ZBlk oid.
type entry struct {
	key int64
	val zodb.Oid
}

// nodeKind says whether a blktab node is an interior node or a bucket.
type nodeKind uint8

const (
	kindTree   nodeKind = 1 // LOBTree
	kindBucket nodeKind = 2 // LOBucket
)

// treeState is the decoded state of an LOBTree record.
//
// An LOBTree is empty (no kids, no inline), or holds its only bucket inside
// its own record (inline: a small tree whose bucket never got an oid), or
// has kids, all of the same kind, in key order.
type treeState struct {
	kids     []zodb.Oid
	kidKind  nodeKind
	inline   []entry
	isInline bool
}

// pref is a decoded persistent reference.
type pref struct {
	oid   zodb.Oid
	class string // "" if the reference does not say
}

// loadPRef turns a ZODB persistent id into a pref: either oid or (oid, class),
// the forms ZODB writes for references inside one database.
func loadPRef(ref pickle.Ref) (any, error) {
	var xoid, xclass any
	switch pid := ref.Pid.(type) {
	case pickle.Tuple:
		if len(pid) != 2 {
			return nil, fmt.Errorf("persistent reference: expected (oid, class); got tuple[%d]", len(pid))
		}
		xoid, xclass = pid[0], pid[1]
	default:
		xoid = pid
	}
	b, err := pickle.AsBytes(xoid)
	if err != nil || len(b) != 8 {
		return nil, fmt.Errorf("persistent reference: invalid oid (%T)", xoid)
	}
	r := pref{oid: zodb.Oid(binary.BigEndian.Uint64([]byte(b)))}
	if xclass != nil {
		r.class, err = className(xclass)
		if err != nil {
			return nil, fmt.Errorf("persistent reference: %w", err)
		}
	}
	return r, nil
}

// className returns the "module.name" path of a class description:
// class, (class, args) or ((module, name), args).
func className(x any) (string, error) {
	if t, ok := x.(pickle.Tuple); ok && len(t) == 2 {
		x = t[0]
		if mn, ok := x.(pickle.Tuple); ok && len(mn) == 2 {
			m, err1 := pickle.AsString(mn[0])
			n, err2 := pickle.AsString(mn[1])
			if err1 != nil || err2 != nil {
				return "", fmt.Errorf("invalid class (module, name)")
			}
			return m + "." + n, nil
		}
	}
	k, ok := x.(pickle.Class)
	if !ok {
		return "", fmt.Errorf("invalid class description (%T)", x)
	}
	return k.Module + "." + k.Name, nil
}

// decodeRecord decodes a ZODB data record: the class pickle and the state
// pickle, read with one decoder (the state may use the class pickle's memo).
func decodeRecord(rec []byte) (class string, state any, err error) {
	d := pickle.NewDecoderWithConfig(bytes.NewReader(rec), &pickle.DecoderConfig{
		StrictUnicode:  true,
		PyDict:         true,
		PersistentLoad: loadPRef,
	})
	x, err := d.Decode()
	if err != nil {
		return "", nil, corruptf("class pickle: %s", err)
	}
	class, err = className(x)
	if err != nil {
		return "", nil, corruptf("class pickle: %s", err)
	}
	state, err = d.Decode()
	if err != nil {
		return class, nil, corruptf("%s: state pickle: %s", class, err)
	}
	return class, state, nil
}

// decodeTree decodes an LOBTree record.
func decodeTree(rec []byte) (*treeState, error) {
	if st, ok := fastTree(rec); ok {
		return st, nil
	}
	return slowDecodeTree(rec)
}

// slowDecodeTree is decodeTree with the general pickle decoder.
func slowDecodeTree(rec []byte) (*treeState, error) {
	class, x, err := decodeRecord(rec)
	if err != nil {
		return nil, err
	}
	if class != classLOBTree {
		return nil, corruptf("expected %s; got %s", classLOBTree, class)
	}
	if _, ok := x.(pickle.None); ok {
		return &treeState{}, nil // empty tree
	}
	t, ok := x.(pickle.Tuple)
	if !ok || len(t) < 1 || len(t) > 2 {
		return nil, corruptf("LOBTree state: expected (data, firstbucket) or ((bucket,),); got %T", x)
	}
	if len(t) == 1 {
		// ((bucket_state,),): one bucket without an oid of its own
		b, ok := t[0].(pickle.Tuple)
		if !ok || len(b) != 1 {
			return nil, corruptf("LOBTree state: inline bucket: expected (bucket_state,)")
		}
		ev, err := bucketEntries(b[0])
		if err != nil {
			return nil, fmt.Errorf("inline bucket: %w", err)
		}
		return &treeState{inline: ev, isInline: true}, nil
	}

	// ((child0, key1, child1, ..., keyN, childN), firstbucket)
	d, ok := t[0].(pickle.Tuple)
	if !ok || len(d)%2 != 1 {
		return nil, corruptf("LOBTree state: data: expected odd-length tuple")
	}
	st := &treeState{kids: make([]zodb.Oid, 0, (len(d)+1)/2)}
	var kprev int64
	for i := 0; i < len(d); i += 2 {
		if i > 0 {
			k, err := pickle.AsInt64(d[i-1])
			if err != nil {
				return nil, corruptf("LOBTree state: key %d: %s", i/2, err)
			}
			if i > 2 && k <= kprev {
				return nil, corruptf("LOBTree state: keys not increasing at %d", i/2)
			}
			kprev = k
		}
		r, ok := d[i].(pref)
		if !ok {
			return nil, corruptf("LOBTree state: child %d: not a persistent reference (%T)", i/2, d[i])
		}
		var kind nodeKind
		switch r.class {
		case classLOBTree:
			kind = kindTree
		case classLOBucket:
			kind = kindBucket
		default:
			return nil, corruptf("LOBTree state: child %d: class %q is not LOBTree|LOBucket", i/2, r.class)
		}
		if st.kidKind != 0 && kind != st.kidKind {
			return nil, corruptf("LOBTree state: children of mixed kinds")
		}
		st.kidKind = kind
		st.kids = append(st.kids, r.oid)
	}
	return st, nil
}

// decodeBucket decodes an LOBucket record.
func decodeBucket(rec []byte) ([]entry, error) {
	if ev, ok := fastBucket(rec); ok {
		return ev, nil
	}
	return slowDecodeBucket(rec)
}

// slowDecodeBucket is decodeBucket with the general pickle decoder.
func slowDecodeBucket(rec []byte) ([]entry, error) {
	class, x, err := decodeRecord(rec)
	if err != nil {
		return nil, err
	}
	if class != classLOBucket {
		return nil, corruptf("expected %s; got %s", classLOBucket, class)
	}
	return bucketEntries(x)
}

// bucketEntries decodes a bucket state: ((k0, v0, k1, v1, ...),) or
// ((k0, v0, ...), next_bucket). Values must be persistent references.
func bucketEntries(x any) ([]entry, error) {
	t, ok := x.(pickle.Tuple)
	if !ok || len(t) < 1 || len(t) > 2 {
		return nil, corruptf("LOBucket state: expected (data,) or (data, next)")
	}
	d, ok := t[0].(pickle.Tuple)
	if !ok || len(d)%2 != 0 {
		return nil, corruptf("LOBucket state: data: expected even-length tuple")
	}
	ev := make([]entry, 0, len(d)/2)
	for i := 0; i < len(d); i += 2 {
		k, err := pickle.AsInt64(d[i])
		if err != nil {
			return nil, corruptf("LOBucket state: key %d: %s", i/2, err)
		}
		if i > 0 && k <= ev[len(ev)-1].key {
			return nil, corruptf("LOBucket state: keys not increasing at %d", i/2)
		}
		r, ok := d[i+1].(pref)
		if !ok {
			return nil, corruptf("LOBucket state: value of key %d: not a persistent reference (%T)", k, d[i+1])
		}
		if r.oid == 0 {
			return nil, corruptf("LOBucket state: value of key %d: oid 0", k)
		}
		ev = append(ev, entry{k, r.oid})
	}
	return ev, nil
}

// loader reads blktab node states from the storage at given revisions.
type loader struct {
	stor zodb.IStorage
}

// decode loads the record oid as of at and decodes it with dec.
func (l *loader) decode(ctx context.Context, oid zodb.Oid, at zodb.Tid, class string, dec func([]byte) error) error {
	buf, _, err := l.stor.Load(ctx, zodb.Xid{Oid: oid, At: at})
	if err != nil {
		return fmt.Errorf("load %s %s @%s: %w", class, oid, at, err)
	}
	defer buf.Release()
	if err := dec(buf.Data); err != nil {
		return fmt.Errorf("%s %s @%s: %w", class, oid, at, err)
	}
	return nil
}

// tree loads the state of the LOBTree oid as of at.
func (l *loader) tree(ctx context.Context, oid zodb.Oid, at zodb.Tid) (st *treeState, err error) {
	err = l.decode(ctx, oid, at, "LOBTree", func(rec []byte) error {
		st, err = decodeTree(rec)
		return err
	})
	return st, err
}

// bucket loads the entries of the LOBucket oid as of at.
func (l *loader) bucket(ctx context.Context, oid zodb.Oid, at zodb.Tid) (ev []entry, err error) {
	err = l.decode(ctx, oid, at, "LOBucket", func(rec []byte) error {
		ev, err = decodeBucket(rec)
		return err
	})
	return ev, err
}
