// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	pickle "github.com/kisielk/og-rek"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/zpickle"
	"wendelin.dev/wcfs/gocore/zurl"
)

const tblksize = 16 // block size of the in-memory test files

// baseRecs returns a small valid database:
//
//	0  root PersistentMapping
//	1  ZBigFile(blksize 16, blktab 2)
//	2  LOBTree {0: ZBlk0 3, 1: ZBlk1 4}   (inline bucket)
//	3  ZBlk0 "abc"
//	4  ZBlk1 -> 5
//	5  IOBTree {0: ZData 6, 8: ZData 7}   (inline bucket)
//	6  ZData "0123"
//	7  ZData "xy"
func baseRecs() map[zodb.Oid][]byte {
	return map[zodb.Oid][]byte{
		0: pk("persistent.mapping.PersistentMapping", map[any]any{"data": map[any]any{}}),
		1: zfile(tblksize, 2),
		2: pk(zpickle.ClassLOBTree, inlineTree(int64(0), ref(3, ClassZBlk0), int64(1), ref(4, ClassZBlk1))),
		3: pk(ClassZBlk0, pickle.Bytes("abc")),
		4: pk(ClassZBlk1, ref(5, zpickle.ClassIOBTree)),
		5: pk(zpickle.ClassIOBTree, inlineTree(int64(0), ref(6, ClassZData), int64(8), ref(7, ClassZData))),
		6: pk(ClassZData, pickle.Bytes("0123")),
		7: pk(ClassZData, pickle.Bytes("xy")),
	}
}

// memFile builds a database from recs (one transaction, tid 1) and returns
// the connection at its head.
func memFile(t *testing.T, recs map[zodb.Oid][]byte) *ZConn {
	t.Helper()
	db, zurl := newMemDB(t)
	db.commit(1, recs)
	return openMem(t, zurl)
}

