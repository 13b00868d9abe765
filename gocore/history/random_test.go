// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

// Randomised databases written by genuine ZODB (the ztestdb toolkit),
// replayed through the history and checked against the oracle.

import (
	"context"
	"fmt"
	"math/rand"
	"path/filepath"
	"slices"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
)

// randomDB makes a database with ncommit random commits over a few files of
// 4 KiB and 64 KiB blocks: writes in every format, partial writes, zeroed
// and deleted blocks, holes punched, truncations, appends of many blocks
// and deletions of ranges (bucket splits and merges), format changes,
// meta-only commits, and, if epochs, blksize changes, blktab replacements
// and files created later. It returns the storage path and the file oids.
func randomDB(t *testing.T, seed int64, ncommit int, epochs bool) (string, []zodb.Oid) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	path := filepath.Join(t.TempDir(), "1.fs")
	db := testdb.Create(t, path)

	type file struct {
		name    string
		blksize int64
		nblk    int64 // blocks written so far (upper bound of the size)
	}
	var files []*file
	var foidv []zodb.Oid
	newFile := func(blksize int64, fmt_ testdb.Format) *file {
		f := &file{name: fmt.Sprintf("zf%d", len(files)), blksize: blksize}
		foidv = append(foidv, db.CreateFile(f.name, blksize, fmt_))
		files = append(files, f)
		return f
	}
	formats := []testdb.Format{testdb.Default, testdb.ZBlk0, testdb.ZBlk1, testdb.Auto, testdb.ZBlkLegacy}
	data := func(f *file) []byte {
		n := 1 + rng.Intn(64)
		if rng.Intn(8) == 0 {
			n = int(f.blksize)
		}
		b := make([]byte, n)
		rng.Read(b)
		if rng.Intn(10) == 0 {
			clear(b) // all zeros: stored as an empty ZBlk
		}
		return b
	}
	// try runs an operation the toolkit may refuse (deleting a hole, ...)
	try := func(op string, args ...any) {
		req := map[string]any{"op": op}
		for i := 0; i < len(args); i += 2 {
			req[args[i].(string)] = args[i+1]
		}
		db.Exec(req)
	}
	write := func(f *file, blk int64) {
		db.WriteBlockAs(f.name, blk, data(f), formats[rng.Intn(len(formats))])
		f.nblk = max(f.nblk, blk+1)
	}

	// initial content: hundreds of 4 KiB blocks (several buckets)
	for _, f := range []*file{newFile(4096, testdb.ZBlk0), newFile(4096, testdb.Auto), newFile(64<<10, testdb.ZBlk1)} {
		n := int64(100 + rng.Intn(200))
		if f.blksize > 4096 {
			n = 20
		}
		for blk := int64(0); blk < n; blk++ {
			if rng.Intn(5) != 0 {
				write(f, blk)
			}
		}
	}
	db.Commit("initial")

	for i := 0; len(foidv) > 0 && i < ncommit; i++ {
		for nop := 1 + rng.Intn(6); nop > 0; nop-- {
			f := files[rng.Intn(len(files))]
			hi := f.nblk + 3
			switch op := rng.Intn(100); {
			case op < 35:
				write(f, rng.Int63n(hi))
			case op < 42:
				off := rng.Int63n(hi * f.blksize)
				n := 1 + rng.Intn(int(f.blksize))
				b := make([]byte, n)
				rng.Read(b)
				db.Write(f.name, off, b)
				f.nblk = max(f.nblk, (off+int64(n)+f.blksize-1)/f.blksize)
			case op < 50:
				try("zero_block", "name", f.name, "blk", rng.Int63n(hi))
			case op < 60:
				try("delete_block", "name", f.name, "blk", rng.Int63n(hi))
			case op < 66:
				lo := rng.Int63n(hi)
				try("punch_hole", "name", f.name, "lo", lo, "hi", lo+1+rng.Int63n(80)) // merges
			case op < 70:
				try("truncate", "name", f.name, "nblk", rng.Int63n(hi))
			case op < 78:
				// append many: splits
				lo, hi := f.nblk, f.nblk+int64(1+rng.Intn(90))
				for blk := lo; blk < hi; blk++ {
					write(f, blk)
				}
			case op < 84:
				lo := rng.Int63n(hi)
				hi := lo + int64(rng.Intn(70))
				for blk := lo; blk < hi; blk++ {
					write(f, blk) // fill holes, rewrite
				}
			case op < 90:
				try("set_format", "name", f.name, "blk", rng.Int63n(hi), "fmt", string(formats[1+rng.Intn(2)]))
			case op < 94:
				db.SetObject("meta", rng.Intn(1000))
			case !epochs:
				write(f, rng.Int63n(hi))
			case op < 96:
				try("set_blksize", "name", f.name, "blksize", []int64{4096, 8192, 64 << 10}[rng.Intn(3)])
			case op < 98:
				try("replace_blktab", "name", f.name, "keep_blocks", rng.Intn(2) == 0)
			default:
				nf := newFile([]int64{4096, 16384}[rng.Intn(2)], formats[rng.Intn(len(formats))])
				for blk, n := int64(0), int64(rng.Intn(150)); blk < n; blk++ {
					write(nf, blk)
				}
			}
		}
		db.CommitChanged(fmt.Sprintf("random %d", i))
	}
	db.Close()
	return path, foidv
}

