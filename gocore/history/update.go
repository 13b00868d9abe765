// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

// Applying commits, forgetting the past.

import (
	"context"
	"fmt"
	"slices"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/zdata"
)

// Delta is what a commit did to the followed files.
type Delta struct {
	Rev   zodb.Tid
	Files map[zodb.Oid]*FileDelta // only files with something to report

	// Recovered: made by Recover, which does not know what the commit
	// changed: Files are every file it may have changed, each with Epoch.
	Recovered bool
}

// FileDelta is what a commit did to one followed file.
type FileDelta struct {
	// Blocks are the tracked blocks whose data may differ after the
	// commit (↑, no duplicates): their blktab entry changed, or the ZBlk
	// they map to was in the commit.
	Blocks []int64

	// SizeChanged: the largest blktab key changed (or the file had an epoch
	// that changed its size). Info has the new size.
	SizeChanged bool

	// Epoch: the ZBigFile object itself changed (blksize, blktab replaced,
	// object gone): the file's history restarts at this commit and nothing
	// of it is tracked any more; Blocks is empty. Drop every cached block
	// of the file.
	Epoch bool

	// Gone (with Epoch): the object is no longer a ZBigFile (deleted,
	// replaced by another class): the file is not followed any more.
	Gone bool

	// Info is the file after the commit (zero if Gone).
	Info FileInfo

	// NotFollowed (Recover only): following the file anew at the commit
	// failed with this error; the file is not followed until a later
	// Follow succeeds.
	NotFollowed error
}

// fileUpdate is what a commit does to one file, computed before anything
// is changed.
type fileUpdate struct {
	f       *fileHist
	changed map[zodb.Oid]struct{} // blktab nodes of f in the commit
	fchange bool                  // the ZBigFile record is in the commit

	gone    bool
	renewed *fileHist // the file after an epoch

	δt      *treeDelta
	maxKey  int64
	hasKeys bool
}

// Update applies the commit δZ = (tid, changed oids) to the history and
// returns what it did to the followed files.
//
// Commits must be applied one by one in order, each exactly once: δZ.Tid must
// be after Head. Update loads the records it needs from the storage (the
// changed blktab nodes as of Head and as of δZ.Tid) before it changes
// anything: on error, the history is unchanged (still at Head) and the
// error says which file and record failed. Queries and Track are not held up
// while Update loads; they wait only while it installs its result.
func (h *History) Update(ctx context.Context, δZ *zodb.EventCommit) (_ *Delta, err error) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	prev, tid := h.head, δZ.Tid
	defer func() {
		if err != nil {
			err = fmt.Errorf("history: update @%s: %w", tid, err)
		}
	}()
	if tid <= prev {
		return nil, fmt.Errorf("commit is not after head @%s", prev)
	}

	// which files does the commit concern
	updates := make(map[*fileHist]*fileUpdate)
	for _, oid := range δZ.Changev {
		h.treeRoute.each(oid, func(f *fileHist) {
			u := updates[f]
			if u == nil {
				u = &fileUpdate{f: f, changed: make(map[zodb.Oid]struct{})}
				updates[f] = u
			}
			if oid == f.foid {
				u.fchange = true
			} else {
				u.changed[oid] = struct{}{}
			}
		})
	}

	// compute, files in parallel
	uv := make([]*fileUpdate, 0, len(updates))
	for _, u := range updates {
		uv = append(uv, u)
	}
	err = parallel(ctx, len(uv), func(ctx context.Context, i int) error {
		return h.compute(ctx, uv[i], prev, tid)
	})
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	// install
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.zlog.append(tid, δZ.Changev); err != nil {
		return nil, err
	}
	δ := &Delta{Rev: tid, Files: make(map[zodb.Oid]*FileDelta)}
	fδ := func(f *fileHist) *FileDelta {
		d := δ.Files[f.foid]
		if d == nil {
			d = &FileDelta{}
			δ.Files[f.foid] = d
		}
		return d
	}
	changedBlk := func(f *fileHist, blk int64, b *blkHist) {
		if n := len(b.revs); n > 0 && b.revs[n-1] == tid {
			return
		}
		b.revs = append(b.revs, tid)
		f.chlog = append(f.chlog, revBlk{tid, blk})
		d := fδ(f)
		d.Blocks = append(d.Blocks, blk)
	}

	for f, u := range updates {
		switch {
		case u.gone:
			h.unrouteFile(f)
			delete(h.files, f.foid)
			*fδ(f) = FileDelta{Epoch: true, Gone: true, SizeChanged: true}

		case u.renewed != nil:
			old := f.info()
			h.unrouteFile(f)
			nf := u.renewed
			h.files[f.foid] = nf
			h.routeFile(nf)
			sizeChanged := old.BlkSize != nf.blksize || old.hasKeys != nf.hasKeys || old.maxKey != nf.maxKey
			*fδ(f) = FileDelta{Epoch: true, SizeChanged: sizeChanged}

		case u.δt != nil:
			for _, n := range u.δt.delNodes {
				h.treeRoute.del(n, f)
			}
			for _, b := range u.δt.delBuckets {
				h.treeRoute.del(b, f)
			}
			f.tree.apply(u.δt)
			for n := range u.δt.setNodes {
				h.treeRoute.add(n, f)
			}
			for _, b := range u.δt.addBuckets {
				h.treeRoute.add(b, f)
			}
			f.addKeyChanges(tid, u.δt.changes)
			for _, c := range u.δt.changes {
				b := f.tracked[c.key]
				if b == nil {
					continue
				}
				if b.zblk != 0 {
					h.zblkRoute.del(b.zblk, blkRef{f, c.key})
				}
				b.zblk = c.new
				if b.zblk != 0 {
					h.zblkRoute.add(b.zblk, blkRef{f, c.key})
				}
				changedBlk(f, c.key, b)
			}
			if u.hasKeys != f.hasKeys || u.maxKey != f.maxKey {
				f.maxKey, f.hasKeys = u.maxKey, u.hasKeys
				fδ(f).SizeChanged = true
			}
		}
	}

	// ZBlks changed in place
	for _, oid := range δZ.Changev {
		h.zblkRoute.each(oid, func(r blkRef) {
			if b := r.f.tracked[r.blk]; b != nil && b.zblk == oid {
				changedBlk(r.f, r.blk, b)
			}
		})
	}

	for f := range h.pending {
		f.mergeBacklog()
		delete(h.pending, f)
	}
	for foid, d := range δ.Files {
		slices.Sort(d.Blocks)
		if f := h.files[foid]; f != nil && !d.Gone {
			d.Info = f.info()
		}
	}
	h.head = tid
	return δ, nil
}

