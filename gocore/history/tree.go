// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

// The index of a blktab (its interior nodes and bucket oids) and the diff of
// a blktab across one commit.

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"golang.org/x/sync/errgroup"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/zpickle"
)

// loadParallel bounds the number of node loads one diff or index load runs
// at the same time (they matter for network storages).
const loadParallel = 16

// parallel runs fn(i) for i in [0, n), at most loadParallel at a time, and
// returns the first error (the others are canceled through ctx).
func parallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(loadParallel)
	for i := 0; i < n; i++ {
		g.Go(func() error { return fn(gctx, i) })
	}
	return g.Wait()
}

// maxDepth bounds tree walks: an LOBTree over int64 keys is far shallower; a
// cycle in damaged data is reported instead of looping.
const maxDepth = 64

// tnode is an interior node (LOBTree) of a blktab as known to the index.
type tnode struct {
	parent zodb.Oid // zodb.InvalidOid for the root
	st     *treeState
}

// treeIndex knows the shape of one blktab as of one revision: every interior
// node with its children, and the set of bucket oids. Bucket contents are not
// kept: interior nodes are few (a 1 TiB file of 2 MiB blocks has some
// 17,000 buckets under ~70 interior nodes), buckets are many.
type treeIndex struct {
	root    zodb.Oid
	nodes   map[zodb.Oid]*tnode
	buckets map[zodb.Oid]struct{}
}

// loadIndex loads the index of the LOBTree root as of at.
func loadIndex(ctx context.Context, ld *loader, root zodb.Oid, at zodb.Tid) (*treeIndex, error) {
	t := &treeIndex{
		root:    root,
		nodes:   make(map[zodb.Oid]*tnode),
		buckets: make(map[zodb.Oid]struct{}),
	}
	level := []zodb.Oid{root}
	parents := []zodb.Oid{zodb.InvalidOid}
	for depth := 0; len(level) > 0; depth++ {
		if depth > maxDepth {
			return nil, corruptf("LOBTree %s @%s: deeper than %d levels", root, at, maxDepth)
		}
		states := make([]*treeState, len(level))
		err := parallel(ctx, len(level), func(ctx context.Context, i int) (err error) {
			states[i], err = ld.tree(ctx, level[i], at)
			return err
		})
		if err != nil {
			return nil, err
		}
		var next, nextParents []zodb.Oid
		for i, oid := range level {
			st := states[i]
			t.nodes[oid] = &tnode{parent: parents[i], st: st}
			for _, kid := range st.kids {
				if _, dup := t.nodes[kid]; dup || t.hasBucket(kid) || slices.Contains(next, kid) {
					return nil, corruptf("LOBTree %s @%s: node %s reachable twice", root, at, kid)
				}
				if st.kidKind == zpickle.Bucket {
					t.buckets[kid] = struct{}{}
				} else {
					next = append(next, kid)
					nextParents = append(nextParents, oid)
				}
			}
		}
		level, parents = next, nextParents
	}
	return t, nil
}

func (t *treeIndex) hasBucket(oid zodb.Oid) bool {
	_, ok := t.buckets[oid]
	return ok
}

// keyChange is a change of one blktab key: its ZBlk oid before and after
// (0: the key is absent).
type keyChange struct {
	key      int64
	old, new zodb.Oid
}

// treeDelta is what one commit did to a blktab: the changed keys, and the
// patch that brings the index from the old revision to the new one.
type treeDelta struct {
	changes []keyChange // by ↑ key

	setNodes   map[zodb.Oid]*tnode // interior nodes added, changed or moved
	delNodes   []zodb.Oid          // interior nodes no longer in the tree
	addBuckets []zodb.Oid          // buckets new to the tree
	delBuckets []zodb.Oid          // buckets no longer in the tree
}

