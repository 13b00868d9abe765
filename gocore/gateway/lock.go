// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

import (
	"context"

	"wendelin.dev/wcfs/gocore/internal/startlock"
)

// startLock is a held start lock (see the package doc and gocore/internal/startlock).
type startLock = startlock.Lock

// lockStart takes the start lock of mntpt, creating the root if needed.
func (g *Gateway) lockStart(ctx context.Context, mntpt string) (*startLock, error) {
	if err := ensureRoot(g.root()); err != nil {
		return nil, err
	}
	return lockStart(ctx, lockPath(mntpt), g.infof)
}

// lockStart takes the start lock at path, waiting as long as ctx allows.
// log is told once who holds the lock when it is busy.
func lockStart(ctx context.Context, path string, logf func(string, ...any)) (*startLock, error) {
	return startlock.Acquire(ctx, path, func(holders []int) {
		if logf != nil {
			logf("waiting for the start lock %s (held by %s)", path, describePids(holders))
		}
	})
}
