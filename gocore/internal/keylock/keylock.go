// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package keylock is a set of mutexes by key whose Lock honours a context:
// the gateway serialises the slow path of joins per mountpoint with it, the
// server the watch setups of one file on one watch link.
//
// A key's lock exists only while someone holds it or waits for it: the last
// of them to leave (an unlock, or a wait given up when its context was done)
// removes it, so that a long-lived Map does not keep one entry for every key
// it ever saw (a gateway joins many zurls over its life, a watch link may
// watch many files).
//
// The lock is a channel of capacity one per key, so that a waiter can give up
// when its context is done; a sync.Mutex cannot. Waiters are not served in
// any particular order.
package keylock

import (
	"context"
	"sync"
)

// Map is a set of locks by key. The zero value is ready to use; a Map must
// not be copied after first use.
type Map[K comparable] struct {
	mu    sync.Mutex
	locks map[K]*lock // mu; keys someone holds or waits for
}

// lock is the lock of one key.
type lock struct {
	sem   chan struct{} // holds a token while locked
	users int           // Map.mu; holders and waiters
}

// Lock locks key, waiting while another holds it, and returns the function
// that unlocks it (to be called exactly once). It returns ctx's error, without the
// lock, when ctx is done before the lock was free.
func (m *Map[K]) Lock(ctx context.Context, key K) (unlock func(), err error) {
	l := m.use(key)
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		m.release(key, l)
		return nil, ctx.Err()
	}
	return func() {
		<-l.sem
		m.release(key, l)
	}, nil
}

// use returns the lock of key, creating it, counted as used once more.
func (m *Map[K]) use(key K) *lock {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.locks[key]
	if l == nil {
		if m.locks == nil {
			m.locks = make(map[K]*lock)
		}
		l = &lock{sem: make(chan struct{}, 1)}
		m.locks[key] = l
	}
	l.users++
	return l
}

// release counts a use of key's lock l as over and removes l when it was the
// last.
func (m *Map[K]) release(key K, l *lock) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l.users--
	if l.users == 0 {
		delete(m.locks, key)
	}
}

// Len returns the number of keys that are locked or waited for.
func (m *Map[K]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.locks)
}
