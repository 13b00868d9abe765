// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// Block load throughput from a FileStorage written by genuine ZODB (the
// toolkit's `python -m ztestdb gen`), for ZBlk0 and ZBlk1 2 MiB blocks,
// side by side with the raw speed of loading the same records through
// neo/go without decoding:
//
//	go test -run=NONE -bench=LoadBlk -benchtime=2s ./gocore/zdata
//
// and over a genuine ZEO server (zeo://127.0.0.1) serving the same file.
// The databases (64 MiB per format, $ZDATA_BENCH_SIZE to change) are made
// once per test process in a temporary directory removed at exit.

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/testenv"
	"wendelin.dev/wcfs/gocore/internal/zeotest"
	"wendelin.dev/wcfs/gocore/internal/zpickle"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testdb.RemoveGenerated()
	os.Exit(code)
}

// benchDB returns the path of a benchmark database with one 2 MiB-block file
// "zf0" in format fmt (ZBlk0 or ZBlk1), made by genuine ZODB.
func benchDB(b *testing.B, fmt_ string) string {
	b.Helper()
	return testdb.Gen(b, "--files=1", "--size="+testenv.Getenv("ZDATA_BENCH_SIZE", "64M"),
		"--blksize=2M", "--fmt="+fmt_)
}

// benchFile opens the benchmark database at zurl and returns the
// connection, the file and its number of blocks.
func benchFile(b *testing.B, zurl string) (zodb.IStorage, *ZConn, *ZBigFile, int64) {
	b.Helper()
	stor, db := openTestDB(b, zurl)
	zc := openTestConn(b, db, 0)
	ctx := context.Background()

	// the file is root["zf0"]
	root, err := zc.Get(zc.Ctx(ctx), 0)
	if err != nil {
		b.Fatal(err)
	}
	var oid zodb.Oid
	if err := root.PActivate(zc.Ctx(ctx)); err != nil {
		b.Fatal(err)
	}
	if obj, ok := root.(*zodb.Map).Get("zf0").(zodb.IPersistent); ok {
		oid = obj.POid()
	}
	root.PDeactivate()
	f, err := zc.LoadZBigFile(ctx, oid)
	if err != nil {
		b.Fatal(err)
	}
	size, _, err := f.Size(zc.Ctx(ctx))
	if err != nil {
		b.Fatal(err)
	}
	return stor, zc, f, size / (2 << 20)
}

// blkRecords returns the oids of the records LoadBlk reads for blk, besides
// blktab: the ZBlk, and for ZBlk1 its chunk-table nodes and ZData chunks.
func blkRecords(b *testing.B, stor zodb.IStorage, zc *ZConn, f *ZBigFile, blk int64) []zodb.Oid {
	ctx := zc.Ctx(context.Background())
	_, info, err := f.LoadBlk(ctx, blk)
	if err != nil {
		b.Fatal(err)
	}
	oids := []zodb.Oid{info.ZBlk}
	if info.Format != FormatZBlk1 {
		return oids
	}
	at := zc.At()
	buf, _, err := stor.Load(ctx, zodb.Xid{Oid: info.ZBlk, At: at})
	if err != nil {
		b.Fatal(err)
	}
	_, root, err := zpickle.DecodeRef(buf.Data)
	buf.Release()
	if err != nil {
		b.Fatal(err)
	}
	level := []zodb.Oid{root.Oid}
	for len(level) > 0 {
		var next []zodb.Oid
		for _, oid := range level {
			oids = append(oids, oid)
			kids, entries, err := loadIONode(ctx, stor, at, oid, false)
			if err != nil {
				b.Fatal(err)
			}
			next = append(next, kids...)
			for _, e := range entries {
				oids = append(oids, e.Oid)
			}
		}
		level = next
	}
	return oids
}

