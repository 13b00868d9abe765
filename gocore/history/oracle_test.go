// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

// A brute-force oracle of block histories, and a checker that replays a
// database's commits through a History and compares every answer with it.
//
// The oracle reads every file at every revision through neo/go's btree
// package and a zodb.Connection (zdata's ZBigFile): it shares nothing with
// the history's own record decoding and tree diffs.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand"
	"slices"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/zdata"
	"wendelin.dev/wcfs/gocore/zurl"
)

// commit is one database transaction: δZ.
type commit struct {
	rev  zodb.Tid
	oids []zodb.Oid
}

// readCommits returns every transaction of stor.
func readCommits(ctx context.Context, t testing.TB, stor zodb.IStorage) []commit {
	t.Helper()
	var cv []commit
	testdb.EachRecord(ctx, t, stor, func(txn *zodb.TxnInfo, d *zodb.DataInfo) {
		if d == nil {
			cv = append(cv, commit{rev: txn.Tid})
		} else {
			cv[len(cv)-1].oids = append(cv[len(cv)-1].oids, d.Oid)
		}
	})
	return cv
}

// openOracle opens the FileStorage at path and returns it with its commits
// and the oracle of files foidv.
func openOracle(ctx context.Context, t testing.TB, path string, foidv []zodb.Oid) (zodb.IStorage, []commit, *oracle) {
	t.Helper()
	stor, err := zdata.OpenStorage(ctx, zurl.MustParse(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stor.Close() })
	cv := readCommits(ctx, t, stor)
	return stor, cv, newOracle(ctx, t, stor, cv, foidv)
}

// blkVal identifies the data of a block: ZBlk oid and the serial of its
// record (zero for a hole).
type blkVal struct {
	zblk   zodb.Oid
	serial zodb.Tid
}

// fileAt is a file as of one revision.
type fileAt struct {
	exists  bool
	blksize int64
	blktab  zodb.Oid
	maxKey  int64
	hasKeys bool
	blocks  map[int64]blkVal // blktab entries
}

// oracle knows every followed file at every revision.
type oracle struct {
	revs  []zodb.Tid
	idx   map[zodb.Tid]int
	files map[zodb.Oid][]fileAt        // [rev index]
	nblk  map[zodb.Oid]int64           // universe of blocks per file: [0, nblk)
	chg   map[zodb.Oid]map[int64][]int // commits (indices) that changed a block
}

// newOracle reads files foidv at every revision of cv.
func newOracle(ctx context.Context, t testing.TB, stor zodb.IStorage, cv []commit, foidv []zodb.Oid) *oracle {
	t.Helper()
	o := &oracle{idx: make(map[zodb.Tid]int), files: make(map[zodb.Oid][]fileAt),
		nblk: make(map[zodb.Oid]int64), chg: make(map[zodb.Oid]map[int64][]int)}
	db := zdata.NewDB(stor)
	defer db.Close()
	serial := make(map[zodb.Oid]zodb.Tid) // serial of every object as of the current commit
	rng := rand.New(rand.NewSource(1))
	for i, c := range cv {
		o.revs = append(o.revs, c.rev)
		o.idx[c.rev] = i
		for _, oid := range c.oids {
			serial[oid] = c.rev
		}
		zc, err := zdata.OpenConn(ctx, db, c.rev)
		if err != nil {
			t.Fatal(err)
		}
		for _, foid := range foidv {
			o.files[foid] = append(o.files[foid], readFileAt(ctx, t, stor, zc, foid, serial, rng))
		}
		zc.Close()
	}
	for foid, fv := range o.files {
		n := int64(0)
		for _, fa := range fv {
			if fa.hasKeys {
				n = max(n, fa.maxKey+1)
			}
		}
		o.nblk[foid] = n + 2 // and a few blocks past the end
		chg := make(map[int64][]int)
		for i := 1; i < len(fv); i++ {
			for blk := int64(0); blk < o.nblk[foid]; blk++ {
				if fv[i-1].blocks[blk] != fv[i].blocks[blk] {
					chg[blk] = append(chg[blk], i)
				}
			}
		}
		o.chg[foid] = chg
	}
	return o
}