func TestMemBase(t *testing.T) {
	ctx := context.Background()
	zc := memFile(t, baseRecs())
	f, err := zc.LoadZBigFile(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	fctx := zc.Ctx(ctx)
	size, _, err := f.Size(fctx)
	if err != nil || size != 2*tblksize {
		t.Fatalf("size %d %v", size, err)
	}
	want := map[int64]string{
		0: "abc",
		1: "0123\x00\x00\x00\x00xy",
		2: "", // hole beyond EOF still reads as zeros
	}
	for blk, w := range want {
		data, info, err := f.LoadBlk(fctx, blk)
		if err != nil {
			t.Fatal(err)
		}
		exp := make([]byte, tblksize)
		copy(exp, w)
		if !bytes.Equal(data, exp) {
			t.Errorf("blk %d: %q, want %q", blk, data, exp)
		}
		if info.RevMax != 1 || (blk < 2 && info.ZRev != 1) {
			t.Errorf("blk %d: %+v", blk, info)
		}
		// inline bucket: the tree, then the embedded bucket
		if len(info.Path) != 2 || info.Path[0].Oid != 2 || info.Path[1].Oid != zodb.InvalidOid || info.Path[1].Serial != 1 {
			t.Errorf("blk %d: path %+v", blk, info.Path)
		}
	}

	// LoadBlkInto checks the destination size
	if _, err := f.LoadBlkInto(fctx, 0, make([]byte, 3)); err == nil || !strings.Contains(err.Error(), "destination is 3 bytes, blksize is 16") {
		t.Errorf("LoadBlkInto short dst: %v", err)
	}
	// negative block
	if _, _, err := f.LoadBlk(fctx, -1); err == nil || !strings.Contains(err.Error(), "negative block number") {
		t.Errorf("LoadBlk(-1): %v", err)
	}
	// context without the transaction: an error, not a neo/go panic
	if _, _, err := f.LoadBlk(ctx, 0); !errors.Is(err, ErrNoTxn) {
		t.Errorf("LoadBlk without transaction: %v", err)
	}
	// a stale context after Resync
	if err := zc.Resync(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.LoadBlk(fctx, 0); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Errorf("LoadBlk with a stale context: %v", err)
	}
	// canceled
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := f.LoadBlk(zc.Ctx(cctx), 1); !errors.Is(err, context.Canceled) {
		t.Errorf("LoadBlk canceled: %v", err)
	}
}

// TestBadData checks that damaged databases give errors that name the
// object, the revision and the reason, of the right class, and never panic.
func TestBadData(t *testing.T) {
	type op int
	const (
		opOpen op = iota // LoadZBigFile(1)
		opSize           // Size
		opBlk0           // LoadBlk(0)
		opBlk1           // LoadBlk(1)
	)
	garbage := []byte("\x80\x03\xffgarbage")
	tests := []struct {
		name   string
		mutate func(r map[zodb.Oid][]byte)
		op     op
		class  error    // errors.Is
		want   []string // substrings of the message
	}{
		{"ZBigFile garbage record", func(r map[zodb.Oid][]byte) { r[1] = garbage },
			opOpen, ErrMalformed, []string{"ZBigFile 0000000000000001 @0000000000000001"}},
		{"ZBigFile state not a tuple", func(r map[zodb.Oid][]byte) { r[1] = pk(ClassZBigFile, int64(1)) },
			opOpen, ErrMalformed, []string{"expected (blksize, blktab); got int"}},
		{"ZBigFile blksize 0", func(r map[zodb.Oid][]byte) { r[1] = zfile(0, 2) },
			opOpen, ErrMalformed, []string{"blksize 0 out of range"}},
		{"ZBigFile blksize huge", func(r map[zodb.Oid][]byte) { r[1] = zfile(1<<40, 2) },
			opOpen, ErrMalformed, []string{"out of range"}},
		{"ZBigFile blktab not LOBTree", func(r map[zodb.Oid][]byte) {
			r[1] = pk(ClassZBigFile, pickle.Tuple{int64(16), ref(5, zpickle.ClassIOBTree)})
		}, opOpen, ErrMalformed, []string{"blktab must be a BTrees.LOBTree.LOBTree; got ref BTrees.IOBTree.IOBTree(0000000000000005)"}},
		{"not a ZBigFile: root", nil, -1, ErrNotZBigFile, []string{"class persistent.mapping.PersistentMapping"}},
		{"not a ZBigFile: unknown class", func(r map[zodb.Oid][]byte) { r[1] = pk("foo.Bar", int64(1)) },
			opOpen, ErrNotZBigFile, []string{"class foo.Bar"}},
		{"blktab garbage", func(r map[zodb.Oid][]byte) { r[2] = garbage },
			opBlk0, ErrMalformed, []string{"blktab", "load blk 0", "@0000000000000001"}},
		{"blktab missing", func(r map[zodb.Oid][]byte) { delete(r, 2) },
			opSize, nil, []string{"no such object", "size"}},
		{"blktab value not persistent", func(r map[zodb.Oid][]byte) {
			r[2] = pk(zpickle.ClassLOBTree, inlineTree(int64(0), int64(7)))
		}, opBlk0, ErrMalformed, []string{"blktab node 0000000000000002", "value of key 0 is int, not a persistent reference"}},
		{"unknown ZBlk class", func(r map[zodb.Oid][]byte) { r[3] = pk("foo.ZBlk9", pickle.Bytes("x")) },
			opBlk0, ErrUnknownZBlk, []string{"ZBlk 0000000000000003: unknown ZBlk class foo.ZBlk9"}},
		{"ZBlk missing", func(r map[zodb.Oid][]byte) { delete(r, 3) },
			opBlk0, nil, []string{"ZBlk 0000000000000003: oid missing"}},
		{"ZBlk0 state unicode", func(r map[zodb.Oid][]byte) { r[3] = pk(ClassZBlk0, "abc") },
			opBlk0, ErrMalformed, []string{"ZBlk0 0000000000000003", "expected bytes; got unicode"}},
		{"ZBlk0 garbage", func(r map[zodb.Oid][]byte) { r[3] = garbage },
			opBlk0, ErrMalformed, []string{"ZBlk 0000000000000003", "class pickle"}},
		{"ZBlk0 truncated", func(r map[zodb.Oid][]byte) { r[3] = r[3][:len(r[3])-3] },
			opBlk0, ErrMalformed, []string{"ZBlk0 0000000000000003"}},
		{"ZBlk0 too long", func(r map[zodb.Oid][]byte) { r[3] = pk(ClassZBlk0, pickle.Bytes(strings.Repeat("x", 17))) },
			opBlk0, ErrMalformed, []string{"data is 17 bytes, longer than blksize 16"}},
		{"ZBlk1 state not a reference", func(r map[zodb.Oid][]byte) { r[4] = pk(ClassZBlk1, pickle.None{}) },
			opBlk1, ErrMalformed, []string{"ZBlk1 0000000000000004", "got None"}},
		{"ZBlk1 chunk table missing", func(r map[zodb.Oid][]byte) { delete(r, 5) },
			opBlk1, nil, []string{"chunk table node 0000000000000005: oid missing"}},
		{"ZBlk1 chunk table of wrong class", func(r map[zodb.Oid][]byte) { r[5] = pk(zpickle.ClassLOBTree, pickle.None{}) },
			opBlk1, ErrMalformed, []string{"class BTrees.LOBTree.LOBTree, expected BTrees.IOBTree.IOBTree"}},
		{"ZBlk1 negative offset", func(r map[zodb.Oid][]byte) {
			r[5] = pk(zpickle.ClassIOBTree, inlineTree(int64(-4), ref(6, ClassZData)))
		}, opBlk1, ErrMalformed, []string{"chunk offset -4 out of range"}},
		{"ZBlk1 overlap", func(r map[zodb.Oid][]byte) {
			r[5] = pk(zpickle.ClassIOBTree, inlineTree(int64(0), ref(6, ClassZData), int64(2), ref(7, ClassZData)))
		}, opBlk1, ErrMalformed, []string{"invalid data: chunk @0 (4 bytes) overlaps chunk @2"}},
		{"ZBlk1 overrun", func(r map[zodb.Oid][]byte) {
			r[5] = pk(zpickle.ClassIOBTree, inlineTree(int64(0), ref(6, ClassZData), int64(15), ref(7, ClassZData)))
		}, opBlk1, ErrMalformed, []string{"data longer than blksize 16: chunk @15 is 2 bytes"}},
		{"ZBlk1 chunk beyond blksize", func(r map[zodb.Oid][]byte) {
			r[5] = pk(zpickle.ClassIOBTree, inlineTree(int64(100), ref(6, ClassZData)))
		}, opBlk1, ErrMalformed, []string{"chunk @100 starts beyond blksize 16"}},
		{"ZBlk1 duplicate offset across buckets", func(r map[zodb.Oid][]byte) {
			r[5] = pk(zpickle.ClassIOBTree, pickle.Tuple{pickle.Tuple{ref(8, zpickle.ClassIOBucket), int64(8), ref(9, zpickle.ClassIOBucket)}, ref(8, zpickle.ClassIOBucket)})
			r[8] = pk(zpickle.ClassIOBucket, bucketState(int64(0), ref(6, ClassZData)))
			r[9] = pk(zpickle.ClassIOBucket, bucketState(int64(0), ref(7, ClassZData)))
		}, opBlk1, ErrMalformed, []string{"offset 0 appears twice"}},
		{"ZBlk1 chunk table cycle", func(r map[zodb.Oid][]byte) {
			r[5] = pk(zpickle.ClassIOBTree, pickle.Tuple{pickle.Tuple{ref(5, zpickle.ClassIOBTree)}, ref(8, zpickle.ClassIOBucket)})
		}, opBlk1, ErrMalformed, []string{"deeper than 32 levels"}},
		{"ZBlk1 bucket as root", func(r map[zodb.Oid][]byte) {
			r[5] = pk(zpickle.ClassIOBucket, bucketState(int64(0), ref(6, ClassZData)))
		}, opBlk1, ErrMalformed, []string{"class BTrees.IOBTree.IOBucket, expected BTrees.IOBTree.IOBTree"}},
		{"ZData missing", func(r map[zodb.Oid][]byte) { delete(r, 7) },
			opBlk1, nil, []string{"ZData 0000000000000007: oid missing"}},
		{"ZData wrong class", func(r map[zodb.Oid][]byte) { r[7] = pk(ClassZBlk0, pickle.Bytes("xy")) },
			opBlk1, ErrMalformed, []string{"ZData 0000000000000007: class wendelin.bigfile.file_zodb.ZBlk0, expected wendelin.bigfile.file_zodb.ZData"}},
		{"ZData state not bytes", func(r map[zodb.Oid][]byte) { r[7] = pk(ClassZData, int64(3)) },
			opBlk1, ErrMalformed, []string{"ZData 0000000000000007", "expected bytes; got int"}},
		{"blktab cycle", func(r map[zodb.Oid][]byte) {
			r[2] = pk(zpickle.ClassLOBTree, pickle.Tuple{pickle.Tuple{ref(2, zpickle.ClassLOBTree)}, ref(8, zpickle.ClassLOBucket)})
		}, opBlk0, ErrMalformed, []string{"blktab deeper than 64 levels"}},
		{"size overflow", func(r map[zodb.Oid][]byte) {
			r[2] = pk(zpickle.ClassLOBTree, inlineTree(int64(math.MaxInt64/8), ref(3, ClassZBlk0)))
		}, opSize, ErrSizeOverflow, []string{"size: largest block 1152921504606846975, blksize 16"}},
		{"negative block key", func(r map[zodb.Oid][]byte) {
			r[2] = pk(zpickle.ClassLOBTree, inlineTree(int64(-5), ref(3, ClassZBlk0)))
		}, opSize, ErrMalformed, []string{"largest block number -5 is negative"}},
	}

	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			recs := baseRecs()
			if tt.mutate != nil {
				tt.mutate(recs)
			}
			zc := memFile(t, recs)
			oid := zodb.Oid(1)
			if tt.op < 0 {
				oid = 0
			}
			f, err := zc.LoadZBigFile(ctx, oid)
			if err == nil {
				fctx := zc.Ctx(ctx)
				switch tt.op {
				case opOpen:
					t.Fatalf("LoadZBigFile: no error")
				case opSize:
					_, _, err = f.Size(fctx)
				case opBlk0:
					_, _, err = f.LoadBlk(fctx, 0)
				case opBlk1:
					_, _, err = f.LoadBlk(fctx, 1)
				}
			}
			if err == nil {
				t.Fatalf("no error")
			}
			msg := err.Error()
			if tt.class != nil && !errors.Is(err, tt.class) {
				t.Errorf("error is not %q: %s", tt.class, msg)
			}
			want := append([]string{"zdata: ", "@0000000000000001"}, tt.want...)
			for _, w := range want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
		})
	}
}

