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
	more  *[]T
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
	if r.first == v || (r.more != nil && slices.Contains(*r.more, v)) {
		return
	}
	if r.more == nil {
		r.more = new([]T)
		m[oid] = r
	}
	*r.more = append(*r.more, v)
}

// del removes v from oid's route.
func (m routes[T]) del(oid zodb.Oid, v T) {
	r, ok := m[oid]
	if !ok {
		return
	}
	if r.more == nil {
		if r.first == v {
			delete(m, oid)
		}
		return
	}
	more := *r.more
	if r.first == v {
		r.first = more[len(more)-1]
		more = more[:len(more)-1]
	} else if i := slices.Index(more, v); i >= 0 {
		more[i] = more[len(more)-1]
		more = more[:len(more)-1]
	}
	*r.more = more
	if len(more) == 0 {
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
	if r.more != nil {
		for _, x := range *r.more {
			fn(x)
		}
	}
}
