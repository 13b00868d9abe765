// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/zdata"
)

// Errors of queries. They are wrapped with the file, block and revisions
// concerned; test them with errors.Is / errors.As.
var (
	// ErrNotFollowed: the file is not followed (Follow was not called, or
	// it stopped being a ZBigFile).
	ErrNotFollowed = errors.New("file not followed")

	// ErrNotTracked: the block was never tracked (Track).
	ErrNotTracked = errors.New("block not tracked")

	// ErrOutOfWindow: a revision outside of [Tail, Head].
	ErrOutOfWindow = errors.New("revision outside of the history window")
)

// EpochError reports that the asked revision range crosses an epoch of the
// file: at Rev its ZBigFile object changed (created, blksize changed, blktab
// replaced), so the history before Rev is not the history of the same file.
type EpochError struct {
	File zodb.Oid
	Rev  zodb.Tid
}

func (e *EpochError) Error() string {
	return fmt.Sprintf("f%s: file epoch @%s", e.File, e.Rev)
}

// History is the block history of the followed ZBigFiles over the window
// (Tail, Head] of database revisions. See the package documentation.
type History struct {
	stor zodb.IStorage
	ld   *loader

	// wmu serialises the writers that change the history's shape: Update,
	// Follow, Unfollow, ForgetPast. Fields marked (w) are used only by them.
	wmu sync.Mutex

	// mu guards everything else: writers hold it exclusively while they
	// install their results; Track holds it exclusively when it tracks a
	// new block; queries hold it shared.
	mu    sync.RWMutex
	head  zodb.Tid
	tail  zodb.Tid
	files map[zodb.Oid]*fileHist
	zlog  *zlog

	// ZBlk oid → tracked blocks that map to it (as of head)
	zblkRoute routes[blkRef]
	// files with back-filled changes not yet merged into their chlog
	pending map[*fileHist]struct{}

	// (w) blktab node oids and ZBigFile oids → followed files
	treeRoute routes[*fileHist]

	// (w) files Recover could not follow anew → the commit it recovered:
	// their next Follow starts at Head (see recover.go)
	resets map[zodb.Oid]zodb.Tid
}

// blkRef names a block of a followed file.
type blkRef struct {
	f   *fileHist
	blk int64
}

// fileHist is the history of one followed file.
type fileHist struct {
	foid    zodb.Oid
	blksize int64
	blktab  zodb.Oid
	epoch   zodb.Tid // last epoch inside the window; 0 if none (≤ tail)

	tree    *treeIndex // as of head (w)
	maxKey  int64      // largest key as of head, if hasKeys
	hasKeys bool

	// every key change inside the window
	keys   map[int64][]kchange // by ↑ rev
	keylog []revBlk            // (rev, key) of the entries of keys, by ↑ rev

	// tracked blocks
	tracked map[int64]*blkHist
	chlog   []revBlk // (rev, blk) of every change of a tracked block, by ↑ rev
	backlog []revBlk // back-filled (rev, blk) not yet merged into chlog, unordered
}

// kchange is one change of a key: its ZBlk before and after (0: absent).
type kchange struct {
	rev      zodb.Tid
	old, new zodb.Oid
}

// blkHist is the history of a tracked block.
type blkHist struct {
	zblk zodb.Oid   // ZBlk as of head; 0: hole
	revs []zodb.Tid // revisions inside the window that changed the block, ↑
}

type revBlk struct {
	rev zodb.Tid
	blk int64
}

// New returns the history of a database whose head is at0: an empty window
// (at0, at0], nothing followed.
//
// The history reads blktab records and ZBigFile records from stor, at the
// revisions its updates and follows need. stor must stay open while the
// history is used.
func New(stor zodb.IStorage, at0 zodb.Tid) *History {
	return &History{
		stor:      stor,
		ld:        &loader{stor: stor},
		head:      at0,
		tail:      at0,
		files:     make(map[zodb.Oid]*fileHist),
		zlog:      newZlog(),
		zblkRoute: make(routes[blkRef]),
		pending:   make(map[*fileHist]struct{}),
		treeRoute: make(routes[*fileHist]),
		resets:    make(map[zodb.Oid]zodb.Tid),
	}
}

// Head returns the revision of the last commit applied with Update (at0 before any).
func (h *History) Head() zodb.Tid {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.head
}

// Tail returns the lower bound of the window: the history covers (Tail, Head].
func (h *History) Tail() zodb.Tid {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.tail
}

// FileInfo describes a followed file as of Head.
type FileInfo struct {
	BlkSize int64
	// NBlk is the number of blocks: largest blktab key + 1, 0 if blktab is
	// empty (a largest key of math.MaxInt64 or a negative one are reported
	// by Size as errors).
	NBlk int64
	// Epoch is the revision at which the ZBigFile object last changed
	// (created, blksize changed, blktab replaced) if that is inside the
	// window, else 0.
	Epoch zodb.Tid

	maxKey  int64
	hasKeys bool
}