// TestMissing checks the messages for oids that do not exist, or not yet.
func TestMissing(t *testing.T) {
	m, fsPath := testdb.SmallFixture(t)
	_, db := openTestDB(t, fsPath)
	ctx := context.Background()

	zc := openTestConn(t, db, 0)
	_, err := zc.LoadZBigFile(ctx, 0xdead)
	var noObj *zodb.NoObjectError
	if !errors.As(err, &noObj) || !strings.Contains(err.Error(), "zdata: load ZBigFile 000000000000dead @"+m.Head.String()+": oid missing") {
		t.Errorf("missing oid: %v", err)
	}

	// zf4k is created in a later transaction
	first := m.Transactions[1].Tid
	zc1 := openTestConn(t, db, first)
	_, err = zc1.LoadZBigFile(ctx, m.Files["zf4k"].Oid)
	var noData *zodb.NoDataError
	if !errors.As(err, &noData) || !strings.Contains(err.Error(), "@"+first.String()+": oid missing") {
		t.Errorf("not yet created: %v", err)
	}

	// a ZBlk0 and a LOBTree are not ZBigFiles
	for oid, class := range map[zodb.Oid]string{0xa3: ClassZBlk0, 5: zpickle.ClassLOBTree} {
		_, err = zc.LoadZBigFile(ctx, oid)
		if !errors.Is(err, ErrNotZBigFile) || !strings.Contains(err.Error(), "not a ZBigFile: class "+class) {
			t.Errorf("oid %s: %v", oid, err)
		}
	}

	// storage that does not exist: the error names the zurl
	_, err = OpenStorage(ctx, zurl.MustParse("/nonexistent/dir/data.fs"))
	if err == nil || !strings.Contains(err.Error(), `zdata: open storage "/nonexistent/dir/data.fs"`) {
		t.Errorf("open nonexistent: %v", err)
	}
}

