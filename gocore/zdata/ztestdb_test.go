// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata_test

// Databases made by the test-database toolkit (tools/pylib/ztestdb, genuine
// Python ZODB) decode exactly at every revision, for every block size and
// format, with holes, BTrees split into buckets, format changes and epochs.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/zdata"
	"wendelin.dev/wcfs/gocore/zurl"
)

// hashLimit: whole-file hashes are checked for files up to this size (the
// blocks of bigger files are all checked one by one anyway).
const hashLimit = 64 << 20

func TestToolkitDatabases(t *testing.T) {
	t.Parallel()
	for _, bs := range []int64{2 << 20, 64 << 10, 4 << 10} {
		t.Run(fmt.Sprintf("blksize=%d", bs), func(t *testing.T) {
			t.Parallel()
			db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
			writeHistory(t, db, bs)
			m := db.Manifest()
			db.Close() // reading does not need the writer; its process is reaped
			if len(m.Transactions) != 9 {
				t.Fatalf("%d transactions in the manifest, want 9", len(m.Transactions))
			}
			checked := checkManifest(t, db.Path(), m)
			// what was covered: formats, holes, buckets, epochs
			head := m.Last()
			if checked < 100 || head.Files["mixed"].BlkSize != 2*bs ||
				head.Files["zblk0"].Oid == m.Transactions[1].Files["zblk0"].Oid {
				t.Errorf("history does not cover what it should: %d blocks checked, head %+v", checked, head.Files)
			}
		})
	}
}

// blockData returns n pseudo-random bytes (no trailing zero), with a run of
// zeros inside when n is big enough (ZBlk1 then omits whole chunks).
func blockData(rng *rand.ChaCha8, n int64) []byte {
	data := make([]byte, n)
	rng.Read(data)
	if n > 3*4096 {
		clear(data[4096 : 4096+8192])
	}
	if n > 0 && data[n-1] == 0 {
		data[n-1] = 1
	}
	return data
}

// writeHistory makes files in ZBlk0, ZBlk1 and mixed formats, then changes
// them over several transactions.
func writeHistory(t *testing.T, db *testdb.DB, bs int64) {
	var seed [32]byte
	seed[0] = byte(bs >> 10)
	rng := rand.NewChaCha8(seed)
	pick := rand.New(rng)
	nblk := int64(150) // > 2*60: blktab splits into several buckets
	if bs == 2<<20 {
		nblk = 6
	}
	size := func() int64 { // full blocks, short ones, empty ones
		switch pick.IntN(4) {
		case 0:
			return pick.Int64N(bs)
		case 1:
			return 0
		}
		return bs
	}
	fmtOf := map[string]testdb.Format{"zblk0": testdb.ZBlk0, "zblk1": testdb.ZBlk1, "mixed": testdb.Auto}
	names := []string{"zblk0", "zblk1", "mixed"}

	for _, name := range names {
		db.CreateFile(name, bs, fmtOf[name])
		for blk := int64(0); blk < nblk; blk++ {
			if blk%7 == 3 {
				continue // hole
			}
			f := testdb.Default
			if name == "mixed" {
				f = []testdb.Format{testdb.ZBlk0, testdb.ZBlk1, testdb.Auto}[pick.IntN(3)]
			}
			db.WriteBlockAs(name, blk, blockData(rng, size()), f)
		}
	}
	if bs == 2<<20 {
		// 2 MiB blocks with buckets too: 64 small blocks, one later punched out
		db.CreateFile("small", bs, testdb.ZBlk1)
		for blk := int64(0); blk < 64; blk++ {
			db.WriteBlock("small", blk, blockData(rng, 100+blk))
		}
	}
	db.Commit("create")

	for _, name := range names {
		for i := 0; i < 3; i++ {
			db.WriteBlock(name, pick.Int64N(nblk), blockData(rng, size()))
		}
		db.Write(name, 2*bs+100, []byte("patch in one chunk"))
		db.Write(name, 4*bs-5, []byte("across two blocks"))
	}
	db.Commit("rewrite and patch")

	for _, name := range names {
		if nblk > 100 {
			db.PunchHole(name, 60, 130) // whole buckets emptied
		}
		db.ZeroBlock(name, 1)
		db.Truncate(name, db.File(name).NBlocks()-1)
		db.WriteBlock(name, nblk+5, blockData(rng, 1000)) // grows past holes
	}
	db.Commit("holes, zeros, shrink, grow")

	for _, name := range names {
		for _, blk := range []int64{0, 2, 4} {
			if _, ok := db.File(name).Blocks[blk]; ok {
				db.SetFormat(name, blk, []testdb.Format{testdb.ZBlk0, testdb.ZBlk1}[pick.IntN(2)])
			}
		}
	}
	if bs == 2<<20 {
		db.DeleteBlock("small", 30)
	}
	db.Commit("format changes")

	db.SetObject("meta", "no file changes")
	db.Commit("meta only")

	db.ReplaceBlkTab("zblk1", true)
	db.SetBlkSize("mixed", 2*bs)
	db.DeleteFile("zblk0")
	db.CreateFile("zblk0", bs, testdb.ZBlk0)
	db.WriteBlock("zblk0", 2, blockData(rng, bs))
	db.Commit("epochs: blktab replaced, blksize changed, file recreated")

	last := db.File("mixed").NBlocks()
	db.Write("mixed", last*2*bs, []byte("small append"))
	db.Commit("auto append")
	db.Write("mixed", last*2*bs+12, blockData(rng, 3*bs))
	db.Commit("auto append filling blocks")
}

