// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package history

// Going on after a commit Update could not apply.

import (
	"context"
	"fmt"
	"sort"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// Recover applies the commit δZ after Update failed on it (a record it
// needed could not be loaded or decoded), so that the history can go on
// with the next commits instead of being stuck at Head.
//
// Not knowing what δZ changed, Recover forgets every followed file δZ may
// have changed, tracked blocks included, and follows it anew as of δZ.Tid:
// replaying the window (δZ included) if the records can be read now (a
// passing failure), else indexing its blktab as of δZ.Tid as if the file had
// been replaced there (queries about it before δZ.Tid then fail with an
// *EpochError). A file δZ may have changed is one whose ZBigFile object or a
// blktab node is in δZ, or with a tracked block mapping to a ZBlk in δZ; the
// other files keep their history (δZ is logged as usual for them).
//
// The Delta (Recovered set) reports each such file with Epoch, and Gone
// when it is no longer a ZBigFile: the caller drops everything it cached of
// them, as at an epoch. If its records cannot be read as of δZ.Tid either,
// FileDelta.NotFollowed says why: the file is then not followed, and a later
// Follow starts its history at the Head it is followed at.
//
// Recover fails only if δZ is not after Head.
func (h *History) Recover(ctx context.Context, δZ *zodb.EventCommit) (_ *Delta, err error) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	tid := δZ.Tid
	if tid <= h.head {
		return nil, fmt.Errorf("history: recover @%s: commit is not after head @%s", tid, h.head)
	}

	// the files δZ may have changed
	affected := make(map[zodb.Oid]*fileHist)
	for _, oid := range δZ.Changev {
		h.treeRoute.each(oid, func(f *fileHist) { affected[f.foid] = f })
	}
	h.mu.Lock()
	for _, oid := range δZ.Changev {
		h.zblkRoute.each(oid, func(r blkRef) {
			if b := r.f.tracked[r.blk]; b != nil && b.zblk == oid {
				affected[r.f.foid] = r.f
			}
		})
	}

	// forget them, move to tid
	if err := h.zlog.append(tid, δZ.Changev); err != nil {
		// the window is full: forget it all, then log δZ
		h.forgetPast(h.head)
		if err := h.zlog.append(tid, δZ.Changev); err != nil {
			h.mu.Unlock()
			return nil, fmt.Errorf("history: recover @%s: %w", tid, err)
		}
	}
	for f := range h.pending {
		f.mergeBacklog()
		delete(h.pending, f)
	}
	for foid, f := range affected {
		h.unrouteFile(f)
		delete(h.files, foid)
	}
	h.head = tid
	h.mu.Unlock()

	// follow them anew, as of tid
	δ := &Delta{Rev: tid, Files: make(map[zodb.Oid]*FileDelta), Recovered: true}
	foids := make([]zodb.Oid, 0, len(affected))
	for foid := range affected {
		foids = append(foids, foid)
	}
	sort.Slice(foids, func(i, j int) bool { return foids[i] < foids[j] })
	for _, foid := range foids {
		d := &FileDelta{Epoch: true, SizeChanged: true}
		δ.Files[foid] = d
		info, err := h.follow(ctx, foid) // replaying the window
		if err != nil && !isGone(err) {
			h.resets[foid] = tid
			info, err = h.follow(ctx, foid) // from tid on
		}
		switch {
		case err == nil:
			d.Info = info
		case isGone(err):
			d.Gone = true
		default:
			d.NotFollowed = err
		}
	}
	return δ, nil
}