// TestTruncated opens copies of small.fs truncated at several places. Either
// the open fails with an error, or the database reads as a prefix of the
// history: every file matches the manifest at the storage's (new) head,
// or gives an error; nothing panics.
func TestTruncated(t *testing.T) {
	m, fsPath := testdb.SmallFixture(t)
	orig, err := os.ReadFile(fsPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, frac := range []float64{0.0001, 0.1, 0.33, 0.5, 0.77, 0.9, 0.999} {
		n := int(float64(len(orig)) * frac)
		t.Run(fmt.Sprintf("at%d", n), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "trunc.fs")
			if err := os.WriteFile(path, orig[:n], 0o644); err != nil {
				t.Fatal(err)
			}
			stor, err := OpenStorage(ctx, zurl.MustParse(path))
			if err != nil {
				if !strings.Contains(err.Error(), path) {
					t.Errorf("open error does not name the storage: %v", err)
				}
				return
			}
			defer stor.Close()
			db := NewDB(stor)
			defer db.Close()
			head := stor.Head()
			txi := -1
			for i, txn := range m.Transactions {
				if txn.Tid == head {
					txi = i
				}
			}
			if txi < 0 {
				t.Fatalf("head %s is not a transaction of the manifest", head)
			}
			zc, err := OpenConn(ctx, db, head)
			if err != nil {
				t.Fatal(err)
			}
			defer zc.Close()
			// The fs1 driver may find the cut transaction at any moment
			// and then shut the storage down: reads fail with a storage
			// error, which must not be mistaken for malformed data.
			checkErr := func(name string, err error) {
				t.Logf("%s: %v", name, err)
				if errors.Is(err, ErrMalformed) {
					t.Errorf("%s: truncation reported as malformed data: %v", name, err)
				}
				if !strings.Contains(err.Error(), "@"+head.String()) {
					t.Errorf("%s: error does not name the revision: %v", name, err)
				}
			}
			nok := 0
		files:
			for name, want := range m.Transactions[txi].Files {
				f, err := zc.LoadZBigFile(ctx, m.Files[name].Oid)
				if err != nil {
					checkErr(name, err)
					continue
				}
				h := sha256.New()
				size, _, err := f.Size(zc.Ctx(ctx))
				if err != nil {
					checkErr(name, err)
					continue
				}
				for blk := int64(0); blk*m.Files[name].BlkSize < size; blk++ {
					data, _, err := f.LoadBlk(zc.Ctx(ctx), blk)
					if err != nil {
						checkErr(name, err)
						continue files
					}
					h.Write(data)
				}
				if got := hex.EncodeToString(h.Sum(nil)); got != want.Sha256 {
					t.Errorf("%s @%s: sha256 %s, want %s", name, head, got, want.Sha256)
				}
				nok++
			}
			t.Logf("truncated at %d/%d bytes: head %s (%s), %d files read", n, len(orig), head, m.Transactions[txi].Description, nok)
		})
	}
}