// Size returns the file size: NBlk * BlkSize.
func (fi FileInfo) Size() (int64, error) {
	if !fi.hasKeys {
		return 0, nil
	}
	if fi.maxKey < 0 || fi.maxKey == math.MaxInt64 || fi.maxKey+1 > math.MaxInt64/fi.BlkSize {
		return 0, fmt.Errorf("%w: largest block %d, blksize %d", zdata.ErrSizeOverflow, fi.maxKey, fi.BlkSize)
	}
	return (fi.maxKey + 1) * fi.BlkSize, nil
}

func (f *fileHist) info() FileInfo {
	fi := FileInfo{BlkSize: f.blksize, Epoch: f.epoch, maxKey: f.maxKey, hasKeys: f.hasKeys}
	if f.hasKeys && f.maxKey >= 0 && f.maxKey < math.MaxInt64 {
		fi.NBlk = f.maxKey + 1
	}
	return fi
}

// Info returns what the history knows about the followed file foid as of Head.
func (h *History) Info(foid zodb.Oid) (FileInfo, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	f := h.files[foid]
	if f == nil {
		return FileInfo{}, fmt.Errorf("history: f%s: %w", foid, ErrNotFollowed)
	}
	return f.info(), nil
}

// fileTail returns the revision from which the file's history is known: its
// epoch, or the tail.
func (h *History) fileTail(f *fileHist) zodb.Tid {
	return max(h.tail, f.epoch)
}

// Follow starts following the ZBigFile foid, as of Head.
//
// Following builds the index of the file's blktab (its interior nodes) and
// replays the commits of the window that concern the file, so that the
// history of every block of the file is known from Tail (or from the file's
// epoch if that is later), not only from now. Following a followed file
// returns its info.
//
// Head must not move during Follow: call it where commits are not applied
// (the server's head lock, shared).
func (h *History) Follow(ctx context.Context, foid zodb.Oid) (_ FileInfo, err error) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	return h.follow(ctx, foid)
}

// follow is Follow under wmu.
func (h *History) follow(ctx context.Context, foid zodb.Oid) (_ FileInfo, err error) {
	head, tail := h.head, h.tail // (w) fields are stable under wmu
	defer func() {
		if err != nil {
			err = fmt.Errorf("history: follow f%s @%s: %w", foid, head, err)
		}
	}()
	if f := h.files[foid]; f != nil {
		return f.info(), nil
	}

	st, serial, err := zdata.LoadZBigFileState(ctx, h.stor, foid, head)
	if err != nil {
		return FileInfo{}, err
	}

	// the last epoch inside the window: walk back the revisions of the
	// ZBigFile record while they keep (blksize, blktab)
	var epoch zodb.Tid
	for s := serial; s > tail; {
		pst, ps, err := zdata.LoadZBigFileState(ctx, h.stor, foid, s-1)
		if err != nil && !isGone(err) {
			return FileInfo{}, err
		}
		if err != nil || pst != st {
			epoch = s
			break
		}
		s = ps
	}
	if _, ok := h.resets[foid]; ok {
		// Recover could not follow it: what it was before now is not known
		epoch = max(epoch, head)
	}

	f := &fileHist{
		foid:    foid,
		blksize: st.BlkSize,
		blktab:  st.BlkTab,
		epoch:   epoch,
		keys:    make(map[int64][]kchange),
		tracked: make(map[int64]*blkHist),
	}
	start := max(tail, epoch)
	f.tree, err = loadIndex(ctx, h.ld, f.blktab, start)
	if err != nil {
		return FileInfo{}, err
	}

	// replay the window since start
	prev := start
	for i := h.zlog.after(start); i < h.zlog.len(); i++ {
		rev, oids := h.zlog.commit(i)
		changed := make(map[zodb.Oid]struct{})
		for _, oid := range oids {
			if _, ok := f.tree.nodes[oid]; ok || f.tree.hasBucket(oid) {
				changed[oid] = struct{}{}
			}
		}
		if len(changed) > 0 {
			δt, err := f.tree.diff(ctx, h.ld, changed, prev, rev)
			if err != nil {
				return FileInfo{}, err
			}
			f.tree.apply(δt)
			f.addKeyChanges(rev, δt.changes)
		}
		prev = rev
	}
	f.maxKey, f.hasKeys, err = f.tree.maxKey(ctx, h.ld, nil, head)
	if err != nil {
		return FileInfo{}, err
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	h.files[foid] = f
	h.routeFile(f)
	delete(h.resets, foid)
	return f.info(), nil
}

// isGone tells whether err says that an object is not (or no longer) a ZBigFile.
func isGone(err error) bool {
	var e1 *zodb.NoObjectError
	var e2 *zodb.NoDataError
	return errors.As(err, &e1) || errors.As(err, &e2) || errors.Is(err, zdata.ErrNotZBigFile)
}

// treeOids calls fn for the oid of f's ZBigFile and of every blktab node.
func (f *fileHist) treeOids(fn func(zodb.Oid)) {
	fn(f.foid)
	for n := range f.tree.nodes {
		fn(n)
	}
	for b := range f.tree.buckets {
		fn(b)
	}
}

// routeFile adds the routes of f's ZBigFile and blktab nodes. Under wmu and mu.
func (h *History) routeFile(f *fileHist) {
	f.treeOids(func(oid zodb.Oid) { h.treeRoute.add(oid, f) })
}

// unrouteFile removes every route to f. Under wmu and mu.
func (h *History) unrouteFile(f *fileHist) {
	f.treeOids(func(oid zodb.Oid) { h.treeRoute.del(oid, f) })
	for blk, b := range f.tracked {
		if b.zblk != 0 {
			h.zblkRoute.del(b.zblk, blkRef{f, blk})
		}
	}
	delete(h.pending, f)
}

// Unfollow stops following foid and forgets its history. No-op if foid is
// not followed.
func (h *History) Unfollow(foid zodb.Oid) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if f := h.files[foid]; f != nil {
		h.unrouteFile(f)
		delete(h.files, foid)
	}
}

