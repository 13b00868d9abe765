// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

import (
	"math/rand"
	"slices"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// TestZlog checks revsOf against a plain list of commits, through appends,
// forgets and compactions.
func TestZlog(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	z := newZlog()
	type entry struct {
		rev  zodb.Tid
		oids []zodb.Oid
	}
	var all []entry // live commits
	rev := zodb.Tid(100)
	tail := zodb.Tid(0)
	for step := 0; step < 3000; step++ {
		if rng.Intn(4) == 0 && len(all) > 0 {
			cut := all[rng.Intn(len(all))].rev
			if rng.Intn(2) == 0 {
				cut++ // not a commit's revision
			}
			z.forget(cut)
			for len(all) > 0 && all[0].rev <= cut {
				all = all[1:]
			}
			tail = max(tail, cut)
		} else {
			rev += zodb.Tid(1 + rng.Intn(3))
			var oids []zodb.Oid
			for n := rng.Intn(6); n > 0; n-- {
				oids = append(oids, zodb.Oid(rng.Intn(20)))
			}
			slices.Sort(oids)
			oids = slices.Compact(oids)
			if err := z.append(rev, oids); err != nil {
				t.Fatal(err)
			}
			all = append(all, entry{rev, oids})
		}
		if z.len() != len(all) {
			t.Fatalf("step %d: len %d; want %d", step, z.len(), len(all))
		}
		for i, e := range all {
			r, oids := z.commit(i)
			if r != e.rev || !slices.Equal(oids, e.oids) {
				t.Fatalf("step %d: commit %d = %s %v; want %s %v", step, i, r, oids, e.rev, e.oids)
			}
		}
		for oid := zodb.Oid(0); oid < 20; oid++ {
			lo := tail + zodb.Tid(rng.Intn(max(0, int(rev)-int(tail))+1))
			hi := lo + zodb.Tid(rng.Intn(max(0, int(rev)-int(lo))+2))
			var want []zodb.Tid
			for _, e := range all {
				if e.rev > lo && e.rev < hi && slices.Contains(e.oids, oid) {
					want = append(want, e.rev)
				}
			}
			if got := z.revsOf(nil, oid, lo, hi); !slices.Equal(got, want) {
				t.Fatalf("step %d: revsOf(%s, %s, %s) = %v; want %v", step, oid, lo, hi, got, want)
			}
		}
		if len(all) > 0 {
			lo := all[rng.Intn(len(all))].rev
			i := z.after(lo)
			if (i < len(all) && all[i].rev <= lo) || (i > 0 && all[i-1].rev > lo) {
				t.Fatalf("step %d: after(%s) = %d", step, lo, i)
			}
		}
	}
	if len(z.last) > 20 {
		t.Fatalf("%d oids indexed", len(z.last))
	}
}

// TestZlogOrder: commits must be appended in order.
func TestZlogOrder(t *testing.T) {
	z := newZlog()
	if err := z.append(10, []zodb.Oid{1}); err != nil {
		t.Fatal(err)
	}
	if err := z.append(10, []zodb.Oid{1}); err == nil {
		t.Fatal("append of a commit not after the last one: no error")
	}
}