// deepDB makes a database whose file has blktab trees of three levels
// (some 1300 buckets: interior nodes below the root) with tiny blocks,
// then ncommit random commits: scattered writes, appends and rewrites of
// long ranges (splits of buckets and of interior nodes), holes punched over
// long ranges and truncations (merges, removal of whole subtrees).
func deepDB(t *testing.T, seed int64, ncommit int) (string, []zodb.Oid) {
	t.Helper()
	rng := rand.New(rand.NewSource(seed))
	path := filepath.Join(t.TempDir(), "1.fs")
	db := testdb.Create(t, path)
	const blksize = 16
	foid := db.CreateFile("zdeep", blksize, testdb.ZBlk0)
	nblk := int64(40000)
	data := func(n int64) []byte {
		b := make([]byte, n*blksize)
		rng.Read(b)
		for i := int64(0); i < n; i++ {
			if rng.Intn(20) == 0 {
				clear(b[i*blksize : (i+1)*blksize]) // some holes
			}
		}
		return b
	}
	db.Write("zdeep", 0, data(nblk))
	db.Commit("initial")
	for i := 0; i < ncommit; i++ {
		for nop := 1 + rng.Intn(4); nop > 0; nop-- {
			switch op := rng.Intn(10); {
			case op < 4:
				for n := rng.Intn(20); n >= 0; n-- {
					db.Write("zdeep", rng.Int63n(nblk*blksize), data(1)[:1+rng.Intn(blksize)])
				}
			case op < 6:
				lo := rng.Int63n(nblk + 1)
				n := 1 + rng.Int63n(3000)
				db.Write("zdeep", lo*blksize, data(n))
				nblk = max(nblk, lo+n)
			case op < 8:
				lo := rng.Int63n(nblk)
				db.Exec(map[string]any{"op": "punch_hole", "name": "zdeep", "lo": lo, "hi": lo + 1 + rng.Int63n(4000)})
			case op < 9:
				nblk -= rng.Int63n(nblk / 4)
				db.Exec(map[string]any{"op": "truncate", "name": "zdeep", "nblk": nblk})
			default:
				db.Exec(map[string]any{"op": "set_format", "name": "zdeep", "blk": rng.Int63n(nblk), "fmt": "ZBlk1"})
			}
		}
		db.CommitChanged(fmt.Sprintf("random %d", i))
	}
	db.Close()
	return path, []zodb.Oid{foid}
}

// TestDeep replays databases with three-level blktabs against the oracle.
func TestDeep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, foidv := deepDB(t, 1, 10)
	stor, cv, o := openOracle(ctx, t, path, foidv)
	for _, at0 := range []int{1, len(cv) / 2} {
		replay(ctx, t, stor, o, cv, foidv, at0, 5, int64(at0))
	}
}

// TestTreeEdges replays what the toolkit does not write (testdata/gentrees.py):
// blktab.clear() of a three-level tree, update() of many keys, a ZBlk
// shared by keys of two files and changed in place, a file given another
// file's blktab, deletions of ranges through the BTree API.
func TestTreeEdges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "1.fs")
	var res struct{ Files []string }
	runScript(t, &res, "gentrees.py", path)
	var foidv []zodb.Oid
	for _, s := range res.Files {
		oid, err := zodb.ParseOid(s)
		if err != nil {
			t.Fatal(err)
		}
		foidv = append(foidv, oid)
	}
	stor, cv, o := openOracle(ctx, t, path, foidv)
	for _, at0 := range []int{1, 2, 5} {
		for _, keep := range []int{0, 3} {
			replay(ctx, t, stor, o, cv, foidv, at0, keep, int64(at0+keep))
		}
	}
}

// TestRandom replays random databases from several starting points, with and
// without forgetting, against the oracle.
func TestRandom(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		seed    int64
		ncommit int
		epochs  bool
	}{
		{1, 25, false},
		{2, 25, false},
		{3, 25, true},
		{4, 25, true},
	} {
		t.Run(fmt.Sprintf("seed=%d/epochs=%v", tc.seed, tc.epochs), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			path, foidv := randomDB(t, tc.seed, tc.ncommit, tc.epochs)
			stor, cv, o := openOracle(ctx, t, path, foidv)
			for _, at0 := range []int{0, 1, len(cv) / 2} {
				for _, keep := range []int{0, 4} {
					replay(ctx, t, stor, o, cv, foidv, at0, keep, tc.seed*100+int64(at0*10+keep))
				}
			}
			checkCoverage(t, o, foidv)
		})
	}
}

// checkCoverage makes sure a random database exercised what it is for.
func checkCoverage(t *testing.T, o *oracle, foidv []zodb.Oid) {
	t.Helper()
	nchange := 0
	for _, foid := range foidv {
		for _, cv := range o.chg[foid] {
			nchange += len(cv)
		}
	}
	if nchange < 50 {
		t.Errorf("only %d block changes", nchange)
	}
	_ = slices.Contains[[]int]
}
