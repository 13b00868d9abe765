// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package e2e

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"wendelin.dev/wcfs/gocore/internal/neotest"
	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
	"wendelin.dev/wcfs/gocore/zdata"
)

// benchSize is the size of the file read by the cold-read benchmarks.
const benchSize = 512 << 20

// benchFixture writes the benchmark database into a temporary directory of
// b: one file of benchSize in 2 MiB ZBlk0 blocks (wendelin.core's defaults),
// pseudo-random data, written by genuine ZODB (ztestdb gen). It returns the
// FileStorage and the file.
func benchFixture(b *testing.B) (string, *testdb.FileState) {
	b.Helper()
	dir := b.TempDir()
	fs := filepath.Join(dir, "bench.fs")
	cmd := testdb.Command(b, "gen", fs, "--size", strconv.Itoa(benchSize>>20)+"M", "--blksize", "2M", "--fmt", "ZBlk0", "--no-progress")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("benchmark database: %v\n%s", err, out)
	}
	m, err := testdb.LoadManifest(filepath.Join(dir, "bench.json"))
	if err != nil {
		b.Fatal(err)
	}
	var file *testdb.FileState
	for _, f := range m.Last().Files {
		file = f
	}
	// the storage node reads the FileStorage through the OS page cache:
	// warm it once, for every way alike
	f, err := os.Open(fs)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(io.Discard, f); err != nil {
		b.Fatal(err)
	}
	return fs, file
}

// Cold sequential read of a 512 MiB ZBigFile from a NEO cluster on loopback,
// three ways, interleaved in every iteration so that they share the
// machine's state (a 2-core machine shared with other work drifts):
//
//	mount:   through a fresh wcfs server (nothing in its page cache), read(2)
//	         of 2 MiB pieces, as a process on the mount does;
//	zdata:   the data layer alone on a fresh storage connection, loading the
//	         same blocks in order, one at a time, without FUSE;
//	zdata4:  the same with 4 blocks loaded at once (what kernel readahead
//	         lets the server do).
//
// Reported: MB/s of each (ns/op is the mount's), and mount/zdata, the
// mount's speed as a fraction of the data layer's. The FileStorage behind
// the storage node is in the OS page cache for all.
func BenchmarkColdReadNEO(b *testing.B) {
	quietGlog(b)
	fsPath, file := benchFixture(b)
	c := neotest.Start(b, fsPath, neotest.Options{})

	b.Run("interleaved", func(b *testing.B) {
		b.StopTimer() // each way times itself
		var tMount, tZdata, tZdata4 time.Duration
		for i := 0; i < b.N; i++ {
			tMount += readThroughMount(b, c.ZURL(), file)
			tZdata += loadAllBlocks(b, c.ZURL(), file, 1)
			tZdata4 += loadAllBlocks(b, c.ZURL(), file, 4)
		}
		mbps := func(d time.Duration) float64 { return float64(file.Size) * float64(b.N) / d.Seconds() / 1e6 }
		b.ReportMetric(float64(tMount.Nanoseconds())/float64(b.N), "ns/op")
		b.ReportMetric(mbps(tMount), "mount-MB/s")
		b.ReportMetric(mbps(tZdata), "zdata-MB/s")
		b.ReportMetric(mbps(tZdata4), "zdata4-MB/s")
		b.ReportMetric(tZdata.Seconds()/tMount.Seconds(), "mount/zdata")
	})
}

// readThroughMount starts a wcfs server on zurl and reads file sequentially
// through its mount, cold; it returns the time of the read alone.
func readThroughMount(b *testing.B, zurl string, file *testdb.FileState) time.Duration {
	srv := wcfstest.Start(b, zurl)
	defer func() {
		if err := srv.Stop(); err != nil {
			b.Fatal(err)
		}
	}()
	f, err := os.Open(srv.Path("head", "bigfile", file.Oid.String()))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 2<<20)
	t0 := time.Now()
	n, err := io.CopyBuffer(io.Discard, onlyReader{f}, buf)
	d := time.Since(t0)
	if err != nil || n != file.Size {
		b.Fatalf("read %d bytes: %v", n, err)
	}
	return d
}

// onlyReader hides os.File's WriterTo so that io.CopyBuffer reads with the
// given buffer size.
type onlyReader struct{ io.Reader }

// loadAllBlocks opens zurl afresh and loads every block of file through
// zdata with par loads at once; it returns the time of the loads alone.
func loadAllBlocks(b *testing.B, zurl string, file *testdb.FileState, par int) time.Duration {
	ctx := context.Background()
	db, closeDB := openDB(b, ctx, zurl)
	defer closeDB()
	zc, err := zdata.OpenConn(ctx, db, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer zc.Close()
	f, err := zc.LoadZBigFile(ctx, file.Oid)
	if err != nil {
		b.Fatal(err)
	}
	next := make(chan int64)
	errs := make(chan error, par)
	t0 := time.Now()
	for w := 0; w < par; w++ {
		go func() {
			buf := make([]byte, file.BlkSize)
			var err error
			for blk := range next {
				if err == nil {
					_, err = f.LoadBlkInto(zc.Ctx(ctx), blk, buf)
				}
			}
			errs <- err
		}()
	}
	for blk := int64(0); blk < file.NBlocks(); blk++ {
		next <- blk
	}
	close(next)
	for w := 0; w < par; w++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(t0)
}

// quietGlog silences, for the benchmark, what neo/go's client logs on every
// connection (glog with -logtostderr writes to os.Stderr as found at each
// write; benchmark results go to stdout).
func quietGlog(b *testing.B) {
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	stderr := os.Stderr
	os.Stderr = devnull
	b.Cleanup(func() {
		os.Stderr = stderr
		devnull.Close()
	})
}