// BenchmarkLoadBlk: for each format and storage (FileStorage, and a genuine
// ZEO server over the same file on 127.0.0.1), zdata's LoadBlkInto and the
// raw loads of the same records through neo/go, side by side.
func BenchmarkLoadBlk(b *testing.B) {
	for _, fmt_ := range []string{"ZBlk0", "ZBlk1"} {
		b.Run(fmt_, func(b *testing.B) {
			path := benchDB(b, fmt_)
			b.Run("file", func(b *testing.B) { benchLoadBlk(b, path) })
			b.Run("zeo", func(b *testing.B) {
				if testing.Short() {
					b.Skip("-short: no ZEO server")
				}
				zeo := zeotest.Start(b, path)
				benchLoadBlk(b, zeo.ZURL())
			})
		})
	}
}

func benchLoadBlk(b *testing.B, zurl string) {
	stor, zc, f, nblk := benchFile(b, zurl)
	if nblk == 0 {
		b.Fatal("empty benchmark file")
	}
	const blksize = 2 << 20
	ctx := zc.Ctx(context.Background())
	records := make([][]zodb.Oid, nblk)
	nrec := 0
	var zblk1 bool
	for blk := range records {
		records[blk] = blkRecords(b, stor, zc, f, int64(blk))
		nrec += len(records[blk])
		zblk1 = len(records[blk]) > 1
	}
	b.Logf("%s: %d blocks, %d records", zurl, nblk, nrec)

	rawLoad := func(oids []zodb.Oid) {
		for _, oid := range oids {
			buf, _, err := stor.Load(ctx, zodb.Xid{Oid: oid, At: zc.At()})
			if err != nil {
				b.Fatal(err)
			}
			buf.Release()
		}
	}

	// side by side in one loop, so that all see the same machine: each
	// iteration loads a block through LoadBlkInto and LoadBlkShared, then
	// its records raw; the metrics are the throughput of each and ratios
	b.Run("interleaved", func(b *testing.B) {
		dst := make([]byte, blksize)
		var tz, ts, tr time.Duration
		n := 0
		for i := 0; b.Loop(); i++ {
			blk := int64(i) % nblk
			t0 := time.Now()
			if _, err := f.LoadBlkInto(ctx, blk, dst); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			d, _, err := f.LoadBlkShared(ctx, blk)
			if err != nil {
				b.Fatal(err)
			}
			d.Release()
			t2 := time.Now()
			rawLoad(records[blk])
			tr += time.Since(t2)
			ts += t2.Sub(t1)
			tz += t1.Sub(t0)
			n++
		}
		mb := float64(n) * blksize / 1e6
		b.ReportMetric(mb/tz.Seconds(), "into-MB/s")
		b.ReportMetric(mb/ts.Seconds(), "shared-MB/s")
		b.ReportMetric(mb/tr.Seconds(), "raw-MB/s")
		b.ReportMetric(tz.Seconds()/tr.Seconds(), "into/raw")
		b.ReportMetric(ts.Seconds()/tr.Seconds(), "shared/raw")
		b.ReportMetric(0, "ns/op")
	})

	// zdata: decoded, assembled, padded, into a reused buffer
	b.Run("zdata", func(b *testing.B) {
		dst := make([]byte, blksize)
		b.SetBytes(blksize)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := f.LoadBlkInto(ctx, int64(i)%nblk, dst); err != nil {
				b.Fatal(err)
			}
		}
	})
	// zdata, blocks loaded by concurrent readers (like the server)
	b.Run("zdata-concurrent", func(b *testing.B) {
		b.SetBytes(blksize)
		b.ReportAllocs()
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			dst := make([]byte, blksize)
			for pb.Next() {
				blk := (next.Add(1) - 1) % nblk
				if _, err := f.LoadBlkInto(ctx, blk, dst); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	// raw: storage Load of the same records, one after another
	b.Run("raw", func(b *testing.B) {
		b.SetBytes(blksize)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			rawLoad(records[int64(i)%nblk])
		}
	})
	if !zblk1 {
		return
	}
	// raw, with the records of a block loaded in parallel as LoadBlk
	// loads the chunks
	b.Run("raw-parallel", func(b *testing.B) {
		b.SetBytes(blksize)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			oids := records[int64(i)%nblk]
			err := parallel(ctx, len(oids), func(ctx context.Context, j int) error {
				buf, _, err := stor.Load(ctx, zodb.Xid{Oid: oids[j], At: zc.At()})
				if err == nil {
					buf.Release()
				}
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
