// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"context"
	"sync"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/zdata"
)

// blockHistory is what the server needs from the block history of head
// files (gocore/history, the reference's δFtail).
type blockHistory interface {
	// TrackFile starts following the ZBigFile (or re-tracks its size
	// path): its blktab path to the largest key.
	TrackFile(f *zdata.ZBigFile, sizePath []zdata.PathNode)

	// TrackBlk records that block blk of f was loaded at head (it may be
	// in the page cache from now on): its blktab path and ZBlk.
	TrackBlk(f *zdata.ZBigFile, blk int64, info zdata.BlkInfo)

	// Update processes the commit δZ (in commit order) and returns, for
	// every tracked file it touches, what changed.
	Update(ctx context.Context, δZ *zodb.EventCommit) (map[zodb.Oid]*fileChange, error)

	// BlkRevAt returns the revision (≤ at) that last changed block blk
	// of file foid; exact=false when the history cannot tell.
	BlkRevAt(ctx context.Context, foid zodb.Oid, blk int64, at zodb.Tid) (rev zodb.Tid, exact bool, err error)

	// ForgetPast forgets history entries at or before rev.
	ForgetPast(rev zodb.Tid)
}

// fileChange is what one commit changed in a tracked file.
type fileChange struct {
	Blocks []int64 // tracked blocks whose data may have changed
	Size   bool    // the file size may have changed
	Epoch  bool    // the ZBigFile object itself changed (blksize, blktab, deletion)
}

// coarseHistory is a conservative blockHistory used until gocore/history is
// available: a commit that changes any blktab node of a file is taken to
// change every tracked block of the file and its size; a changed ZBlk
// changes the blocks that map to it. It never knows exact block revisions,
// so no old data is preserved in @<rev>/ caches.
type coarseHistory struct {
	mu    sync.Mutex
	files map[zodb.Oid]*coarseFile           // by ZBigFile oid
	owner map[zodb.Oid]map[zodb.Oid]struct{} // node or ZBlk oid -> files
}

type coarseFile struct {
	blocks map[int64]zodb.Oid // tracked block -> ZBlk oid (0: hole)
	nodes  map[zodb.Oid]struct{}
}

func newCoarseHistory() *coarseHistory {
	return &coarseHistory{
		files: make(map[zodb.Oid]*coarseFile),
		owner: make(map[zodb.Oid]map[zodb.Oid]struct{}),
	}
}

func (h *coarseHistory) file(foid zodb.Oid) *coarseFile {
	cf := h.files[foid]
	if cf == nil {
		cf = &coarseFile{blocks: make(map[int64]zodb.Oid), nodes: make(map[zodb.Oid]struct{})}
		h.files[foid] = cf
	}
	return cf
}

func (h *coarseHistory) own(foid, oid zodb.Oid) {
	if oid == zodb.InvalidOid || oid == 0 {
		return
	}
	m := h.owner[oid]
	if m == nil {
		m = make(map[zodb.Oid]struct{})
		h.owner[oid] = m
	}
	m[foid] = struct{}{}
}

func (h *coarseHistory) trackPath(foid zodb.Oid, cf *coarseFile, path []zdata.PathNode) {
	for _, n := range path {
		if n.Oid == zodb.InvalidOid {
			continue
		}
		cf.nodes[n.Oid] = struct{}{}
		h.own(foid, n.Oid)
	}
}

func (h *coarseHistory) TrackFile(f *zdata.ZBigFile, sizePath []zdata.PathNode) {
	h.mu.Lock()
	defer h.mu.Unlock()
	foid := f.POid()
	cf := h.file(foid)
	h.own(foid, foid)
	h.trackPath(foid, cf, sizePath)
}

func (h *coarseHistory) TrackBlk(f *zdata.ZBigFile, blk int64, info zdata.BlkInfo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	foid := f.POid()
	cf := h.file(foid)
	h.trackPath(foid, cf, info.Path)
	cf.blocks[blk] = info.ZBlk
	h.own(foid, info.ZBlk)
}

func (h *coarseHistory) Update(ctx context.Context, δZ *zodb.EventCommit) (map[zodb.Oid]*fileChange, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	δF := make(map[zodb.Oid]*fileChange)
	changed := make(map[zodb.Oid]map[int64]struct{})
	for _, oid := range δZ.Changev {
		for foid := range h.owner[oid] {
			cf := h.files[foid]
			fc := δF[foid]
			if fc == nil {
				fc = &fileChange{}
				δF[foid] = fc
				changed[foid] = make(map[int64]struct{})
			}
			_, isNode := cf.nodes[oid]
			switch {
			case oid == foid:
				fc.Epoch = true
			case isNode:
				fc.Size = true
				for blk := range cf.blocks {
					changed[foid][blk] = struct{}{}
				}
			default: // a ZBlk
				for blk, zblk := range cf.blocks {
					if zblk == oid {
						changed[foid][blk] = struct{}{}
					}
				}
			}
		}
	}
	for foid, fc := range δF {
		if fc.Epoch { // start over: the server re-tracks the file
			cf := h.files[foid]
			cf.blocks = make(map[int64]zodb.Oid)
			cf.nodes = make(map[zodb.Oid]struct{})
			continue
		}
		for blk := range changed[foid] {
			fc.Blocks = append(fc.Blocks, blk)
		}
	}
	return δF, nil
}

func (h *coarseHistory) BlkRevAt(ctx context.Context, foid zodb.Oid, blk int64, at zodb.Tid) (zodb.Tid, bool, error) {
	return 0, false, nil
}

func (h *coarseHistory) ForgetPast(rev zodb.Tid) {}
