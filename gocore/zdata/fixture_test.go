// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// Tests over the databases written by genuine Python ZODB in
// ../shared/testdata/zodb (see its README.md).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/testenv"
)

// fixtureDir returns ../shared/testdata/zodb beside the repository root,
// or skips the test with a clear message when it is absent.
func fixtureDir(t testing.TB) string {
	t.Helper()
	return testenv.SharedZODB(t)
}

func loadJSON(t testing.TB, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %s", path, err)
	}
}

func mustOid(t testing.TB, s string) zodb.Oid {
	t.Helper()
	oid, err := zodb.ParseOid(s)
	if err != nil {
		t.Fatal(err)
	}
	return oid
}

func sha256hex(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// openTestDB opens the storage at path read-only and returns a DB over it,
// closed at the end of the test.
func openTestDB(t testing.TB, path string) (zodb.IStorage, *zodb.DB) {
	t.Helper()
	ctx := context.Background()
	stor, err := openTestStorage(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	db := NewDB(stor)
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Error(err)
		}
		if err := stor.Close(); err != nil {
			t.Error(err)
		}
	})
	return stor, db
}

func openTestConn(t testing.TB, db *zodb.DB, at zodb.Tid) *ZConn {
	t.Helper()
	zc, err := OpenConn(context.Background(), db, at)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(zc.Close)
	return zc
}