// TestToolkitLegacyZBlk: blocks written under ZBlk0's legacy class name ZBlk
// (early wendelin.core) decode as ZBlk0, also when a connection meets the
// same object again (another path, another revision).
func TestToolkitLegacyZBlk(t *testing.T) {
	t.Parallel()
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	var seed [32]byte
	rng := rand.NewChaCha8(seed)
	db.CreateFile("zf", 4096, testdb.ZBlkLegacy)
	for blk := int64(0); blk < 100; blk++ { // several buckets
		db.WriteBlock("zf", blk, blockData(rng, 1+blk*40))
	}
	db.Commit("legacy blocks")
	db.WriteBlock("zf", 3, blockData(rng, 4096))
	db.WriteBlockAs("zf", 4, blockData(rng, 10), testdb.ZBlk0) // kept as ZBlk (wendelin.core: ZBlk is ZBlk0)
	db.WriteBlockAs("zf", 5, blockData(rng, 10), testdb.ZBlk1)
	db.Commit("rewrites")
	db.PunchHole("zf", 50, 70)
	db.Commit("holes")
	m := db.Manifest()
	db.Close()
	checkManifest(t, db.Path(), m)
}

// checker verifies files against manifests; it remembers what it verified
// (blocks by ZBlk oid and revision, whole contents by hash) so that revisions
// sharing data are not hashed again.
type checker struct {
	blocks map[blkRev]string // ZBlk oid and serial -> verified sha256
	files  map[string]bool   // verified content hashes
}

type blkRev struct {
	oid zodb.Oid
	rev zodb.Tid
}

// checkManifest reads every file at every revision of the manifest through
// zdata: with a connection per revision, and with one connection resynced
// from the first revision to the last. It returns the number of present
// blocks checked in the first pass.
func checkManifest(t *testing.T, path string, m *testdb.Manifest) int {
	ctx := context.Background()
	stor, err := zdata.OpenStorage(ctx, zurl.MustParse(path))
	if err != nil {
		t.Fatal(err)
	}
	zdb := zdata.NewDB(stor)
	t.Cleanup(func() {
		if err := zdb.Close(); err != nil {
			t.Error(err)
		}
		if err := stor.Close(); err != nil {
			t.Error(err)
		}
	})
	c := &checker{blocks: map[blkRev]string{}, files: map[string]bool{}}
	checked := 0
	for _, txn := range m.Transactions {
		zc, err := zdata.OpenConn(ctx, zdb, txn.Tid)
		if err != nil {
			t.Fatal(err)
		}
		for name, fs := range txn.Files {
			checked += c.checkFile(t, zc, name, fs)
		}
		zc.Close()
	}

	zc, err := zdata.OpenConn(ctx, zdb, m.Transactions[0].Tid)
	if err != nil {
		t.Fatal(err)
	}
	defer zc.Close()
	for _, txn := range m.Transactions[1:] {
		if err := zc.Resync(ctx, txn.Tid); err != nil {
			t.Fatal(err)
		}
		for name, fs := range txn.Files {
			c.checkFile(t, zc, name, fs)
		}
	}
	return checked
}

