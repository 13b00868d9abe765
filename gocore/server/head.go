// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/history"
	"wendelin.dev/wcfs/gocore/zdata"
)

// headView is head/: the database as of the last commit the server has
// processed. See the package doc ("Head view and commits") for the locking.
type headView struct {
	srv   *Server
	dir   *headDir
	bfdir *bigfileDir
	watch fs.InodeEmbedder // head/watch node
	iso   *isolation       // the isolation protocol (watch.go)

	// commitMu is write-held by the commit follower for the whole
	// processing of one commit: switch of the view, page cache work,
	// advancing head/at. With commitMu read-held no commit is half
	// applied: head/at, the head connection and the kernel cache of head
	// files show the same revision. FUSE reads never take it (the page
	// cache work of a commit waits for reads in flight). Lock order:
	// commitMu before viewMu.
	commitMu sync.RWMutex

	// viewMu protects the head connection's view, the view state of
	// head files (bigFile zfile/blksize/size/revApprox/gone) and the
	// membership of their load tables. Read-held by head file reads,
	// lookups and getattrs, and briefly by uploads; write-held by a
	// commit while it switches the view (no FUSE notification that can
	// wait for the kernel happens under it).
	viewMu viewLock
	zconn  *zdata.ZConn

	// uploadGen counts the uploads of head blocks started at the current
	// view (see bigFile.uploadBlk); replaced at every switch (viewMu.W).
	uploadGen *sync.WaitGroup

	// at is what head/at shows: the revision of the last commit whose
	// processing is complete (advanced last, under commitMu.W).
	at atomic.Uint64

	filesMu sync.Mutex
	files   map[zodb.Oid]*bigFile // head/bigfile/<oid> served so far (never removed)

	// hist is the block history of head files (gocore/history): Update
	// under viewMu.W, Follow/Track under viewMu.R (its head = zconn's).
	hist *history.History

	// refollow: files a recovery of the history left unfollowed (under
	// commitMu; see refollowFiles in follow.go)
	refollow map[zodb.Oid]struct{}

	// preserving is the old data of changed blocks a commit is keeping in
	// @<rev>/ (set in its phase 1, cleared in phase 2): loads of those
	// blocks mark them (preserve.go).
	preserving atomic.Pointer[preservePlan]

	// OnBlockLoad, if set, is called after a block of a head file was
	// loaded from the database and before its data is returned to the
	// kernel, with viewMu read-held. An error fails the read. It is the
	// seam of the isolation protocol (pins on access, spec 2.5).
	OnBlockLoad func(ctx context.Context, f *bigFile, blk int64, info zdata.BlkInfo) error

	// NoPrefetch, if set, tells whether a head file must not be prefetched
	// (the isolation protocol: a prefetch is a load, and loads send pins).
	NoPrefetch func(f *bigFile) bool

	// MinWatchAt, if set, returns the smallest revision some client still
	// watches (0: none): history back to it is kept (spec 1.7 step 9).
	MinWatchAt func() zodb.Tid

	waitMu  sync.Mutex
	waiters map[chan struct{}]zodb.Tid // wait for head/at >= tid
}

func newHeadView(srv *Server, zconn *zdata.ZConn, hist *history.History) *headView {
	h := &headView{
		srv:       srv,
		viewMu:    newViewLock(),
		zconn:     zconn,
		uploadGen: new(sync.WaitGroup),
		files:     make(map[zodb.Oid]*bigFile),
		hist:      hist,
		waiters:   make(map[chan struct{}]zodb.Tid),
	}
	h.at.Store(uint64(zconn.At()))
	h.dir = &headDir{h: h}
	h.bfdir = &bigfileDir{head: h}
	h.initIsolation() // head/watch and the hooks below (watch.go)
	return h
}

// At returns the revision head/at shows.
func (h *headView) At() zodb.Tid { return zodb.Tid(h.at.Load()) }

func (h *headView) nfiles() int {
	h.filesMu.Lock()
	defer h.filesMu.Unlock()
	return len(h.files)
}

// headDir is head/: mode 0555, mtime = head/at.
type headDir struct {
	node
	h *headView
}

var _ fs.NodeGetattrer = (*headDir)(nil)

func (d *headDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0555
	setTime(&out.Attr, tidTime(d.h.At()))
	return 0
}

// lookupFile returns head/bigfile/<oid>, creating it on first lookup, and
// fills its attributes; viewMu must be read-held.
func (h *headView) lookupFile(ctx context.Context, oid zodb.Oid, attr *fuse.Attr) (*bigFile, error) {
	h.filesMu.Lock()
	f := h.files[oid]
	h.filesMu.Unlock()
	if f == nil {
		nf := newBigFile(oid)
		nf.head = h
		if err := nf.initState(ctx, h.zconn); err != nil {
			return nil, err
		}
		// follow the file's blktab before any of its blocks can be read
		if _, err := h.hist.Follow(ctx, oid); err != nil {
			return nil, err
		}
		h.filesMu.Lock()
		f = h.files[oid]
		if f == nil { // else a concurrent lookup won
			f = nf
			h.files[oid] = f
		}
		h.filesMu.Unlock()
	}
	f.fillAttr(attr)
	return f, nil
}

// blockLoaded is called by head file reads after loading a block, with
// viewMu read-held, before the data reaches the kernel: a commit keeping
// the block's old data is told (loadingNew), the history tracks the block
// (a block that may be in the page cache is always tracked, so that a
// commit changing it is seen), then the isolation hook runs.
func (h *headView) blockLoaded(ctx context.Context, f *bigFile, blk int64, info zdata.BlkInfo) error {
	h.loadingNew(f, blk)
	if err := h.hist.Track(f.oid, blk, info.ZBlk, h.zconn.At()); err != nil {
		return err
	}
	if h.OnBlockLoad != nil {
		return h.OnBlockLoad(ctx, f, blk, info)
	}
	return nil
}

// WaitAt waits until head/at >= at (or ctx is done).
func (h *headView) WaitAt(ctx context.Context, at zodb.Tid) error {
	h.waitMu.Lock()
	if h.At() >= at {
		h.waitMu.Unlock()
		return nil
	}
	ready := make(chan struct{})
	h.waiters[ready] = at
	h.waitMu.Unlock()

	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		h.waitMu.Lock()
		delete(h.waiters, ready)
		h.waitMu.Unlock()
		return ctx.Err()
	}
}

// advance makes head/at show at and wakes the waiters it satisfies.
func (h *headView) advance(at zodb.Tid) {
	h.waitMu.Lock()
	defer h.waitMu.Unlock()
	h.at.Store(uint64(at))
	for ready, wat := range h.waiters {
		if wat <= at {
			delete(h.waiters, ready)
			close(ready)
		}
	}
}
