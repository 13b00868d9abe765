// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"context"

	"golang.org/x/sync/semaphore"
)

// viewLock is a reader/writer lock whose waits can be canceled (FUSE
// INTERRUPT, server shutdown). Waiters are served in FIFO order, so a waiting
// writer blocks readers that come after it (writer preference, like
// sync.RWMutex): readers must not take it recursively.
type viewLock struct {
	sem *semaphore.Weighted
}

const viewLockWeight = 1 << 40 // "infinitely many" readers

func newViewLock() viewLock {
	return viewLock{semaphore.NewWeighted(viewLockWeight)}
}

func (l viewLock) RLock(ctx context.Context) error { return l.sem.Acquire(ctx, 1) }
func (l viewLock) RUnlock()                        { l.sem.Release(1) }
func (l viewLock) Lock(ctx context.Context) error  { return l.sem.Acquire(ctx, viewLockWeight) }
func (l viewLock) Unlock()                         { l.sem.Release(viewLockWeight) }