// readFileAt reads file foid through zc: every blktab entry, walking the
// bucket chain, checked with btree Get for some blocks. The serial of a ZBlk
// is the last commit that wrote it (serial), checked with a storage load for
// some blocks.
func readFileAt(ctx context.Context, t testing.TB, stor zodb.IStorage, zc *zdata.ZConn, foid zodb.Oid, serial map[zodb.Oid]zodb.Tid, rng *rand.Rand) fileAt {
	t.Helper()
	cctx := zc.Ctx(ctx)
	f, err := zc.LoadZBigFile(ctx, foid)
	if err != nil {
		var e1 *zodb.NoObjectError
		var e2 *zodb.NoDataError
		if errors.As(err, &e1) || errors.As(err, &e2) || errors.Is(err, zdata.ErrNotZBigFile) {
			return fileAt{}
		}
		t.Fatal(err)
	}
	blksize, blktab, err := f.Params(cctx)
	if err != nil {
		t.Fatal(err)
	}
	fa := fileAt{exists: true, blksize: blksize, blktab: blktab.POid(), blocks: make(map[int64]blkVal)}
	fa.maxKey, fa.hasKeys, err = blktab.MaxKey(cctx)
	if err != nil {
		t.Fatal(err)
	}
	if !fa.hasKeys {
		return fa
	}
	if err := blktab.PActivate(cctx); err != nil {
		t.Fatal(err)
	}
	for b := blktab.FirstBucket(); b != nil; {
		if err := b.PActivate(cctx); err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entryv() {
			zblk := e.Value().(zodb.IPersistent).POid()
			fa.blocks[e.Key()] = blkVal{zblk, serial[zblk]}
		}
		next := b.Next()
		b.PDeactivate()
		b = next
	}
	blktab.PDeactivate()

	// spot checks with Get and Load
	for n := 0; n < 40; n++ {
		blk := rng.Int63n(fa.maxKey + 2)
		v, ok, err := blktab.Get(cctx, blk)
		if err != nil {
			t.Fatal(err)
		}
		want, has := fa.blocks[blk]
		if ok != has || (ok && v.(zodb.IPersistent).POid() != want.zblk) {
			t.Fatalf("oracle: f%s #%d @%s: Get = %v %v; bucket chain: %v %v", foid, blk, zc.At(), v, ok, want, has)
		}
		if ok {
			buf, s, err := stor.Load(ctx, zodb.Xid{Oid: want.zblk, At: zc.At()})
			if err != nil {
				t.Fatal(err)
			}
			buf.Release()
			if s != want.serial {
				t.Fatalf("oracle: ZBlk %s @%s: serial %s; commit log says %s", want.zblk, zc.At(), s, want.serial)
			}
		}
	}
	return fa
}

// at returns file foid as of rev index i.
func (o *oracle) at(foid zodb.Oid, i int) fileAt { return o.files[foid][i] }

// epochAt tells whether commit i is an epoch of foid (i > 0).
func (o *oracle) epochAt(foid zodb.Oid, i int) bool {
	a, b := o.at(foid, i-1), o.at(foid, i)
	return b.exists && (!a.exists || a.blksize != b.blksize || a.blktab != b.blktab)
}

// changedAt tells whether commit i changed block blk of foid (i > 0).
func (o *oracle) changedAt(foid zodb.Oid, blk int64, i int) bool {
	_, ok := slices.BinarySearch(o.chg[foid][blk], i)
	return ok
}

// lastChange returns the last commit ≤ at that changed blk, or -1.
func (o *oracle) lastChange(foid zodb.Oid, blk int64, at int) int {
	cv := o.chg[foid][blk]
	j, found := slices.BinarySearch(cv, at)
	if found {
		return at
	}
	if j == 0 {
		return -1
	}
	return cv[j-1]
}

// fileTail returns the revision index from which foid's history is known
// for the window (tail, head].
func (o *oracle) fileTail(foid zodb.Oid, tail, head int) int {
	ft := tail
	for i := tail + 1; i <= head; i++ {
		if o.epochAt(foid, i) {
			ft = i
		}
	}
	return ft
}

// blkRevAt is BlkRevAt by brute force (indices).
func (o *oracle) blkRevAt(foid zodb.Oid, blk int64, at, ftail int) int {
	return max(o.lastChange(foid, blk, at), ftail)
}

// checker replays commits through a History and checks it against the oracle.
type checker struct {
	t    testing.TB
	ctx  context.Context
	o    *oracle
	cv   []commit
	h    *History
	rng  *rand.Rand
	tail int // window (tail, head] as commit indices
	head int
	// revision of the tail: the tail commit's, or just after it (ForgetPast
	// does not need a commit's revision)
	tailRev zodb.Tid

	followed map[zodb.Oid]map[int64]bool // followed files → tracked blocks
}

