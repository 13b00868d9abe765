// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	log "github.com/golang/glog"
	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"
)

// The kernel work of a commit scales with the number of changed blocks K
// (one commit may change 100,000 cached blocks), the resources that do it
// must not: every FUSE notification and every open through the mount blocks
// in a syscall, which holds an OS thread, and a goroutine per block once
// made the server die of thread exhaustion (10,000 threads) with K >=
// 15,000, and hold K blocks of old data at once.
//
//   - commitWorkers goroutines at most do the work of a commit: retrieves
//     from the page cache, stores into @<rev>/ files, invalidations
//     (parallel).
//   - Consecutive blocks go together: one retrieve and one store for up to
//     preserveChunk bytes of old data, one invalidation per run of
//     consecutive changed blocks.
//   - Old data is retrieved, stored into @<rev>/ and released by the same
//     worker, chunk after chunk: the memory it takes is commitWorkers
//     chunks, whatever K.
//   - Each @<rev>/bigfile/<oid> is resolved through the mount once per
//     commit (revTarget), its descriptor closed after its last chunk.
//
// Old data is retrieved in phase 2, with head reads running at the new
// revision, not in phase 1: a store waits for the page locks of the
// @<rev>/ file, and a read of it holding them may be queued in the kernel
// behind head reads (max_background) that wait for viewMu. A head load of a
// changed block in phase 2 would put new data into its pages: the plan
// (preservePlan), published in phase 1, lets the load mark the block
// (headView.loadingNew) before its data reaches the kernel, and the worker
// keeps a retrieved block only if no load marked it first (then the pages it
// retrieved were the old ones: new data lands only after the mark).
//
// Keeping old data in @<rev>/ is an optimisation for clients that lag
// behind (pinned to @<rev>) and @<rev>/ readers: what is not kept is loaded
// from the storage when asked. So a commit too big to keep in full keeps
// part of it, in order, and says so (one log line): at most
// preserveBudget bytes and preserveMaxRevs distinct @<rev>/ views (each a
// ZODB connection and kernel inodes until it is released), and nothing of
// what cannot be resolved (descriptors exhausted, storage errors). The
// invalidation of changed head blocks never depends on any of it.

// commitWorkers bounds the goroutines doing the kernel work of one commit.
var commitWorkers = min(max(4*runtime.GOMAXPROCS(0), 4), 32)

const (
	// preserveBudget bounds the old data one commit copies into @<rev>/
	// caches (time before head/at shows the commit, page cache).
	preserveBudget = 512 << 20

	// preserveMaxRevs bounds the distinct @<rev>/ views one commit keeps
	// old data in: those with most blocks.
	preserveMaxRevs = 64

	// preserveChunk is how much old data a worker retrieves and stores at
	// once, in whole blocks (at least one block).
	preserveChunk = 1 << 20
)

// parallel calls work(w, i) for every i in [0, n) from at most
// commitWorkers goroutines and returns when all calls returned. w, in [0,
// commitWorkers), is the goroutine's number (for its own state).
func parallel(n int, work func(w, i int)) {
	nw := min(n, commitWorkers)
	if nw <= 1 {
		for i := range n {
			work(0, i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range nw {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				work(w, i)
			}
		}()
	}
	wg.Wait()
}

// oldCand is a changed block of a head file whose old data may be kept.
type oldCand struct {
	f   *bigFile
	blk int64
	buf *blockBuf // from the load table (its reference), else nil: retrieve
	rev zodb.Tid  // the block's last change before the commit
}

// oldRun is a run of consecutive candidates of one head file that go into
// the same @<rev>/ file: one retrieve and one store.
type oldRun struct {
	f      *bigFile
	blk, n int64
	buf    *blockBuf // n = 1 and the data is at hand (load table)
	target *revTarget

	mu        sync.Mutex
	retrieved bool   // the worker has the old data: loads do not matter any more
	loaded    []bool // blocks a load of new data reached first (nil: none)
}

// preservePlan is the old data a commit keeps in @<rev>/: made in phase 1,
// carried out in phase 2 (run).
type preservePlan struct {
	tid     zodb.Tid
	runs    []oldRun
	byFile  map[*bigFile][]*oldRun // runs to retrieve, by block
	skipped tally
}

// revTarget is @<rev>/bigfile/<oid> for the runs of one commit: resolved
// through the mount by the first run that needs it (the kernel must know the
// inode to store into its cache; O_PATH: lookups only), its descriptor kept
// until the last run is done so that the kernel keeps the inode meanwhile.
type revTarget struct {
	rev  zodb.Tid
	foid zodb.Oid

	once sync.Once
	fd   int
	f    *bigFile // nil: not available
	err  error    // why not, when worth saying

	pending atomic.Int32 // runs not done yet
}

// resolve opens the target once; f is nil if it is not available.
func (t *revTarget) resolve(s *Server) *bigFile {
	t.once.Do(func() {
		t.fd = -1
		path := filepath.Join(s.opt.Mountpoint, "@"+t.rev.String(), "bigfile", t.foid.String())
		fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
		if err != nil {
			if !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTCONN) {
				t.err = fmt.Errorf("%s: %w", path, err)
			}
			return
		}
		t.fd = fd
		if v := s.revs.get(t.rev); v != nil {
			t.f = v.file(t.foid)
		}
	})
	return t.f
}