// compute works out u without changing anything. Under wmu.
func (h *History) compute(ctx context.Context, u *fileUpdate, prev, tid zodb.Tid) error {
	f := u.f
	if u.fchange {
		st, _, err := zdata.LoadZBigFileState(ctx, h.stor, f.foid, tid)
		switch {
		case err != nil && isGone(err):
			u.gone = true
			return nil
		case err != nil:
			return fmt.Errorf("f%s: %w", f.foid, err)
		case st.BlkSize != f.blksize || st.BlkTab != f.blktab:
			nf := &fileHist{
				foid:    f.foid,
				blksize: st.BlkSize,
				blktab:  st.BlkTab,
				epoch:   tid,
				keys:    make(map[int64][]kchange),
				tracked: make(map[int64]*blkHist),
			}
			nf.tree, err = loadIndex(ctx, h.ld, nf.blktab, tid)
			if err == nil {
				nf.maxKey, nf.hasKeys, err = nf.tree.maxKey(ctx, h.ld, nil, tid)
			}
			if err != nil {
				return fmt.Errorf("f%s: epoch: %w", f.foid, err)
			}
			u.renewed = nf
			return nil
		}
		// the record was rewritten with the same (blksize, blktab): no epoch
	}
	if len(u.changed) == 0 {
		return nil
	}

	δt, err := f.tree.diff(ctx, h.ld, u.changed, prev, tid)
	if err != nil {
		return fmt.Errorf("f%s: %w", f.foid, err)
	}
	u.δt = δt
	u.maxKey, u.hasKeys = f.maxKey, f.hasKeys
	var addMax int64
	hasAdd, delMax := false, false
	for _, c := range δt.changes {
		if c.new != 0 && (!hasAdd || c.key > addMax) {
			addMax, hasAdd = c.key, true
		}
		if c.new == 0 && f.hasKeys && c.key == f.maxKey {
			delMax = true
		}
	}
	switch {
	case hasAdd && (!f.hasKeys || addMax > f.maxKey):
		u.maxKey, u.hasKeys = addMax, true
	case delMax:
		u.maxKey, u.hasKeys, err = f.tree.maxKey(ctx, h.ld, δt, tid)
		if err != nil {
			return fmt.Errorf("f%s: %w", f.foid, err)
		}
	}
	return nil
}

// ForgetPast forgets the history up to revCut: the window becomes
// (revCut, Head]. Queries about revisions before revCut fail afterwards
// (ErrOutOfWindow). revCut ≤ Tail is a no-op; revCut > Head forgets
// everything (the window becomes (Head, Head]).
//
// Keep what the watches need: revCut ≤ the at of every watch.
func (h *History) ForgetPast(revCut zodb.Tid) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.forgetPast(revCut)
}

// forgetPast is ForgetPast under wmu and mu.
func (h *History) forgetPast(revCut zodb.Tid) {
	revCut = min(revCut, h.head)
	if revCut <= h.tail {
		return
	}
	h.tail = revCut
	h.zlog.forget(revCut)
	for foid, r := range h.resets {
		if r <= revCut {
			delete(h.resets, foid)
		}
	}
	for f := range h.pending {
		f.mergeBacklog()
		delete(h.pending, f)
	}
	for _, f := range h.files {
		if f.epoch <= revCut {
			f.epoch = 0
		}
		n := 0
		for ; n < len(f.keylog) && f.keylog[n].rev <= revCut; n++ {
			e := f.keylog[n]
			kc := f.keys[e.blk]
			if len(kc) <= 1 {
				delete(f.keys, e.blk)
			} else {
				f.keys[e.blk] = kc[1:]
			}
		}
		f.keylog = f.keylog[n:]
		n = 0
		for ; n < len(f.chlog) && f.chlog[n].rev <= revCut; n++ {
			e := f.chlog[n]
			if b := f.tracked[e.blk]; b != nil && len(b.revs) > 0 && b.revs[0] == e.rev {
				b.revs = b.revs[1:]
				if len(b.revs) == 0 {
					b.revs = nil
				}
			}
		}
		f.chlog = f.chlog[n:]
	}
}