// replay runs one scenario: the server starts at commit at0, follows the files
// foidv (those that do not exist yet, some commits after their creation),
// tracks random blocks, forgets the past keeping `keep` commits (0: never
// forgets), and checks everything after every commit.
func replay(ctx context.Context, t testing.TB, stor zodb.IStorage, o *oracle, cv []commit, foidv []zodb.Oid, at0, keep int, seed int64) {
	t.Helper()
	c := &checker{
		t: t, ctx: ctx, o: o, cv: cv,
		h:        New(stor, cv[at0].rev),
		rng:      rand.New(rand.NewSource(seed)),
		tail:     at0,
		head:     at0,
		tailRev:  cv[at0].rev,
		followed: make(map[zodb.Oid]map[int64]bool),
	}
	c.step(foidv)
	for i := at0 + 1; i < len(cv); i++ {
		c.update(i)
		if keep > 0 && c.head-c.tail > keep {
			c.tail = c.head - keep
			c.tailRev = cv[c.tail].rev
			if seed%2 == 1 {
				c.tailRev++
			}
			c.h.ForgetPast(c.tailRev)
		}
		c.step(foidv)
	}
}

// rev returns the revision of commit i; for the tail, the tail's revision.
func (c *checker) rev(i int) zodb.Tid {
	if i == c.tail {
		return c.tailRev
	}
	return c.o.revs[i]
}

func (c *checker) fatalf(format string, argv ...any) {
	c.t.Helper()
	c.t.Fatalf("window (%d, %d] (@%s, @%s]: %s", c.tail, c.head, c.rev(c.tail), c.rev(c.head), fmt.Sprintf(format, argv...))
}

// step follows and tracks at head, then checks all queries.
func (c *checker) step(foidv []zodb.Oid) {
	c.t.Helper()
	for foid := range c.followed {
		if c.rng.Intn(10) == 0 {
			c.h.Unfollow(foid)
			delete(c.followed, foid)
			if _, err := c.h.Info(foid); !errors.Is(err, ErrNotFollowed) {
				c.fatalf("f%s: info after unfollow: %v", foid, err)
			}
		}
	}
	for _, foid := range foidv {
		fa := c.o.at(foid, c.head)
		if _, ok := c.followed[foid]; ok || !fa.exists || c.rng.Intn(3) == 0 {
			continue
		}
		fi, err := c.h.Follow(c.ctx, foid)
		if err != nil {
			c.fatalf("follow %s: %s", foid, err)
		}
		c.checkInfo(foid, fi)
		c.followed[foid] = make(map[int64]bool)
	}
	for foid, tracked := range c.followed {
		fa := c.o.at(foid, c.head)
		nblk := c.o.nblk[foid]
		p := min(0.25, 200/float64(nblk)) // at most ~200 new blocks a step
		for blk := int64(0); blk < nblk; blk++ {
			if tracked[blk] || c.rng.Float64() >= p {
				continue
			}
			v := fa.blocks[blk]
			if err := c.h.Track(foid, blk, v.zblk, c.rev(c.head)); err != nil {
				c.fatalf("track f%s #%d: %s", foid, blk, err)
			}
			// tracking again is a no-op; with another ZBlk it is an error
			if err := c.h.Track(foid, blk, v.zblk, c.rev(c.head)); err != nil {
				c.fatalf("track f%s #%d again: %s", foid, blk, err)
			}
			if err := c.h.Track(foid, blk, v.zblk+1<<40, c.rev(c.head)); err == nil {
				c.fatalf("track f%s #%d with another ZBlk: no error", foid, blk)
			}
			if c.head > c.tail {
				if err := c.h.Track(foid, blk, v.zblk, c.rev(c.head-1)); err == nil {
					c.fatalf("track f%s #%d as of a past revision: no error", foid, blk)
				}
			}
			tracked[blk] = true
		}
	}
	c.checkQueries()
}

func (c *checker) checkInfo(foid zodb.Oid, fi FileInfo) {
	c.t.Helper()
	fa := c.o.at(foid, c.head)
	size, err := fi.Size()
	want := int64(0)
	if fa.hasKeys {
		want = (fa.maxKey + 1) * fa.blksize
	}
	if err != nil || size != want || fi.BlkSize != fa.blksize {
		c.fatalf("f%s: info: size %d (%v), blksize %d; want size %d, blksize %d", foid, size, err, fi.BlkSize, want, fa.blksize)
	}
}