// TestSmallFixture checks every file of small.json at every transaction:
// size, sha256 of the content and of every block, formats and ZBlk oids,
// and that holes are reported as holes. Each transaction is read through a
// fresh connection, and once more through one connection resynced forward
// from the first transaction to the last (the server's head connection).
func TestSmallFixture(t *testing.T) {
	m, fsPath := testdb.SmallFixture(t)
	_, db := openTestDB(t, fsPath)
	ctx := context.Background()

	check := func(t *testing.T, zc *ZConn, txn *testdb.Txn) {
		at := txn.Tid
		if zc.At() != at {
			t.Fatalf("conn at %s, want %s", zc.At(), at)
		}
		for name, meta := range m.Files {
			want, exists := txn.Files[name]
			f, err := zc.LoadZBigFile(ctx, meta.Oid)
			if !exists {
				if err == nil {
					// the object may exist before being linked from root
					continue
				}
				if !isMissing(err) {
					t.Errorf("@%s %s: want missing, got %v", at, name, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("@%s %s: %v", at, name, err)
				continue
			}
			fctx := zc.Ctx(ctx)
			blksize, _, err := f.Params(fctx)
			if err != nil {
				t.Fatal(err)
			}
			if blksize != meta.BlkSize {
				t.Errorf("@%s %s: blksize %d, want %d", at, name, blksize, meta.BlkSize)
			}
			size, spath, err := f.Size(fctx)
			if err != nil {
				t.Errorf("@%s %s: size: %v", at, name, err)
				continue
			}
			if size != want.Size {
				t.Errorf("@%s %s: size %d, want %d", at, name, size, want.Size)
			}
			if len(spath) == 0 || spath[0].Oid == zodb.InvalidOid {
				t.Errorf("@%s %s: size path %v does not start at blktab", at, name, spath)
			}
			h := sha256.New()
			nblk := size / blksize
			for blk := int64(0); blk < nblk; blk++ {
				data, info, err := f.LoadBlk(fctx, blk)
				if err != nil {
					t.Errorf("@%s %s: %v", at, name, err)
					continue
				}
				h.Write(data)
				shared, sinfo, err := f.LoadBlkShared(fctx, blk)
				if err != nil || !bytes.Equal(shared.Data, data) || sinfo.ZBlk != info.ZBlk || sinfo.RevMax != info.RevMax {
					t.Errorf("@%s %s blk %d: LoadBlkShared differs from LoadBlk: %v", at, name, blk, err)
				}
				shared.Release()
				shared.Release() // no-op
				wb, stored := want.Blocks[blk]
				if !stored {
					if info.Format != Hole || info.ZBlk != 0 {
						t.Errorf("@%s %s blk %d: got %s %s, want hole", at, name, blk, info.Format, info.ZBlk)
					}
					continue
				}
				if info.Format.String() != wb.Fmt || info.ZBlk != wb.Oid {
					t.Errorf("@%s %s blk %d: got %s %s, want %s %s", at, name, blk, info.Format, info.ZBlk, wb.Fmt, wb.Oid)
				}
				if got := sha256hex(data); got != wb.Sha256 {
					t.Errorf("@%s %s blk %d: sha256 %s, want %s", at, name, blk, got, wb.Sha256)
				}
				if n := int64(len(bytes.TrimRight(data, "\x00"))); n != wb.DataLen {
					t.Errorf("@%s %s blk %d: datalen %d, want %d", at, name, blk, n, wb.DataLen)
				}
				if info.ZRev == 0 || info.ZRev > at || info.RevMax < info.ZRev || info.RevMax > at {
					t.Errorf("@%s %s blk %d: ZRev %s RevMax %s out of range", at, name, blk, info.ZRev, info.RevMax)
				}
				checkPath(t, info.Path, blk)
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != want.Sha256 {
				t.Errorf("@%s %s: content sha256 %s, want %s", at, name, got, want.Sha256)
			}
		}
	}

	for _, txn := range m.Transactions {
		t.Run("at="+txn.Tid.String(), func(t *testing.T) {
			t.Parallel()
			zc := openTestConn(t, db, txn.Tid)
			check(t, zc, txn)
		})
	}
	t.Run("resync", func(t *testing.T) {
		t.Parallel()
		zc := openTestConn(t, db, m.Transactions[0].Tid)
		for _, txn := range m.Transactions {
			if err := zc.Resync(ctx, txn.Tid); err != nil {
				t.Fatal(err)
			}
			check(t, zc, txn)
		}
	})
}

// checkPath verifies that a blktab path covers blk with nested key ranges.
func checkPath(t testing.TB, path []PathNode, blk int64) {
	t.Helper()
	if len(path) == 0 {
		t.Errorf("blk %d: empty path", blk)
		return
	}
	for i, n := range path {
		if !(n.Keys.Lo <= blk && blk <= n.Keys.Hi_) {
			t.Errorf("blk %d: path[%d] %s covers [%d, %d]", blk, i, n.Oid, n.Keys.Lo, n.Keys.Hi_)
		}
		if i > 0 && (n.Keys.Lo < path[i-1].Keys.Lo || n.Keys.Hi_ > path[i-1].Keys.Hi_) {
			t.Errorf("blk %d: path[%d] range not nested in its parent's", blk, i)
		}
	}
}

// upstreamManifest is the format of upstream/MANIFEST.json.
type upstreamManifest struct {
	Files    []string `json:"files"`
	Head     string   `json:"head"`
	ZBigFile struct {
		Oid     string `json:"oid"`
		BlkSize int64  `json:"blksize"`
		Size    int64  `json:"size"`
		Blocks  map[string]struct {
			Kind    string `json:"kind"`
			ZBlkOid string `json:"zblk_oid"`
			Sha256  string `json:"sha256"`
		} `json:"blocks"`
	} `json:"zbigfile"`
}

// TestUpstreamFixtures reads the reference implementation's decoder
// fixtures: Python 2 pickles (protocols 1, 2, 3) and Python 3 (protocol 3).
func TestUpstreamFixtures(t *testing.T) {
	dir := filepath.Join(fixtureDir(t), "upstream")
	var m upstreamManifest
	loadJSON(t, filepath.Join(dir, "MANIFEST.json"), &m)
	if len(m.Files) != 4 {
		t.Fatalf("manifest lists %d files, want 4", len(m.Files))
	}
	ctx := context.Background()
	for _, file := range m.Files {
		t.Run(file, func(t *testing.T) {
			t.Parallel()
			stor, db := openTestDB(t, filepath.Join(dir, file))
			head, err := zodb.ParseTid(m.Head)
			if err != nil {
				t.Fatal(err)
			}
			if stor.Head() != head {
				t.Errorf("head %s, want %s", stor.Head(), head)
			}
			zc := openTestConn(t, db, 0)
			zf := m.ZBigFile
			f, err := zc.LoadZBigFile(ctx, mustOid(t, zf.Oid))
			if err != nil {
				t.Fatal(err)
			}
			fctx := zc.Ctx(ctx)
			blksize, blktab, err := f.Params(fctx)
			if err != nil {
				t.Fatal(err)
			}
			size, _, err := f.Size(fctx)
			if err != nil {
				t.Fatal(err)
			}
			if blksize != zf.BlkSize || size != zf.Size {
				t.Fatalf("blksize %d size %d, want %d %d", blksize, size, zf.BlkSize, zf.Size)
			}
			var blks []string
			for b := range zf.Blocks {
				blks = append(blks, b)
			}
			sort.Strings(blks)
			for _, b := range blks {
				want := zf.Blocks[b]
				blk, _ := strconv.ParseInt(b, 10, 64)
				data, info, err := f.LoadBlk(fctx, blk)
				if err != nil {
					t.Fatal(err)
				}
				if got := sha256hex(data); got != want.Sha256 {
					t.Errorf("blk %d: sha256 %s, want %s", blk, got, want.Sha256)
				}
				if info.Format.String() != want.Kind {
					t.Errorf("blk %d: format %s, want %s", blk, info.Format, want.Kind)
				}
				if want.ZBlkOid != "" && info.ZBlk != mustOid(t, want.ZBlkOid) {
					t.Errorf("blk %d: ZBlk %s, want %s", blk, info.ZBlk, want.ZBlkOid)
				}

				// the raw decoder agrees
				st, _, err := LoadZBigFileState(ctx, stor, f.POid(), zc.At())
				if err != nil || st.BlkSize != blksize || st.BlkTab != blktab.POid() {
					t.Errorf("LoadZBigFileState: %+v %v", st, err)
				}
			}
		})
	}
}

// TestConcurrentLoads reads every block of every file of small.fs at head
// from many goroutines through one connection (run with -race).
func TestConcurrentLoads(t *testing.T) {
	m, fsPath := testdb.SmallFixture(t)
	_, db := openTestDB(t, fsPath)
	zc := openTestConn(t, db, 0)
	ctx := zc.Ctx(context.Background())

	type job struct {
		f    *ZBigFile
		blk  int64
		want string
	}
	var jobs []job
	for name, fs := range m.Last().Files {
		f, err := zc.LoadZBigFile(context.Background(), fs.Oid)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for blk, b := range fs.Blocks {
			jobs = append(jobs, job{f, blk, b.Sha256})
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				j := jobs[(i+g*7)%len(jobs)]
				data, _, err := j.f.LoadBlk(ctx, j.blk)
				if err != nil {
					t.Error(err)
					return
				}
				if sha256hex(data) != j.want {
					t.Errorf("%s blk %d: wrong data", j.f.POid(), j.blk)
				}
				if _, _, err := j.f.Size(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
}