// TestCorruptedCopy damages the class names of every ZBlk record and of the
// chunk-table buckets in a copy of small.fs: every non-hole block read gives
// an unknown-class or malformed-data error.
func TestCorruptedCopy(t *testing.T) {
	m, fsPath := testdb.SmallFixture(t)
	orig, err := os.ReadFile(fsPath)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.ReplaceAll(orig, []byte("wendelin.bigfile.file_zodb\nZBlk"), []byte("wendelin.bigfile.file_zodb\nZBlq"))
	bad = bytes.ReplaceAll(bad, []byte("BTrees.IOBTree\nIOBucket"), []byte("BTrees.IOBTree\nIOBucketX"[:len("BTrees.IOBTree\nIOBucket")]))
	path := filepath.Join(t.TempDir(), "bad.fs")
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	_, db := openTestDB(t, path)
	zc := openTestConn(t, db, 0)
	ctx := context.Background()
	last := m.Transactions[len(m.Transactions)-1]
	nerr := 0
	for name := range last.Files {
		f, err := zc.LoadZBigFile(ctx, m.Files[name].Oid)
		if err != nil {
			t.Fatal(err)
		}
		size, _, err := f.Size(zc.Ctx(ctx))
		if err != nil {
			t.Fatal(err)
		}
		for blk := int64(0); blk*m.Files[name].BlkSize < size; blk++ {
			_, info, err := f.LoadBlk(zc.Ctx(ctx), blk)
			if err == nil && info.Format != Hole {
				t.Errorf("%s blk %d: damaged ZBlk class read without error", name, blk)
			}
			if err != nil {
				nerr++
				if !errors.Is(err, ErrUnknownZBlk) && !errors.Is(err, ErrMalformed) {
					t.Errorf("%s blk %d: %v", name, blk, err)
				}
			}
		}
	}
	if nerr == 0 {
		t.Error("no errors")
	}
}