// addKeyChanges records the key changes of commit rev. f must not be shared
// yet, or mu must be held.
func (f *fileHist) addKeyChanges(rev zodb.Tid, changes []keyChange) {
	for _, c := range changes {
		f.keys[c.key] = append(f.keys[c.key], kchange{rev: rev, old: c.old, new: c.new})
		f.keylog = append(f.keylog, revBlk{rev, c.key})
	}
}

// Track records that block blk of the followed file foid was read as of
// revision at (which must be Head) and mapped to the ZBlk zblk then (0: a
// hole). From now on the block is in the sets Update and ChangedBlocks report,
// and BlkRevAt answers for it.
//
// The block's history before now is rebuilt from the history's records of
// the window: key changes of the file, and the changes of each ZBlk the key
// mapped to.
//
// Call Track where commits are not applied (the server's head lock, shared),
// with what was loaded there: zblk as of at.
func (h *History) Track(foid zodb.Oid, blk int64, zblk zodb.Oid, at zodb.Tid) error {
	h.mu.RLock()
	f, ok, err := h.tracked(foid, blk, zblk, at)
	h.mu.RUnlock()
	if err != nil || ok {
		return err
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok, err = h.tracked(foid, blk, zblk, at)
	if err != nil || ok {
		return err
	}

	lo := h.fileTail(f)
	kc := f.keys[blk]
	if n := len(kc); n > 0 && kc[n-1].new != zblk {
		return fmt.Errorf("history: track f%s #%d @%s: inconsistent: ZBlk %s, but the history says %s", foid, blk, at, zblk, kc[n-1].new)
	}
	// periods of constant key value: [lo, kc[0].rev) v0, [kc[0].rev, kc[1].rev) v1, ...
	var revs []zodb.Tid
	start, v := lo, zblk
	if len(kc) > 0 {
		v = kc[0].old
	}
	for i := 0; ; i++ {
		end := h.head + 1
		if i < len(kc) {
			end = kc[i].rev
		}
		if v != 0 {
			revs = h.zlog.revsOf(revs, v, start, end)
		}
		if i == len(kc) {
			break
		}
		revs = append(revs, kc[i].rev)
		start, v = kc[i].rev, kc[i].new
	}

	f.tracked[blk] = &blkHist{zblk: zblk, revs: revs}
	if zblk != 0 {
		h.zblkRoute.add(zblk, blkRef{f, blk})
	}
	if len(revs) > 0 {
		for _, r := range revs {
			f.backlog = append(f.backlog, revBlk{r, blk})
		}
		h.pending[f] = struct{}{}
	}
	return nil
}

// tracked looks blk of foid up for Track. Under mu.
func (h *History) tracked(foid zodb.Oid, blk int64, zblk zodb.Oid, at zodb.Tid) (f *fileHist, ok bool, err error) {
	f = h.files[foid]
	if f == nil {
		return nil, false, fmt.Errorf("history: track f%s #%d: %w", foid, blk, ErrNotFollowed)
	}
	if at != h.head {
		return nil, false, fmt.Errorf("history: track f%s #%d @%s: head is @%s", foid, blk, at, h.head)
	}
	b := f.tracked[blk]
	ok = b != nil
	if ok && b.zblk != zblk {
		return nil, false, fmt.Errorf("history: track f%s #%d @%s: inconsistent: ZBlk %s, but tracked as %s", foid, blk, at, zblk, b.zblk)
	}
	return f, ok, nil
}

// mergeBacklog merges f's back-filled changes into its chlog. Under mu (exclusive).
func (f *fileHist) mergeBacklog() {
	if len(f.backlog) == 0 {
		return
	}
	back := f.backlog
	sort.Slice(back, func(i, j int) bool { return back[i].rev < back[j].rev })
	merged := make([]revBlk, 0, len(f.chlog)+len(back))
	i, j := 0, 0
	for i < len(f.chlog) || j < len(back) {
		if j == len(back) || (i < len(f.chlog) && f.chlog[i].rev <= back[j].rev) {
			merged = append(merged, f.chlog[i])
			i++
		} else {
			merged = append(merged, back[j])
			j++
		}
	}
	f.chlog = merged
	f.backlog = nil
}

// file returns the followed file foid for a query as of at ∈ [fileTail, Head]. Under mu.
func (h *History) file(foid zodb.Oid, at zodb.Tid) (*fileHist, error) {
	f := h.files[foid]
	if f == nil {
		return nil, ErrNotFollowed
	}
	if at < h.tail || at > h.head {
		return nil, fmt.Errorf("%w (%s, %s]", ErrOutOfWindow, h.tail, h.head)
	}
	if at < f.epoch {
		return nil, &EpochError{File: foid, Rev: f.epoch}
	}
	return f, nil
}

// revAt returns the last revision ≤ at that changed b, or the file's tail.
func (f *fileHist) revAt(b *blkHist, at, lo zodb.Tid) zodb.Tid {
	i := sort.Search(len(b.revs), func(i int) bool { return b.revs[i] > at })
	if i > 0 && b.revs[i-1] > lo {
		return b.revs[i-1]
	}
	return lo
}

// BlkRevAt returns the revision that produced the data of block blk of file
// foid as seen at revision at: the last revision ≤ at that changed the block,
// or, if the block did not change in (fileTail, at], fileTail = max(Tail,
// file's epoch). In both cases the block's data is the same at every
// revision of [rev, at].
//
// at must be inside [Tail, Head] (ErrOutOfWindow), not before the file's
// epoch (*EpochError), and the block must be tracked (ErrNotTracked).
func (h *History) BlkRevAt(foid zodb.Oid, blk int64, at zodb.Tid) (zodb.Tid, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	f, err := h.file(foid, at)
	if err != nil {
		return 0, fmt.Errorf("history: f%s #%d @%s: %w", foid, blk, at, err)
	}
	b := f.tracked[blk]
	if b == nil {
		return 0, fmt.Errorf("history: f%s #%d @%s: %w", foid, blk, at, ErrNotTracked)
	}
	return f.revAt(b, at, h.fileTail(f)), nil
}

// BlkRev is a block and a revision.
type BlkRev struct {
	Blk int64
	Rev zodb.Tid
}

// ChangedBlocks returns the tracked blocks of file foid that changed in
// (lo, hi], each with its BlkRevAt as of lo, by ↑ block. It is what a watch
// moving to lo needs to pin.
//
// lo and hi must be inside [Tail, Head] with lo ≤ hi (ErrOutOfWindow); an
// epoch of the file after lo is an *EpochError.
func (h *History) ChangedBlocks(foid zodb.Oid, lo, hi zodb.Tid) ([]BlkRev, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	f, err := h.file(foid, lo)
	if err == nil && (hi < lo || hi > h.head) {
		err = fmt.Errorf("%w (%s, %s]", ErrOutOfWindow, h.tail, h.head)
	}
	if err != nil {
		return nil, fmt.Errorf("history: f%s (%s, %s]: %w", foid, lo, hi, err)
	}

	seen := make(map[int64]struct{})
	var res []BlkRev
	add := func(e revBlk) {
		if e.rev <= lo || e.rev > hi {
			return
		}
		if _, ok := seen[e.blk]; ok {
			return
		}
		seen[e.blk] = struct{}{}
		res = append(res, BlkRev{Blk: e.blk})
	}
	i := sort.Search(len(f.chlog), func(i int) bool { return f.chlog[i].rev > lo })
	for ; i < len(f.chlog) && f.chlog[i].rev <= hi; i++ {
		add(f.chlog[i])
	}
	for _, e := range f.backlog {
		add(e)
	}
	ftail := h.fileTail(f)
	for i := range res {
		res[i].Rev = f.revAt(f.tracked[res[i].Blk], lo, ftail)
	}
	sort.Slice(res, func(i, j int) bool { return res[i].Blk < res[j].Blk })
	return res, nil
}
