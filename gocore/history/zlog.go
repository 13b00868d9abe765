// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

// zlog: the raw database changes δZ = (rev, oids) inside the window.

import (
	"fmt"
	"math"
	"sort"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// zlog keeps, for every commit in the window, the oids it changed, and for
// every oid the positions of its occurrences as a backward-linked list, so
// that "at which revisions did oid change in (lo, hi)" costs the number of
// its changes there, not the size of the window.
//
// Memory is 12 bytes per changed oid per commit, plus one map entry per
// distinct oid. Forgetting drops a prefix logically; the arrays are
// compacted when the dead prefix outgrows the live part.
//
// Positions are int32 indices into the physical arrays.
type zlog struct {
	c0   int        // first live commit in revs/end
	revs []zodb.Tid // revs[i]: revision of commit i
	end  []int32    // oids of commit i: oids[start(i):end[i]]

	o0   int32              // first live position in oids/prev
	oids []zodb.Oid         // all changed oids, commit after commit
	prev []int32            // prev[p]: previous occurrence of oids[p], or -1
	last map[zodb.Oid]int32 // last occurrence of an oid
}

func newZlog() *zlog {
	return &zlog{last: make(map[zodb.Oid]int32)}
}

// len returns the number of commits in the log.
func (z *zlog) len() int { return len(z.revs) - z.c0 }

// start returns the position of the first oid of physical commit i.
func (z *zlog) start(i int) int32 {
	if i == 0 {
		return 0
	}
	return z.end[i-1]
}

// append logs commit rev that changed oids. rev must be > every logged revision.
func (z *zlog) append(rev zodb.Tid, oids []zodb.Oid) error {
	if n := len(z.revs); n > 0 && rev <= z.revs[n-1] {
		return fmt.Errorf("zlog: commit %s is not after %s", rev, z.revs[n-1])
	}
	if len(z.oids)+len(oids) > math.MaxInt32 {
		z.compact()
		if len(z.oids)+len(oids) > math.MaxInt32 {
			return fmt.Errorf("zlog: too many changed objects inside the history window")
		}
	}
	for _, oid := range oids {
		p := int32(len(z.oids))
		q, ok := z.last[oid]
		if !ok || q < z.o0 {
			q = -1
		}
		z.oids = append(z.oids, oid)
		z.prev = append(z.prev, q)
		z.last[oid] = p
	}
	z.revs = append(z.revs, rev)
	z.end = append(z.end, int32(len(z.oids)))
	return nil
}

// forget drops the commits with rev ≤ revCut.
func (z *zlog) forget(revCut zodb.Tid) {
	live := z.revs[z.c0:]
	n := sort.Search(len(live), func(i int) bool { return live[i] > revCut })
	if n == 0 {
		return
	}
	// drop map entries whose last occurrence is forgotten
	newO0 := z.end[z.c0+n-1]
	for p := z.o0; p < newO0; p++ {
		oid := z.oids[p]
		if q, ok := z.last[oid]; ok && q < newO0 {
			delete(z.last, oid)
		}
	}
	z.c0 += n
	z.o0 = newO0
	if int(z.o0) > len(z.oids)-int(z.o0) || z.c0 > len(z.revs)-z.c0 {
		z.compact()
	}
}

// compact moves the live part of the log to the beginning of new arrays.
func (z *zlog) compact() {
	shift := z.o0
	z.revs = append([]zodb.Tid(nil), z.revs[z.c0:]...)
	end := make([]int32, len(z.end)-z.c0)
	for i, e := range z.end[z.c0:] {
		end[i] = e - shift
	}
	z.end = end
	z.c0 = 0
	z.oids = append([]zodb.Oid(nil), z.oids[shift:]...)
	prev := make([]int32, len(z.prev)-int(shift))
	for i, q := range z.prev[shift:] {
		if q < shift {
			q = -1
		} else {
			q -= shift
		}
		prev[i] = q
	}
	z.prev = prev
	for oid, p := range z.last {
		z.last[oid] = p - shift
	}
	z.o0 = 0
}

// commitOf returns the physical commit index holding position p.
func (z *zlog) commitOf(p int32) int {
	return z.c0 + sort.Search(len(z.end)-z.c0, func(i int) bool { return z.end[z.c0+i] > p })
}

// revsOf appends to dst, in ascending order, the revisions r with lo < r < hi
// at which oid changed.
func (z *zlog) revsOf(dst []zodb.Tid, oid zodb.Oid, lo, hi zodb.Tid) []zodb.Tid {
	p, ok := z.last[oid]
	if !ok {
		return dst
	}
	n0 := len(dst)
	for ; p >= z.o0; p = z.prev[p] {
		rev := z.revs[z.commitOf(p)]
		if rev <= lo {
			break
		}
		if rev < hi {
			dst = append(dst, rev)
		}
	}
	// collected newest first
	r := dst[n0:]
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return dst
}

// after returns the index (for commit) of the first logged commit with rev > lo.
func (z *zlog) after(lo zodb.Tid) int {
	live := z.revs[z.c0:]
	return sort.Search(len(live), func(i int) bool { return live[i] > lo })
}

// commit returns the revision and the oids of the i-th live commit.
func (z *zlog) commit(i int) (zodb.Tid, []zodb.Oid) {
	j := z.c0 + i
	return z.revs[j], z.oids[z.start(j):z.end[j]]
}