// update applies commit i and checks the delta.
func (c *checker) update(i int) {
	c.t.Helper()
	cm := c.cv[i]
	δ, err := c.h.Update(c.ctx, &zodb.EventCommit{Tid: cm.rev, Changev: cm.oids})
	if err != nil {
		c.fatalf("update %d @%s: %s", i, cm.rev, err)
	}
	c.head = i
	if δ.Rev != cm.rev {
		c.fatalf("δ.Rev = %s", δ.Rev)
	}
	for foid, tracked := range c.followed {
		d := δ.Files[foid]
		if d == nil {
			d = &FileDelta{}
		}
		fa, fb := c.o.at(foid, i-1), c.o.at(foid, i)
		if !fb.exists {
			if !d.Epoch || !d.Gone {
				c.fatalf("f%s gone at %d: delta %+v", foid, i, d)
			}
			delete(c.followed, foid)
			continue
		}
		if c.o.epochAt(foid, i) {
			if !d.Epoch || d.Gone || len(d.Blocks) != 0 {
				c.fatalf("f%s epoch at %d: delta %+v", foid, i, d)
			}
			clear(tracked)
			c.checkInfo(foid, d.Info)
			continue
		}
		var want []int64
		for blk := range tracked {
			if c.o.changedAt(foid, blk, i) {
				want = append(want, blk)
			}
		}
		slices.Sort(want)
		wantSize := fa.hasKeys != fb.hasKeys || (fb.hasKeys && fa.maxKey != fb.maxKey)
		if d.Epoch || d.Gone || !slices.Equal(d.Blocks, want) || d.SizeChanged != wantSize {
			c.fatalf("f%s at %d: delta %+v; want blocks %v, size changed %v", foid, i, d, want, wantSize)
		}
		if d.SizeChanged {
			c.checkInfo(foid, d.Info)
		}
	}
}

// checkQueries compares BlkRevAt and ChangedBlocks for every followed file,
// tracked block and revision of the window with the oracle.
func (c *checker) checkQueries() {
	c.t.Helper()
	h := c.h
	if h.Head() != c.rev(c.head) || h.Tail() != c.rev(c.tail) {
		c.fatalf("head/tail = @%s/@%s", h.Head(), h.Tail())
	}
	for foid, tracked := range c.followed {
		fi, err := h.Info(foid)
		if err != nil {
			c.fatalf("%s", err)
		}
		c.checkInfo(foid, fi)
		ftail := c.o.fileTail(foid, c.tail, c.head)
		all := slices.Sorted(maps.Keys(tracked))
		sample := slices.Clone(all)
		if len(sample) > 300 {
			c.rng.Shuffle(len(sample), func(i, j int) { sample[i], sample[j] = sample[j], sample[i] })
			sample = sample[:300]
		}
		for at := c.tail; at <= c.head; at++ {
			for _, blk := range sample {
				rev, err := h.BlkRevAt(foid, blk, c.rev(at))
				if at < ftail {
					var e *EpochError
					if !errors.As(err, &e) || e.Rev != c.rev(ftail) {
						c.fatalf("f%s #%d: BlkRevAt @%d: %v, %v; want epoch @%d", foid, blk, at, rev, err, ftail)
					}
					continue
				}
				want := c.o.blkRevAt(foid, blk, at, ftail)
				if err != nil || rev != c.rev(want) {
					c.fatalf("f%s #%d: BlkRevAt @%d = @%s (%v); want @%s (%d)", foid, blk, at, rev, err, c.rev(want), want)
				}
			}
			if _, err := h.BlkRevAt(foid, c.o.nblk[foid]+5, c.rev(at)); at >= ftail && !errors.Is(err, ErrNotTracked) {
				c.fatalf("f%s: BlkRevAt of an untracked block: %v", foid, err)
			}
		}
		for lo := c.tail; lo <= c.head; lo++ {
			for hi := lo; hi <= c.head; hi++ {
				got, err := h.ChangedBlocks(foid, c.rev(lo), c.rev(hi))
				if lo < ftail {
					var e *EpochError
					if !errors.As(err, &e) {
						c.fatalf("f%s: ChangedBlocks (%d, %d]: %v, %v; want epoch", foid, lo, hi, got, err)
					}
					continue
				}
				var want []BlkRev
				for _, blk := range all {
					if c.o.lastChange(foid, blk, hi) > lo {
						want = append(want, BlkRev{blk, c.rev(c.o.blkRevAt(foid, blk, lo, ftail))})
					}
				}
				if err != nil || !slices.Equal(got, want) {
					c.fatalf("f%s: ChangedBlocks (%d, %d] = %v (%v); want %v", foid, lo, hi, got, err, want)
				}
			}
		}
	}
	if c.tail > 0 {
		if _, err := h.BlkRevAt(c.anyFollowed(), 0, c.rev(c.tail)-1); !errors.Is(err, ErrOutOfWindow) && !errors.Is(err, ErrNotFollowed) {
			c.fatalf("BlkRevAt before the tail: %v", err)
		}
	}
}

func (c *checker) anyFollowed() zodb.Oid {
	for foid := range c.followed {
		return foid
	}
	return 0
}
