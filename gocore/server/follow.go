// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	log "github.com/golang/glog"
	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/history"
)

// historyKeep is how much history is kept at least (spec 1.7 step 9).
const historyKeep = time.Minute

// preserveBudget bounds the old block data one commit keeps in memory to
// copy into @<rev>/ caches; blocks beyond it are not preserved (logged).
const preserveBudget = 512 << 20

// eventQueue forwards storage events from watchq into an unbounded queue, so
// that commit processing never stalls the storage's event delivery (which
// would also stall the DB's own watcher).
func eventQueue(ctx context.Context, watchq <-chan zodb.Event) <-chan zodb.Event {
	out := make(chan zodb.Event)
	go func() {
		defer close(out)
		var q []zodb.Event
		for {
			var send chan zodb.Event
			var next zodb.Event
			if len(q) > 0 {
				send, next = out, q[0]
			}
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-watchq:
				if !ok {
					watchq = nil
					if len(q) == 0 {
						return
					}
					continue
				}
				q = append(q, ev)
			case send <- next:
				q[0] = nil
				q = q[1:]
				if watchq == nil && len(q) == 0 {
					return
				}
			}
		}
	}()
	return out
}

// follow processes commits in order until ctx is done. It returns an error
// if the storage watch fails or ends, or a commit cannot be processed.
func (s *Server) follow(ctx context.Context, events <-chan zodb.Event) error {
	for {
		var ev zodb.Event
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case ev, ok = <-events:
		}
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return watchError(fmt.Errorf("storage watch ended"))
		}
		switch ev := ev.(type) {
		case *zodb.EventError:
			return watchError(fmt.Errorf("storage watch: %w", ev.Err))
		case *zodb.EventCommit:
			t0 := time.Now()
			if err := s.head.commit(ctx, ev); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("commit @%s: %w", ev.Tid, err)
			}
			if log.V(1) {
				log.Infof("zwatcher: @%s processed in %s (%d objects changed)", ev.Tid, time.Since(t0), len(ev.Changev))
			}
		default:
			return fmt.Errorf("unexpected storage event %T", ev)
		}
	}
}

// oldBlock is the data a head file block had before a commit, to be kept
// in the page cache of @<rev>/bigfile/<oid> (rev = the block's revision).
// It holds a reference to buf until stored.
type oldBlock struct {
	foid zodb.Oid
	blk  int64
	rev  zodb.Tid
	buf  *blockBuf
}

// viewSwitch is the outcome of the switch phase of a commit.
type viewSwitch struct {
	tid        zodb.Tid
	oldUploads *sync.WaitGroup // uploads of the old view
	preserve   []oldBlock
	inval      []blockInval // changed blocks of head files
	invalAll   []*bigFile   // epoch or gone: drop all the file's cache
	invalAttr  []*bigFile   // size changed
	invalGrown []grownRange // files that grew: their region past the old EOF
}

// grownRange is the region [from, to) a file grew by. The kernel may cache
// pages there that a read past the old EOF filled with zeros (a short read
// zero-fills the rest of the request), and the history does not know them
// (nothing was loaded): they are dropped.
type grownRange struct {
	f        *bigFile
	from, to int64
}

// blockInval lists the changed blocks of one head file.
type blockInval struct {
	f       *bigFile
	blksize int64 // before the commit
	blocks  []int64
}

