// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// Decoding of BTrees' node states from raw records (BTrees' __getstate__),
// for IOBTree/IOBucket (ZBlk1 chunk tables) and LOBTree/LOBucket (blktab,
// when neo/go's objects cannot be used, see walkBlkTabRaw):
//
//	tree:    None                                   empty tree
//	         ((bucket_state,),)                     one bucket stored inline
//	         ((child0, k1, child1, ..., kN, childN), firstbucket)
//	bucket:  ((k0, v0, k1, v1, ...),)  or  ((k0, v0, ...), next_bucket)

import (
	"math"

	pickle "github.com/kisielk/og-rek"
)

// bucketEntry is one key/value of a bucket.
type bucketEntry struct {
	Key   int64
	Value any // zref for the buckets of this package's trees
}

// treeState is a decoded BTree node state: either children (with keys[i]
// the lower bound of children[i], keys[0] unused) or an inline bucket.
type treeState struct {
	Keys      []int64
	Children  []zref
	Inline    []bucketEntry // the tree is one bucket stored inline
	HasInline bool
}

// keyKind describes the key type of a BTree family.
type keyKind struct {
	name     string // "IOBTree", "LOBTree"
	min, max int64
}

var (
	ioKeys = keyKind{"IOBTree", math.MinInt32, math.MaxInt32}
	loKeys = keyKind{"LOBTree", math.MinInt64, math.MaxInt64}
)

func (kk keyKind) key(x any, what string, i int) (int64, error) {
	k, err := pickle.AsInt64(x)
	if err != nil {
		return 0, malformedf("%s state: %s %d is %s, not int", kk.name, what, i, pyTypeName(x))
	}
	if k < kk.min || k > kk.max {
		return 0, malformedf("%s state: %s %d = %d out of the key range", kk.name, what, i, k)
	}
	return k, nil
}

// decodeTreeState decodes the state of a BTree node.
func decodeTreeState(kk keyKind, x any) (st treeState, err error) {
	if _, ok := x.(pickle.None); ok {
		return st, nil
	}
	t, ok := x.(pickle.Tuple)
	if !ok || !(len(t) == 1 || len(t) == 2) {
		return st, malformedf("%s state: expected None or tuple[1..2]; got %s", kk.name, pyTypeName(x))
	}
	if len(t) == 1 {
		t1, ok := t[0].(pickle.Tuple)
		if !ok || len(t1) != 1 {
			return st, malformedf("%s state: inline bucket: expected tuple[1]; got %s", kk.name, pyTypeName(t[0]))
		}
		st.Inline, err = decodeBucketState(kk, t1[0])
		st.HasInline = true
		return st, err
	}
	kids, ok := t[0].(pickle.Tuple)
	if !ok || len(kids)%2 != 1 {
		return st, malformedf("%s state: expected (child0, key1, child1, ...); got %s", kk.name, pyTypeName(t[0]))
	}
	n := (len(kids) + 1) / 2
	st.Keys = make([]int64, n)
	st.Children = make([]zref, n)
	for i := 0; i < n; i++ {
		if i > 0 {
			k, err := kk.key(kids[2*i-1], "key", i)
			if err != nil {
				return st, err
			}
			if i > 1 && k <= st.Keys[i-1] {
				return st, malformedf("%s state: keys not ascending at %d", kk.name, i)
			}
			st.Keys[i] = k
		}
		ref, ok := kids[2*i].(zref)
		if !ok {
			return st, malformedf("%s state: child %d is %s, not a persistent reference", kk.name, i, pyTypeName(kids[2*i]))
		}
		st.Children[i] = ref
	}
	return st, nil
}

// decodeBucketState decodes the state of a bucket. Keys must be ascending.
func decodeBucketState(kk keyKind, x any) ([]bucketEntry, error) {
	t, ok := x.(pickle.Tuple)
	if !ok || !(len(t) == 1 || len(t) == 2) {
		return nil, malformedf("%s bucket state: expected tuple[1..2]; got %s", kk.name, pyTypeName(x))
	}
	kv, ok := t[0].(pickle.Tuple)
	if !ok || len(kv)%2 != 0 {
		return nil, malformedf("%s bucket state: expected (k0, v0, k1, v1, ...); got %s", kk.name, pyTypeName(t[0]))
	}
	entries := make([]bucketEntry, len(kv)/2)
	for i := range entries {
		k, err := kk.key(kv[2*i], "bucket key", i)
		if err != nil {
			return nil, err
		}
		if i > 0 && k <= entries[i-1].Key {
			return nil, malformedf("%s bucket state: keys not ascending at %d", kk.name, i)
		}
		entries[i] = bucketEntry{k, kv[2*i+1]}
	}
	return entries, nil
}
