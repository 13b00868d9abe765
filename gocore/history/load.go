// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

// Loading of blktab records (LOBTree, LOBucket).
//
// The history compares the states of BTree nodes at two revisions for every
// commit. It needs only keys and oids, so it reads the records straight from
// the storage and decodes them with gocore/internal/zpickle: no
// zodb.Connection, no live objects, one storage load per node state (a
// Connection's Get loads an object twice when it is not referenced from an
// object already in its cache).

import (
	"context"
	"errors"
	"fmt"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/zpickle"
)

// ErrCorrupt is the class of errors about blktab data that is not a valid
// LOBTree: a record that does not decode, kids of mixed kinds, keys out of
// order, a node reachable twice, ...
var ErrCorrupt = errors.New("corrupt blktab")

func corruptf(format string, argv ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, argv...))
}

// treeState is what the index keeps of an LOBTree node.
//
// An LOBTree is empty (no kids, no inline), or holds its only bucket inside
// its own record (inline: a small tree whose bucket never got an oid), or
// has kids, all of the same kind, in key order.
type treeState struct {
	kids     []zodb.Oid
	kidKind  zpickle.Kind
	inline   []zpickle.Entry
	isInline bool
}

// loader reads blktab node states from the storage at given revisions.
type loader struct {
	stor zodb.IStorage
}

// node loads the record oid as of at and decodes it as a node of kind want.
func (l *loader) node(ctx context.Context, oid zodb.Oid, at zodb.Tid, want zpickle.Kind) (zpickle.Node, error) {
	what := zpickle.Short(zpickle.LO.TreeClass())
	if want == zpickle.Bucket {
		what = zpickle.Short(zpickle.LO.BucketClass())
	}
	buf, _, err := l.stor.Load(ctx, zodb.Xid{Oid: oid, At: at})
	if err != nil {
		return zpickle.Node{}, fmt.Errorf("load %s %s @%s: %w", what, oid, at, err)
	}
	n, err := zpickle.DecodeNode(buf.Data, zpickle.LO)
	buf.Release()
	switch {
	case err != nil:
		err = fmt.Errorf("%w: %w", ErrCorrupt, err)
	case n.Kind != want:
		err = corruptKind(n.Kind)
	case n.Kind == zpickle.Tree && len(n.Kids) > 0 && n.KidKind == 0:
		err = corruptf("a kid's reference does not say its class")
	default:
		for _, e := range n.Entries {
			if e.Value == 0 {
				err = corruptf("the value of key %d refers to oid 0", e.Key)
				break
			}
		}
	}
	if err != nil {
		return zpickle.Node{}, fmt.Errorf("%s %s @%s: %w", what, oid, at, err)
	}
	return n, nil
}

func corruptKind(k zpickle.Kind) error {
	if k == zpickle.Tree {
		return corruptf("a %s where a bucket is expected", zpickle.LO.TreeClass())
	}
	return corruptf("a %s where a tree is expected", zpickle.LO.BucketClass())
}

// tree loads the state of the LOBTree oid as of at.
func (l *loader) tree(ctx context.Context, oid zodb.Oid, at zodb.Tid) (*treeState, error) {
	n, err := l.node(ctx, oid, at, zpickle.Tree)
	if err != nil {
		return nil, err
	}
	return &treeState{kids: n.Kids, kidKind: n.KidKind, inline: n.Entries, isInline: n.Inline}, nil
}

// bucket loads the entries of the LOBucket oid as of at.
func (l *loader) bucket(ctx context.Context, oid zodb.Oid, at zodb.Tid) ([]zpickle.Entry, error) {
	n, err := l.node(ctx, oid, at, zpickle.Bucket)
	return n.Entries, err
}