// commit applies the commit δZ to head/. It runs in two phases, under
// commitMu for both:
//
//  1. switch (viewMu write-held: no head read, lookup or getattr runs):
//     the history says which tracked blocks of which head files changed;
//     the old data of each changed block is taken from the load table or
//     retrieved from the kernel page cache (NOTIFY_RETRIEVE does not wait
//     for page locks); changed blocks leave the load tables; the head
//     connection moves to δZ.Tid; sizes and blksizes of changed files are
//     recomputed; a new upload generation starts.
//  2. page cache (viewMu released: reads run again, at the new revision):
//     wait for the uploads of the old view (they may wait for page locks of
//     reads in flight, which can now complete); store the old data into the
//     @<rev>/ files; invalidate the changed blocks of head files
//     (NOTIFY_INVAL_INODE waits for page locks of reads in flight, so it must
//     not run with viewMu held), and of files that grew the region past
//     their old EOF (see grownRange); invalidate attributes of resized
//     files; then advance head/at and tell .wcfs/debug/zhead readers.
//
// Data returned by reads during phase 2 is of the new revision, so whether
// it lands in the page cache before or after the invalidation, the cache
// never holds stale data once head/at shows δZ.Tid.
func (h *headView) commit(ctx context.Context, δZ *zodb.EventCommit) error {
	h.commitMu.Lock()
	defer h.commitMu.Unlock()

	if err := h.viewMu.Lock(ctx); err != nil {
		return err
	}
	sw, err := h.switchView(ctx, δZ)
	h.viewMu.Unlock()
	if err != nil {
		return err
	}

	sw.oldUploads.Wait()
	h.srv.applyToKernel(sw)

	h.advance(δZ.Tid)
	if h.srv.zhead != nil {
		h.srv.zhead.publish(δZ.Tid)
	}
	h.hist.ForgetPast(h.forgetCut())
	return nil
}

// forgetCut returns the revision up to which history may be forgotten.
func (h *headView) forgetCut() zodb.Tid {
	cut := zodb.TidFromTime(tidTime(h.At()).Add(-historyKeep))
	if h.MinWatchAt != nil {
		if at := h.MinWatchAt(); at != 0 && at-1 < cut {
			cut = at - 1
		}
	}
	return cut
}

// switchView is phase 1 of commit; viewMu is write-held.
func (h *headView) switchView(ctx context.Context, δZ *zodb.EventCommit) (*viewSwitch, error) {
	oldAt := h.zconn.At()
	δF, err := h.updateHistory(ctx, δZ)
	if err != nil {
		return nil, err
	}
	unsure := h.refollowFiles(ctx, δF)
	sw := &viewSwitch{tid: δZ.Tid}

	// collect old data of changed blocks and drop them from the load tables
	type candidate struct {
		f   *bigFile
		blk int64
		buf *blockBuf // from the load table (its reference), else retrieved
	}
	var cands []candidate
	foids := make([]zodb.Oid, 0, len(δF.Files))
	for foid := range δF.Files {
		foids = append(foids, foid)
	}
	sort.Slice(foids, func(i, j int) bool { return foids[i] < foids[j] })
	changed := make([]*bigFile, 0, len(foids))
	for _, foid := range foids {
		fd := δF.Files[foid]
		h.filesMu.Lock()
		f := h.files[foid]
		h.filesMu.Unlock()
		if f == nil {
			continue // followed but not served: nothing cached
		}
		changed = append(changed, f)
		if fd.Epoch {
			f.dropLoads()
			sw.invalAll = append(sw.invalAll, f)
			continue
		}
		f.loadMu.Lock()
		for _, blk := range fd.Blocks {
			var buf *blockBuf
			if l := f.loads[blk]; l != nil {
				delete(f.loads, blk) // its reference goes to the candidate
				buf = l.buf
				if l.err != nil { // loads are all done: viewMu is write-held
					buf.unref()
					buf = nil
				}
			}
			cands = append(cands, candidate{f, blk, buf})
		}
		f.loadMu.Unlock()
		if len(fd.Blocks) > 0 {
			sw.inval = append(sw.inval, blockInval{f, f.blksize, fd.Blocks})
		}
		if fd.SizeChanged {
			sw.invalAttr = append(sw.invalAttr, f)
		}
	}

	// old data: retrieve from the kernel what the load tables did not
	// have; keep only full blocks, under a memory budget
	budget := int64(preserveBudget)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range cands {
		rev, err := h.hist.BlkRevAt(c.f.oid, c.blk, oldAt)
		if err == nil && budget < c.f.blksize {
			err = fmt.Errorf("over %d bytes of old data this commit", preserveBudget)
		}
		if err != nil {
			log.Warningf("%s: blk %d: old data not kept in @<rev>/: %s", c.f.path(), c.blk, err)
			if c.buf != nil {
				c.buf.unref()
			}
			continue
		}
		budget -= c.f.blksize
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := c.buf
			if buf == nil {
				buf = newMemBuf(c.f.blksize)
				n, st := c.f.ReadCache(c.blk*c.f.blksize, buf.data)
				if st != 0 && st != syscall.ENOENT {
					log.Warningf("%s: blk %d: retrieve from page cache: %s (reading @%s/ will be slower)", c.f.path(), c.blk, st, rev)
				}
				if int64(n) != c.f.blksize {
					buf.unref()
					return // not (fully) cached: nothing to keep
				}
			}
			mu.Lock()
			sw.preserve = append(sw.preserve, oldBlock{c.f.oid, c.blk, rev, buf})
			mu.Unlock()
		}()
	}
	wg.Wait()

	// move the connection and recompute what depends on it
	if err := h.zconn.Resync(ctx, δZ.Tid); err != nil {
		return nil, err
	}
	for _, f := range changed {
		fd := δF.Files[f.oid]
		if fd.Epoch || fd.SizeChanged {
			oldBlksize, oldSize := f.blksize, f.size
			err := f.initState(ctx, h.zconn)
			switch {
			case err == nil:
				if fd.Epoch {
					log.Warningf("%s: ZBigFile changed @%s (blksize %d -> %d, size %d -> %d): serving the new content",
						f.path(), δZ.Tid, oldBlksize, f.blksize, oldSize, f.size)
				} else if f.size > oldSize {
					sw.invalGrown = append(sw.invalGrown, grownRange{f, oldSize, f.size})
				}
			case fd.Gone || isInvalid(err):
				// deleted, or replaced by an object of another class
				log.Warningf("%s: ZBigFile gone @%s: %s", f.path(), δZ.Tid, err)
				f.gone = err
				f.size = 0
				if !fd.Epoch {
					sw.invalAll = append(sw.invalAll, f)
				}
			case unsure[f.oid]:
				// see refollowFiles: its reads fail until its records can be read
				log.Errorf("%s: @%s: %s (reading it fails until a commit makes it readable)", f.path(), δZ.Tid, err)
			default:
				return nil, err
			}
		}
		f.revApprox = δZ.Tid
	}

	sw.oldUploads = h.uploadGen
	h.uploadGen = new(sync.WaitGroup)
	return sw, nil
}

