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
// Files of other users found at the lock path and removed are logged.
func (g *Gateway) lockStart(ctx context.Context, mntpt string) (*startLock, error) {
	if err := g.ensureRoot(); err != nil {
		return nil, err
	}
	lk, err := lockStart(ctx, lockPath(mntpt), g.infof)
	if err != nil {
		return nil, err
	}
	for _, what := range lk.Removed {
		g.warnf("wcfs: start lock %s: not a lock of ours: %s", lk.Path(), what)
	}
	g.sweep(mntpt)
	return lk, nil
}

// lockStop takes the start lock of mntpt for Server.Stop, which goes on
// without it (nil) when it cannot be taken: a stop must stop whatever is in
// the way; the lock only keeps starters away meanwhile.
func (g *Gateway) lockStop(ctx context.Context, mntpt, zurlStr string) *startLock {
	lk, err := g.lockStart(ctx, mntpt)
	if err != nil {
		g.warnf("wcfs: stop %s: %s; stopping without it", zurlStr, err)
		return nil
	}
	return lk
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
