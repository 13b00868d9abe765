// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

import (
	"math/rand"
	"slices"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// TestRoutes checks routes against a map of sets (an oid shared by several
// values: a blktab shared by files, a ZBlk shared by blocks).
func TestRoutes(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	m := make(routes[int])
	want := make(map[zodb.Oid]map[int]bool)
	for step := 0; step < 5000; step++ {
		oid, v := zodb.Oid(rng.Intn(5)), rng.Intn(4)
		if rng.Intn(2) == 0 {
			m.add(oid, v)
			if want[oid] == nil {
				want[oid] = make(map[int]bool)
			}
			want[oid][v] = true
		} else {
			m.del(oid, v)
			delete(want[oid], v)
		}
		for oid := zodb.Oid(0); oid < 5; oid++ {
			var got, exp []int
			m.each(oid, func(v int) { got = append(got, v) })
			for v := range want[oid] {
				exp = append(exp, v)
			}
			slices.Sort(got)
			slices.Sort(exp)
			if !slices.Equal(got, exp) {
				t.Fatalf("step %d: %s: %v; want %v", step, oid, got, exp)
			}
			if _, ok := m[oid]; ok != (len(exp) > 0) {
				t.Fatalf("step %d: %s: entry kept for an empty route", step, oid)
			}
		}
	}
}