// updateHistory applies δZ to the block history. A failure to load what a
// commit changed is retried a few times (a hiccup); after that the server
// cannot know which cached blocks are stale: the history recovers
// (history.Recover), treating every file the commit may have changed as
// replaced at δZ.Tid (an epoch: their page cache is dropped). When the
// storage is unavailable the error is returned (see zstor.go).
func (h *headView) updateHistory(ctx context.Context, δZ *zodb.EventCommit) (*history.Delta, error) {
	delay := 100 * time.Millisecond
	for try := 1; ; try++ {
		δF, err := h.hist.Update(ctx, δZ)
		if err == nil || ctx.Err() != nil || errors.Is(err, errStorageDown) {
			return δF, err
		}
		if try == historyTries {
			δF, rerr := h.hist.Recover(ctx, δZ)
			if rerr != nil {
				return nil, fmt.Errorf("%w; recover: %w", err, rerr)
			}
			log.Errorf("%s", err)
			log.Errorf("-> @%s applied without knowing what it changed: its files restart there, "+
				"their page cache is dropped (as at an epoch): %s", δZ.Tid, fileList(δF))
			return δF, nil
		}
		log.Warningf("%s (retrying in %s)", err, delay)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay *= 2
	}
}

// historyTries bounds the attempts to apply one commit to the history
// (0.1+0.2+0.4 s of waits, with head reads held up) before it recovers.
const historyTries = 4

// fileList names the files of a delta.
func fileList(δF *history.Delta) string {
	var v []string
	for foid := range δF.Files {
		v = append(v, foid.String())
	}
	sort.Strings(v)
	if len(v) == 0 {
		return "none"
	}
	return strings.Join(v, ", ")
}