// diff computes the key changes of the tree between revisions prev and at,
// where changed are the nodes and buckets of t (t is the index as of prev)
// whose records the commit at changed. t is not modified.
//
// Only changed records are loaded: an unchanged bucket has the same entries
// at both revisions, and an unchanged subtree with no changed node below it
// is the same subtree, wherever it hangs. Both revisions' entries of the
// remaining buckets are compared key by key, so entries moved between
// buckets by a split or a merge cancel, and a key whose value changed is a
// change.
func (t *treeIndex) diff(ctx context.Context, ld *loader, changed map[zodb.Oid]struct{}, prev, at zodb.Tid) (*treeDelta, error) {
	δ := &treeDelta{setNodes: make(map[zodb.Oid]*tnode)}
	isChanged := func(oid zodb.Oid) bool { _, ok := changed[oid]; return ok }

	var changedNodes []zodb.Oid
	oldSide := make(map[zodb.Oid]struct{}) // buckets whose old entries take part
	newSide := make(map[zodb.Oid]struct{}) // buckets whose new entries take part
	for oid := range changed {
		if _, ok := t.nodes[oid]; ok {
			changedNodes = append(changedNodes, oid)
		} else if t.hasBucket(oid) {
			oldSide[oid] = struct{}{}
		}
	}
	var oldInline, newInline []zpickle.Entry

	if len(changedNodes) == 0 {
		// the shape did not change: compare the changed buckets
		for b := range oldSide {
			newSide[b] = struct{}{}
		}
	} else {
		// nodes with a changed node below them (or changed themselves)
		dirty := make(map[zodb.Oid]struct{})
		for _, n := range changedNodes {
			for ; n != zodb.InvalidOid; n = t.nodes[n].parent {
				if _, ok := dirty[n]; ok {
					break
				}
				dirty[n] = struct{}{}
			}
		}
		isDirty := func(oid zodb.Oid) bool { _, ok := dirty[oid]; return ok }

		// children of the changed nodes before and after
		oldKids := make(map[zodb.Oid]zpickle.Kind)
		newKids := make(map[zodb.Oid]zpickle.Kind)
		for _, n := range changedNodes {
			st := t.nodes[n].st
			for _, kid := range st.kids {
				oldKids[kid] = st.kidKind
			}
			if n == t.root && st.isInline {
				oldInline = st.inline
			}
		}

		// walk the new tree down to the changed nodes and to new ones
		visited := make(map[zodb.Oid]struct{})
		var walk func(n, parent zodb.Oid, depth int) error
		walk = func(n, parent zodb.Oid, depth int) error {
			if depth > maxDepth {
				return corruptf("LOBTree %s @%s: deeper than %d levels", t.root, at, maxDepth)
			}
			if _, ok := visited[n]; ok {
				return corruptf("LOBTree %s @%s: node %s reachable twice", t.root, at, n)
			}
			visited[n] = struct{}{}

			known, isKnown := t.nodes[n]
			if isKnown && !isChanged(n) {
				// same children as before; some are dirty
				if known.parent != parent {
					δ.setNodes[n] = &tnode{parent: parent, st: known.st}
				}
				if known.st.kidKind == zpickle.Tree {
					for _, kid := range known.st.kids {
						if isDirty(kid) {
							if err := walk(kid, n, depth+1); err != nil {
								return err
							}
						}
					}
				}
				return nil
			}

			// changed or new: load it
			st, err := ld.tree(ctx, n, at)
			if err != nil {
				return err
			}
			δ.setNodes[n] = &tnode{parent: parent, st: st}
			if n == t.root && st.isInline {
				newInline = st.inline
			}
			for _, kid := range st.kids {
				newKids[kid] = st.kidKind
			}
			if st.kidKind != zpickle.Tree {
				return nil
			}
			for _, kid := range st.kids {
				kn, kidKnown := t.nodes[kid]
				switch {
				case !kidKnown || isChanged(kid) || isDirty(kid):
					if err := walk(kid, n, depth+1); err != nil {
						return err
					}
				case kn.parent != n:
					// an unchanged subtree moved here
					δ.setNodes[kid] = &tnode{parent: n, st: kn.st}
				}
			}
			return nil
		}
		if err := walk(t.root, zodb.InvalidOid, 0); err != nil {
			return nil, err
		}

		// children dropped by the changed nodes, with whatever hangs below
		// them and was not moved elsewhere, left the tree
		removed := make(map[zodb.Oid]struct{}) // buckets that left
		var drop func(oid zodb.Oid, kind zpickle.Kind, depth int) error
		drop = func(oid zodb.Oid, kind zpickle.Kind, depth int) error {
			if kind == zpickle.Bucket {
				removed[oid] = struct{}{}
				δ.delBuckets = append(δ.delBuckets, oid)
				return nil
			}
			n, ok := t.nodes[oid]
			if !ok || depth > maxDepth {
				return corruptf("LOBTree %s @%s: index inconsistent at node %s", t.root, prev, oid)
			}
			δ.delNodes = append(δ.delNodes, oid)
			for _, kid := range n.st.kids {
				if _, moved := newKids[kid]; moved {
					continue
				}
				if err := drop(kid, n.st.kidKind, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		for kid, kind := range oldKids {
			if _, kept := newKids[kid]; !kept {
				if err := drop(kid, kind, 0); err != nil {
					return nil, err
				}
			}
		}

		for b := range oldSide {
			if _, gone := removed[b]; !gone {
				newSide[b] = struct{}{}
			}
		}
		for kid, kind := range oldKids {
			if kind == zpickle.Bucket {
				oldSide[kid] = struct{}{}
			}
		}
		for b := range removed {
			oldSide[b] = struct{}{}
		}
		for kid, kind := range newKids {
			if kind == zpickle.Bucket {
				newSide[kid] = struct{}{}
				if !t.hasBucket(kid) {
					δ.addBuckets = append(δ.addBuckets, kid)
				}
			}
		}
		// an unchanged bucket on both sides has the same entries on both
		for b := range oldSide {
			if _, both := newSide[b]; both && !isChanged(b) {
				delete(oldSide, b)
				delete(newSide, b)
			}
		}
	}

	oldv, err := loadEntries(ctx, ld, oldSide, prev, oldInline)
	if err != nil {
		return nil, err
	}
	newv, err := loadEntries(ctx, ld, newSide, at, newInline)
	if err != nil {
		return nil, err
	}
	δ.changes, err = diffEntries(oldv, newv)
	if err != nil {
		return nil, fmt.Errorf("LOBTree %s (%s, %s]: %w", t.root, prev, at, err)
	}
	return δ, nil
}

// loadEntries loads the entries of the buckets as of at, plus extra, sorted by key.
func loadEntries(ctx context.Context, ld *loader, buckets map[zodb.Oid]struct{}, at zodb.Tid, extra []zpickle.Entry) ([]zpickle.Entry, error) {
	oids := make([]zodb.Oid, 0, len(buckets))
	for b := range buckets {
		oids = append(oids, b)
	}
	evv := make([][]zpickle.Entry, len(oids))
	err := parallel(ctx, len(oids), func(ctx context.Context, i int) (err error) {
		evv[i], err = ld.bucket(ctx, oids[i], at)
		return err
	})
	if err != nil {
		return nil, err
	}
	n := len(extra)
	for _, ev := range evv {
		n += len(ev)
	}
	all := make([]zpickle.Entry, 0, n)
	all = append(all, extra...)
	for _, ev := range evv {
		all = append(all, ev...)
	}
	if len(evv) > 1 || len(extra) > 0 {
		sort.Slice(all, func(i, j int) bool { return all[i].Key < all[j].Key })
	}
	return all, nil
}

// diffEntries compares two key-sorted entry lists.
func diffEntries(oldv, newv []zpickle.Entry) ([]keyChange, error) {
	for _, ev := range [][]zpickle.Entry{oldv, newv} {
		for i := 1; i < len(ev); i++ {
			if ev[i].Key == ev[i-1].Key {
				return nil, corruptf("key %d in two buckets", ev[i].Key)
			}
		}
	}
	var changes []keyChange
	i, j := 0, 0
	for i < len(oldv) || j < len(newv) {
		switch {
		case j == len(newv) || (i < len(oldv) && oldv[i].Key < newv[j].Key):
			changes = append(changes, keyChange{oldv[i].Key, oldv[i].Value, 0})
			i++
		case i == len(oldv) || newv[j].Key < oldv[i].Key:
			changes = append(changes, keyChange{newv[j].Key, 0, newv[j].Value})
			j++
		default:
			if oldv[i].Value != newv[j].Value {
				changes = append(changes, keyChange{oldv[i].Key, oldv[i].Value, newv[j].Value})
			}
			i++
			j++
		}
	}
	return changes, nil
}

// apply brings the index to the new revision with the patch of δ.
func (t *treeIndex) apply(δ *treeDelta) {
	for _, n := range δ.delNodes {
		delete(t.nodes, n)
	}
	for _, b := range δ.delBuckets {
		delete(t.buckets, b)
	}
	for n, tn := range δ.setNodes {
		t.nodes[n] = tn
	}
	for _, b := range δ.addBuckets {
		t.buckets[b] = struct{}{}
	}
}

// maxKey returns the largest key of the tree as of at, where t patched with
// δ (nil: no patch) is the index as of at. It loads the rightmost bucket.
func (t *treeIndex) maxKey(ctx context.Context, ld *loader, δ *treeDelta, at zodb.Tid) (key int64, ok bool, err error) {
	node := func(oid zodb.Oid) *tnode {
		if δ != nil {
			if n, ok := δ.setNodes[oid]; ok {
				return n
			}
		}
		return t.nodes[oid]
	}
	var walk func(oid zodb.Oid, depth int) (int64, bool, error)
	walk = func(oid zodb.Oid, depth int) (int64, bool, error) {
		n := node(oid)
		if n == nil || depth > maxDepth {
			return 0, false, corruptf("LOBTree %s @%s: index inconsistent at node %s", t.root, at, oid)
		}
		if n.st.isInline {
			if l := len(n.st.inline); l > 0 {
				return n.st.inline[l-1].Key, true, nil
			}
			return 0, false, nil
		}
		for i := len(n.st.kids) - 1; i >= 0; i-- {
			kid := n.st.kids[i]
			if n.st.kidKind == zpickle.Tree {
				k, ok, err := walk(kid, depth+1)
				if err != nil || ok {
					return k, ok, err
				}
				continue
			}
			ev, err := ld.bucket(ctx, kid, at)
			if err != nil {
				return 0, false, err
			}
			if l := len(ev); l > 0 {
				return ev[l-1].Key, true, nil
			}
		}
		return 0, false, nil
	}
	return walk(t.root, 0)
}
