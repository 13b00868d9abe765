// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	log "github.com/golang/glog"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/history"
)

// historyKeep is how much history is kept at least (spec 1.7 step 9).
const historyKeep = time.Minute

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
			nchanged, kept, err := s.head.commit(ctx, ev)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("commit @%s: %w", ev.Tid, err)
			}
			if log.V(1) {
				log.Infof("zwatcher: @%s processed in %s (%d objects changed; %d blocks changed, %d kept in @<rev>/)",
					ev.Tid, time.Since(t0), len(ev.Changev), nchanged, kept)
			}
		default:
			return fmt.Errorf("unexpected storage event %T", ev)
		}
	}
}

// viewSwitch is the outcome of the switch phase of a commit.
type viewSwitch struct {
	tid        zodb.Tid
	oldUploads *sync.WaitGroup // uploads of the old view
	nchanged   int             // changed blocks of head files
	preserve   *preservePlan   // their old data to keep in @<rev>/
	inval      []blockInval    // changed blocks of head files
	invalAll   []*bigFile      // epoch or gone: drop all the file's cache
	invalAttr  []*bigFile      // size changed
	invalGrown []grownRange    // files that grew: their region past the old EOF
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
//     changed blocks leave the load tables (the old data of a block loaded
//     and not uploaded yet is taken from there); the head connection moves
//     to δZ.Tid; sizes and blksizes of changed files are recomputed; the
//     old data to keep in @<rev>/ is planned (preservePlan, published for
//     the loads of phase 2); a new upload generation starts. Nothing here
//     waits for the kernel.
//  2. page cache (viewMu released: reads run again, at the new revision):
//     wait for the uploads of the old view (they may wait for page locks of
//     reads in flight, which can now complete); retrieve the old data of
//     changed blocks from the page cache and store it into the @<rev>/
//     files (a block that a load of the new data reached first is not
//     kept); invalidate the changed blocks of head files
//     (NOTIFY_INVAL_INODE waits for page locks of reads in flight, so it
//     must not run with viewMu held), and of files that grew the region
//     past their old EOF (see grownRange); invalidate attributes of resized
//     files; then advance head/at and tell .wcfs/debug/zhead readers.
//
// The kernel work of phase 2 is done by at most commitWorkers goroutines,
// with memory and descriptors bounded whatever the number of changed
// blocks (preserve.go).
//
// Data returned by reads during phase 2 is of the new revision, so whether
// it lands in the page cache before or after the invalidation, the cache
// never holds stale data once head/at shows δZ.Tid.
//
// It returns the number of changed blocks of head files and how many of
// them had their old data kept in @<rev>/.
func (h *headView) commit(ctx context.Context, δZ *zodb.EventCommit) (nchanged, kept int, err error) {
	h.commitMu.Lock()
	defer h.commitMu.Unlock()

	if err := h.viewMu.Lock(ctx); err != nil {
		return 0, 0, err
	}
	sw, err := h.switchView(ctx, δZ)
	h.viewMu.Unlock()
	if err != nil {
		return 0, 0, err
	}

	sw.oldUploads.Wait()
	kept = sw.preserve.run(h.srv)
	h.preserving.Store(nil)
	h.srv.applyToKernel(sw)

	h.advance(δZ.Tid)
	if h.srv.zhead != nil {
		h.srv.zhead.publish(δZ.Tid)
	}
	h.hist.ForgetPast(h.forgetCut())
	return sw.nchanged, kept, nil
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
	nblk := 0
	foids := make([]zodb.Oid, 0, len(δF.Files))
	for foid, fd := range δF.Files {
		foids = append(foids, foid)
		nblk += len(fd.Blocks)
	}
	cands := make([]oldCand, 0, nblk)
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
			cands = append(cands, oldCand{f: f, blk: blk, buf: buf})
		}
		f.loadMu.Unlock()
		if len(fd.Blocks) > 0 {
			sw.inval = append(sw.inval, blockInval{f, f.blksize, fd.Blocks})
		}
		if fd.SizeChanged {
			sw.invalAttr = append(sw.invalAttr, f)
		}
	}

	fail := func(err error) (*viewSwitch, error) {
		for _, c := range cands {
			if c.buf != nil {
				c.buf.unref()
			}
		}
		return nil, err
	}

	// move the connection and recompute what depends on it
	if err := h.zconn.Resync(ctx, δZ.Tid); err != nil {
		return fail(err)
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
				return fail(err)
			}
		}
		f.revApprox = δZ.Tid
	}

	// old data: from the load tables, else retrieved from the kernel
	// (full blocks only) in phase 2, into the page cache of @<rev>/ files
	sw.nchanged = len(cands)
	sw.preserve = h.planPreserve(δZ.Tid, oldAt, cands)
	h.preserving.Store(sw.preserve)

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

// applyToKernel is phase 2 of commit (no view lock held): invalidations of
// head files, one per run of consecutive changed blocks, at most
// commitWorkers at once (preserve.go).
func (s *Server) applyToKernel(sw *viewSwitch) {
	type inval struct {
		f      *bigFile
		off, n int64 // n = 0: all data and attributes
		what   string
	}
	var v []inval
	for _, inv := range sw.inval {
		b := inv.blocks
		for i := 0; i < len(b); {
			j := i + 1
			for j < len(b) && b[j] == b[j-1]+1 {
				j++
			}
			v = append(v, inval{inv.f, b[i] * inv.blksize, (b[j-1] - b[i] + 1) * inv.blksize, "changed blocks"})
			i = j
		}
	}
	for _, g := range sw.invalGrown {
		v = append(v, inval{g.f, g.from, g.to - g.from, "past the old EOF"})
	}
	for _, f := range sw.invalAll {
		v = append(v, inval{f, 0, 0, "all"})
	}
	var failed tally
	parallel(len(v), func(_, i int) {
		inv := v[i]
		st := inv.f.NotifyContent(inv.off, inv.n)
		if st != 0 && st != syscall.ENOENT {
			failed.add(inv.what, 1, fmt.Errorf("%s [%d, +%d): %w", inv.f.path(), inv.off, inv.n, st))
		}
	})
	if !failed.empty() {
		log.Errorf("@%s: invalidate page cache: %s", sw.tid, &failed)
	}
	for _, f := range sw.invalAttr {
		st := f.NotifyContent(-1, 0) // attributes only
		if st != 0 && st != syscall.ENOENT {
			log.Errorf("%s: invalidate attributes: %s", f.path(), st)
		}
	}
}