// done is called after each run; the last one closes the descriptor.
func (t *revTarget) done() {
	if t.pending.Add(-1) == 0 && t.fd >= 0 {
		unix.Close(t.fd)
		t.fd = -1
	}
}

// tally counts what a commit could not do, by reason, for one log line.
type tally struct {
	mu     sync.Mutex
	counts map[string]int
	first  map[string]string // reason -> first error
}

func (l *tally) add(reason string, n int, err error) {
	if n <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts, l.first = make(map[string]int), make(map[string]string)
	}
	l.counts[reason] += n
	if _, ok := l.first[reason]; !ok && err != nil {
		l.first[reason] = err.Error()
	}
}

func (l *tally) empty() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.counts) == 0
}

// String is like "3 over 512 MiB this commit; 1 could not be stored (...)".
func (l *tally) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	reasons := make([]string, 0, len(l.counts))
	for r := range l.counts {
		reasons = append(reasons, r)
	}
	slices.Sort(reasons)
	var b strings.Builder
	for _, r := range reasons {
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d %s", l.counts[r], r)
		if e := l.first[r]; e != "" {
			fmt.Fprintf(&b, " (%s)", e)
		}
	}
	return b.String()
}

// planPreserve plans to keep the old data of changed head blocks in the
// page cache of @<rev>/bigfile/<oid>, rev = each block's last change as of
// oldAt (what clients lagging behind get pinned to). viewMu is write-held:
// the page cache of head files still has the old data; the plan is
// published before reads resume (h.preserving). The references to load
// table buffers in cands go to the plan.
func (h *headView) planPreserve(tid, oldAt zodb.Tid, cands []oldCand) *preservePlan {
	p := &preservePlan{tid: tid}
	drop := func(c *oldCand) {
		if c.buf != nil {
			c.buf.unref()
			c.buf = nil
		}
	}

	// the block's revisions; the views with most blocks
	nrev := make(map[zodb.Tid]int)
	keep := cands[:0]
	for _, c := range cands {
		rev, err := h.hist.BlkRevAt(c.f.oid, c.blk, oldAt)
		if err != nil {
			p.skipped.add("of unknown revision", 1, err)
			drop(&c)
			continue
		}
		c.rev = rev
		nrev[rev]++
		keep = append(keep, c)
	}
	cands = keep
	if len(nrev) > preserveMaxRevs {
		revs := make([]zodb.Tid, 0, len(nrev))
		for rev := range nrev {
			revs = append(revs, rev)
		}
		slices.SortFunc(revs, func(a, b zodb.Tid) int {
			return cmp.Or(cmp.Compare(nrev[b], nrev[a]), cmp.Compare(b, a))
		})
		for _, rev := range revs[preserveMaxRevs:] {
			delete(nrev, rev)
		}
		keep = cands[:0]
		for _, c := range cands {
			if _, ok := nrev[c.rev]; ok {
				keep = append(keep, c)
			} else {
				p.skipped.add(fmt.Sprintf("of more than %d revisions", preserveMaxRevs), 1, nil)
				drop(&c)
			}
		}
		cands = keep
	}
	budget := int64(preserveBudget)
	keep = cands[:0]
	for _, c := range cands {
		if budget < c.f.blksize {
			p.skipped.add(fmt.Sprintf("over %d MiB this commit", preserveBudget>>20), 1, nil)
			drop(&c)
			continue
		}
		budget -= c.f.blksize
		keep = append(keep, c)
	}
	cands = keep

	// runs of consecutive blocks per file and revision
	slices.SortStableFunc(cands, func(a, b oldCand) int {
		return cmp.Or(cmp.Compare(a.f.oid, b.f.oid), cmp.Compare(a.rev, b.rev))
	})
	targets := make(map[[2]uint64]*revTarget)
	for _, c := range cands {
		key := [2]uint64{uint64(c.rev), uint64(c.f.oid)}
		t := targets[key]
		if t == nil {
			t = &revTarget{rev: c.rev, foid: c.f.oid}
			targets[key] = t
		}
		if n := len(p.runs); n > 0 && c.buf == nil {
			r := &p.runs[n-1]
			if r.target == t && r.buf == nil && r.blk+r.n == c.blk && (r.n+1)*c.f.blksize <= preserveChunk {
				r.n++
				continue
			}
		}
		p.runs = append(p.runs, oldRun{f: c.f, blk: c.blk, n: 1, buf: c.buf, target: t})
		t.pending.Add(1)
	}
	p.byFile = make(map[*bigFile][]*oldRun)
	for i := range p.runs {
		if r := &p.runs[i]; r.buf == nil {
			p.byFile[r.f] = append(p.byFile[r.f], r)
		}
	}
	for _, runs := range p.byFile {
		slices.SortFunc(runs, func(a, b *oldRun) int { return cmp.Compare(a.blk, b.blk) })
	}
	return p
}

