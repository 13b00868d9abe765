// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

// Routing of changed oids to what they concern.

import (
	"slices"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// route is the set of values (files, blocks) an oid concerns. Almost always
// one: the first is kept inline, the others (a blktab shared by two files, a
// ZBlk shared by two blocks) in more.
type route[T comparable] struct {
	first T
	more  []T
}

// routes maps oids to what they concern.
type routes[T comparable] map[zodb.Oid]route[T]

// add adds v to oid's route (no-op if already there).
func (m routes[T]) add(oid zodb.Oid, v T) {
	r, ok := m[oid]
	if !ok {
		m[oid] = route[T]{first: v}
		return
	}
	if r.first == v || slices.Contains(r.more, v) {
		return
	}
	r.more = append(r.more, v)
	m[oid] = r
}

// del removes v from oid's route.
func (m routes[T]) del(oid zodb.Oid, v T) {
	r, ok := m[oid]
	if !ok {
		return
	}
	if r.first == v {
		if len(r.more) == 0 {
			delete(m, oid)
			return
		}
		r.first = r.more[len(r.more)-1]
		r.more = r.more[:len(r.more)-1]
	} else if i := slices.Index(r.more, v); i >= 0 {
		r.more[i] = r.more[len(r.more)-1]
		r.more = r.more[:len(r.more)-1]
	}
	if len(r.more) == 0 {
		r.more = nil
	}
	m[oid] = r
}

// each calls fn for every value of oid's route.
func (m routes[T]) each(oid zodb.Oid, fn func(T)) {
	r, ok := m[oid]
	if !ok {
		return
	}
	fn(r.first)
	for _, x := range r.more {
		fn(x)
	}
}