// checkFile checks one file as of zc's revision; returns the number of
// blocks present.
func (c *checker) checkFile(t *testing.T, zc *zdata.ZConn, name string, want *testdb.FileState) int {
	t.Helper()
	ctx := context.Background()
	at := zc.At()
	f, err := zc.LoadZBigFile(ctx, want.Oid)
	if err != nil {
		t.Errorf("@%s %s: %v", at, name, err)
		return 0
	}
	fctx := zc.Ctx(ctx)
	blksize, _, err := f.Params(fctx)
	if err != nil || blksize != want.BlkSize {
		t.Errorf("@%s %s: blksize %d (%v), want %d", at, name, blksize, err, want.BlkSize)
		return 0
	}
	size, _, err := f.Size(fctx)
	if err != nil || size != want.Size {
		t.Errorf("@%s %s: size %d (%v), want %d", at, name, size, err, want.Size)
		return 0
	}
	hashing := size <= hashLimit && want.Sha256 != "" && !c.files[want.Sha256]
	h := sha256.New()
	zero := make([]byte, blksize)
	n := 0
	for blk := int64(0); blk < want.NBlocks()+2; blk++ { // and two holes past the end
		data, info, err := f.LoadBlk(fctx, blk)
		if err != nil {
			t.Errorf("@%s %s blk %d: %v", at, name, blk, err)
			continue
		}
		if int64(len(data)) != blksize {
			t.Errorf("@%s %s blk %d: %d bytes, want %d", at, name, blk, len(data), blksize)
			continue
		}
		if hashing && blk < want.NBlocks() {
			h.Write(data)
		}
		wb, present := want.Blocks[blk]
		if !present {
			if info.Format != zdata.Hole || info.ZBlk != 0 || !bytes.Equal(data, zero) {
				t.Errorf("@%s %s blk %d: %s %s, want a hole (zeros)", at, name, blk, info.Format, info.ZBlk)
			}
			continue
		}
		n++
		if info.Format.String() != wb.Fmt || info.ZBlk != wb.Oid {
			t.Errorf("@%s %s blk %d: %s %s, want %s %s", at, name, blk, info.Format, info.ZBlk, wb.Fmt, wb.Oid)
		}
		if info.ZRev == 0 || info.ZRev > at || info.RevMax < info.ZRev || info.RevMax > at {
			t.Errorf("@%s %s blk %d: ZRev %s RevMax %s out of range", at, name, blk, info.ZRev, info.RevMax)
		}
		key := blkRev{info.ZBlk, info.ZRev}
		if c.blocks[key] == wb.Sha256 {
			continue // this record was verified at another revision
		}
		if got := sha256hex(data); got != wb.Sha256 {
			t.Errorf("@%s %s blk %d: sha256 %s, want %s", at, name, blk, got, wb.Sha256)
			continue
		}
		if got := int64(len(bytes.TrimRight(data, "\x00"))); got != wb.DataLen {
			t.Errorf("@%s %s blk %d: data length %d, want %d", at, name, blk, got, wb.DataLen)
			continue
		}
		c.blocks[key] = wb.Sha256
	}
	if hashing {
		if got := hex.EncodeToString(h.Sum(nil)); got != want.Sha256 {
			t.Errorf("@%s %s: content sha256 %s, want %s", at, name, got, want.Sha256)
		} else {
			c.files[want.Sha256] = true
		}
	}
	return n
}

func sha256hex(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}