// loadingNew is called when block blk of head file f was loaded at the
// new revision, before its data reaches the kernel (viewMu read-held): if
// its old data is still to be retrieved, what will be retrieved may be new
// data, so the block is not kept.
func (h *headView) loadingNew(f *bigFile, blk int64) {
	p := h.preserving.Load()
	if p == nil {
		return
	}
	runs := p.byFile[f]
	i, found := slices.BinarySearchFunc(runs, blk, func(r *oldRun, blk int64) int {
		switch {
		case r.blk+r.n <= blk:
			return -1
		case r.blk > blk:
			return +1
		}
		return 0
	})
	if !found {
		return
	}
	r := runs[i]
	r.mu.Lock()
	if !r.retrieved {
		if r.loaded == nil {
			r.loaded = make([]bool, r.n)
		}
		r.loaded[blk-r.blk] = true
	}
	r.mu.Unlock()
}

// run carries out the plan (phase 2, no view lock held): retrieve and
// store, chunk after chunk, at most commitWorkers at once. It returns the
// number of blocks kept.
func (p *preservePlan) run(s *Server) int {
	var kept atomic.Int64
	size := int64(preserveChunk) // or the largest run (a block): pooled sizes
	for _, runs := range p.byFile {
		for _, r := range runs {
			size = max(size, r.n*r.f.blksize)
		}
	}
	bufs := make([]*blockBuf, commitWorkers)
	parallel(len(p.runs), func(w, i int) {
		r := &p.runs[i]
		if r.buf == nil && bufs[w] == nil {
			bufs[w] = newMemBuf(size)
		}
		kept.Add(s.preserveRun(r, bufs[w], &p.skipped))
	})
	for _, b := range bufs {
		if b != nil {
			b.unref()
		}
	}
	if !p.skipped.empty() {
		log.Warningf("@%s: old data of changed blocks not kept in @<rev>/ (reading it there loads it): %s", p.tid, &p.skipped)
	}
	return int(kept.Load())
}

// preserveRun copies the old data of run r into its @<rev>/ file, through
// mem (a worker's buffer of at least one run) unless the data is at hand.
// It returns the number of blocks stored.
func (s *Server) preserveRun(r *oldRun, mem *blockBuf, skipped *tally) (kept int64) {
	t := r.target
	defer t.done()
	if r.buf != nil {
		defer r.buf.unref()
	}
	revf := t.resolve(s)
	if revf == nil {
		skipped.add("whose @<rev>/ file could not be opened", int(r.n), t.err)
		return 0
	}
	bs := r.f.blksize
	if revf.blksize != bs {
		return 0 // the file changed blksize since: no block of that revision
	}
	// only blocks of that revision's file (not holes beyond its EOF)
	end := min(r.blk+r.n, revf.size/bs)
	if r.buf != nil {
		if r.blk < end && storeOld(revf, r.blk, r.buf, 0, bs, skipped) {
			return 1
		}
		return 0
	}

	// retrieve: full blocks only; a block not (fully) cached is not kept,
	// nor is what the kernel left out of the cache after it: look again
	// from the next block
	var full [][2]int64 // ranges of fully retrieved blocks
	for blk := r.blk; blk < end; {
		got, st := r.f.ReadCache(blk*bs, mem.data[(blk-r.blk)*bs:(end-r.blk)*bs])
		if st != 0 && st != syscall.ENOENT {
			skipped.add("that could not be retrieved from the page cache", int(end-blk), st)
			break
		}
		if n := int64(got) / bs; n > 0 {
			full = append(full, [2]int64{blk, blk + n})
			blk += n
		}
		if st == syscall.ENOENT {
			break // the kernel forgot the head file: nothing cached
		}
		blk++
	}
	r.mu.Lock()
	r.retrieved = true
	loaded := r.loaded // not written any more
	r.mu.Unlock()

	// store, but not blocks that new data may have reached before
	for _, rg := range full {
		for lo := rg[0]; lo < rg[1]; {
			if loaded != nil && loaded[lo-r.blk] {
				lo++
				continue
			}
			hi := lo + 1
			for hi < rg[1] && (loaded == nil || !loaded[hi-r.blk]) {
				hi++
			}
			if storeOld(revf, r.blk, mem, (lo-r.blk)*bs, (hi-r.blk)*bs, skipped) {
				kept += hi - lo
			}
			lo = hi
		}
	}
	return kept
}

// storeOld stores b.data[lo:hi] into revf's page cache at offset
// blk*blksize + lo and tells whether it did.
func storeOld(revf *bigFile, blk int64, b *blockBuf, lo, hi int64, skipped *tally) bool {
	st := revf.storeCache(blk*revf.blksize, b, lo, hi)
	switch st {
	case 0:
		return true
	case syscall.ENOENT: // the kernel forgot the inode
	default:
		skipped.add("that could not be stored", int((hi-lo)/revf.blksize), fmt.Errorf("%s: %w", revf.path(), st))
	}
	return false
}