// TestLegacyZBlkName covers references to one ZBlk object under both its
// names: written as ZBlk by early wendelin.core, the reference becomes ZBlk0
// when its bucket is rewritten later (Python pickles the class by its
// current name) while the object keeps its record. A connection that cached
// the object under one name must still read the block after resyncing.
func TestLegacyZBlkName(t *testing.T) {
	for _, names := range [][2]string{{ClassZBlk, ClassZBlk0}, {ClassZBlk0, ClassZBlk}} {
		t.Run(zpickle.Short(names[0])+"->"+zpickle.Short(names[1]), func(t *testing.T) {
			ctx := context.Background()
			db, zurl := newMemDB(t)
			r1 := baseRecs()
			r1[3] = pk(names[0], pickle.Bytes("old name"))
			r1[2] = pk(zpickle.ClassLOBTree, inlineTree(int64(0), ref(3, names[0]), int64(1), ref(4, ClassZBlk1)))
			db.commit(1, r1)
			db.commit(2, map[zodb.Oid][]byte{
				2: pk(zpickle.ClassLOBTree, inlineTree(int64(0), ref(3, names[1]), int64(2), ref(4, ClassZBlk1))),
			})
			_, zdb := openTestDB(t, zurl)
			zc := openTestConn(t, zdb, 1)
			f, err := zc.LoadZBigFile(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			for _, at := range []zodb.Tid{1, 2, 2, 1} {
				if err := zc.Resync(ctx, at); err != nil {
					t.Fatal(err)
				}
				fctx := zc.Ctx(ctx)
				data, info, err := f.LoadBlk(fctx, 0)
				if err != nil {
					t.Fatalf("@%s: %v", at, err)
				}
				if string(bytes.TrimRight(data, "\x00")) != "old name" || info.ZBlk != 3 || info.ZRev != 1 || info.RevMax != at {
					t.Errorf("@%s: %q %+v", at, data, info)
				}
				size, _, err := f.Size(fctx)
				if want := int64(tblksize * (1 + at)); err != nil || size != want {
					t.Errorf("@%s: size %d %v, want %d", at, size, err, want)
				}
			}
		})
	}
}

// TestResyncDamaged: a ZBigFile and its blktab damaged in a later revision
// give errors at that revision through a resynced connection, and the
// connection reads the earlier revision again after resyncing back.
func TestResyncDamaged(t *testing.T) {
	ctx := context.Background()
	for _, oid := range []zodb.Oid{1, 2} {
		db, zurl := newMemDB(t)
		db.commit(1, baseRecs())
		db.commit(2, map[zodb.Oid][]byte{oid: []byte("\x80\x03garbage")})
		_, zdb := openTestDB(t, zurl)
		zc := openTestConn(t, zdb, 1)
		f, err := zc.LoadZBigFile(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, at := range []zodb.Tid{1, 2, 1} {
			if err := zc.Resync(ctx, at); err != nil {
				t.Fatal(err)
			}
			data, _, err := f.LoadBlk(zc.Ctx(ctx), 0)
			if at == 1 {
				if err != nil || string(bytes.TrimRight(data, "\x00")) != "abc" {
					t.Errorf("oid %s damaged @2, read @1: %q %v", oid, data, err)
				}
				continue
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "@0000000000000002") {
				t.Errorf("oid %s damaged @2: %v", oid, err)
			}
		}
	}
}

// TestCancel cancels LoadBlk while ZData chunks are being loaded: it returns
// context.Canceled once the loads in progress are given up, and leaves no
// goroutine behind.
func TestCancel(t *testing.T) {
	db, zurl := newMemDB(t)
	db.commit(1, baseRecs())
	started := make(chan struct{}, 16)
	never := make(chan struct{})
	db.stall = func(oid zodb.Oid) <-chan struct{} {
		if oid == 6 || oid == 7 { // the ZData of blk 1
			started <- struct{}{}
			return never
		}
		return nil
	}
	zc := openMem(t, zurl)
	f, err := zc.LoadZBigFile(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	ngo := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, _, err := f.LoadBlk(zc.Ctx(ctx), 1)
		done <- err
	}()
	<-started
	cancel()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("LoadBlk not canceled")
	}
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "load blk 1") {
		t.Errorf("canceled LoadBlk: %v", err)
	}
	for i := 0; runtime.NumGoroutine() > ngo && i < 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > ngo {
		t.Errorf("%d goroutines left behind", n-ngo)
	}
}