// refollowFiles deals with the files a recovery could not follow anew (the
// records of their blktab unreadable): the history ignores them, so at each
// commit, until following them works again, the server treats them as
// replaced (Epoch: page cache dropped, state loaded anew). It returns the
// files whose state may fail to load (reads of them fail meanwhile).
// viewMu is write-held; the history is at the commit.
func (h *headView) refollowFiles(ctx context.Context, δF *history.Delta) (unsure map[zodb.Oid]bool) {
	unsure = make(map[zodb.Oid]bool)
	for foid := range h.refollow {
		fd := δF.Files[foid]
		if fd == nil {
			fd = &history.FileDelta{}
			δF.Files[foid] = fd
		}
		fd.Epoch, fd.SizeChanged = true, true
		if _, err := h.hist.Follow(ctx, foid); err != nil {
			fd.NotFollowed = err
		} else {
			delete(h.refollow, foid)
			log.Warningf("head/bigfile/%s: followed again @%s", foid, δF.Rev)
		}
	}
	for foid, fd := range δF.Files {
		if δF.Recovered {
			unsure[foid] = true
		}
		if fd.NotFollowed != nil {
			unsure[foid] = true
			if h.refollow == nil {
				h.refollow = make(map[zodb.Oid]struct{})
			}
			h.refollow[foid] = struct{}{}
			log.Errorf("head/bigfile/%s: @%s: %s (its reads fail until it can be followed again)", foid, δF.Rev, fd.NotFollowed)
		}
	}
	return unsure
}

// applyToKernel is phase 2 of commit (no view lock held).
func (s *Server) applyToKernel(sw *viewSwitch) {
	var wg sync.WaitGroup
	for _, ob := range sw.preserve {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ob.buf.unref()
			s.storeOld(ob)
		}()
	}
	for _, inv := range sw.inval {
		for _, blk := range inv.blocks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				st := inv.f.NotifyContent(blk*inv.blksize, inv.blksize)
				if st != 0 && st != syscall.ENOENT {
					log.Errorf("%s: blk %d: invalidate page cache: %s", inv.f.path(), blk, st)
				}
			}()
		}
	}
	for _, g := range sw.invalGrown {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := g.f.NotifyContent(g.from, g.to-g.from)
			if st != 0 && st != syscall.ENOENT {
				log.Errorf("%s: invalidate page cache past the old EOF: %s", g.f.path(), st)
			}
		}()
	}
	for _, f := range sw.invalAll {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := f.NotifyContent(0, 0) // all data and attributes
			if st != 0 && st != syscall.ENOENT {
				log.Errorf("%s: invalidate page cache: %s", f.path(), st)
			}
		}()
	}
	wg.Wait()
	for _, f := range sw.invalAttr {
		st := f.NotifyContent(-1, 0) // attributes only
		if st != 0 && st != syscall.ENOENT {
			log.Errorf("%s: invalidate attributes: %s", f.path(), st)
		}
	}
}

// storeOld puts old head data of a block into the page cache of
// @<rev>/bigfile/<oid>. The kernel must know that inode for NOTIFY_STORE,
// so the file is first resolved through the mount (O_PATH: lookups only).
// This must not wait for anything head reads hold: @<rev>/ lookups never
// take head locks.
func (s *Server) storeOld(ob oldBlock) {
	path := filepath.Join(s.opt.Mountpoint, "@"+ob.rev.String(), "bigfile", ob.foid.String())
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTCONN) {
			log.Warningf("preserve old data: %s: %s", path, err)
		}
		return
	}
	defer unix.Close(fd)

	v := s.revs.get(ob.rev)
	if v == nil {
		return
	}
	f := v.file(ob.foid)
	if f == nil {
		return
	}
	data := ob.buf.data
	bs := int64(len(data))
	if f.blksize != bs || (ob.blk+1)*bs > f.size {
		return // not a block of that revision's file (e.g. a hole beyond its EOF)
	}
	st := f.storeCache(ob.blk*bs, ob.buf, 0, bs)
	if st != 0 && st != syscall.ENOENT {
		log.Warningf("%s: blk %d: store old data: %s (reading it will be slower)", f.path(), ob.blk, st)
	}
}
