// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package client

// Benchmarks of the client with a real server (see BENCHMARKS.md, "Client"):
//
//	go test -run=NONE -bench=. -benchtime=10x ./gocore/client
//
//   - Scan: a scan (sum of 8-byte words) of a 512 MiB file (2 MiB blocks)
//     whose data is in the page cache, through a fresh isolated mapping
//     (Conn at head, FileH.Mmap) against a fresh plain mmap of the same
//     head/bigfile/<oid>, interleaved in every iteration; page faults
//     included. $WCFS_BENCH_SIZE changes the size.
//   - Resync/changed=K: a Resync that moves the watch past a commit of K
//     blocks the Conn had pinned: the server sends K "@head" pins, the
//     pinner remaps each block and acknowledges it. (K=0 is the fixed cost:
//     one watch request and its "ok".) Reported as quantiles of the
//     resyncs (the mean suffers from rare slow server-side setups).
//   - PinRemap: the client's part of a pin alone: remap one block of a
//     mapping to an @<rev> file (open already) or back to head/.
//
// $WCFS_BENCH_ARGS adds server flags (e.g. -cpuprofile=/tmp/wcfs.prof).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// scanSink keeps scans from being optimized away.
var scanSink uint64

// scan sums the 8-byte words of mem (touching it directly: no pin can be
// needed at head without commits).
func scan(mem []byte) {
	words := unsafe.Slice((*uint64)(unsafe.Pointer(unsafe.SliceData(mem))), len(mem)/8)
	var sum uint64
	for _, w := range words {
		sum += w
	}
	scanSink += sum
}

func BenchmarkScan(b *testing.B) {
	path := testdb.BenchFS(b)
	db := testdb.Open(b, path, testdb.Options{NoHistory: true})
	foid := db.File("zf0").Oid
	head := db.Head()
	db.Close()
	srv := wcfstest.Start(b, "file://"+path)
	ctx := context.Background()
	c, err := New(srv.Mnt).Connect(ctx, head)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	f, err := c.Open(ctx, foid)
	if err != nil {
		b.Fatal(err)
	}
	hf, err := os.Open(srv.Path("head", "bigfile", foid.String()))
	if err != nil {
		b.Fatal(err)
	}
	defer hf.Close()
	_, size, err := fstat(hf)
	if err != nil {
		b.Fatal(err)
	}
	nblk := size / f.BlkSize()

	plain := func() time.Duration {
		t0 := time.Now()
		mem, err := unix.Mmap(int(hf.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			b.Fatal(err)
		}
		scan(mem)
		unix.Munmap(mem)
		return time.Since(t0)
	}
	isolated := func() time.Duration {
		t0 := time.Now()
		m, err := f.Mmap(0, nblk)
		if err != nil {
			b.Fatal(err)
		}
		scan(m.Mem())
		m.Unmap()
		return time.Since(t0)
	}
	plain() // the file into the page cache
	isolated()

	var tplain, tiso time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%2 == 0 {
			tplain += plain()
			tiso += isolated()
		} else {
			tiso += isolated()
			tplain += plain()
		}
	}
	b.StopTimer()
	mibps := func(d time.Duration) float64 { return float64(size) * float64(b.N) / (1 << 20) / d.Seconds() }
	b.ReportMetric(mibps(tplain), "plain-MiB/s")
	b.ReportMetric(mibps(tiso), "isolated-MiB/s")
	b.ReportMetric(mibps(tiso)/mibps(tplain), "ratio")
}

func BenchmarkResync(b *testing.B) {
	const nblk = 129
	for _, k := range []int{0, 1, 16, 128} {
		b.Run(fmt.Sprintf("changed=%d", k), func(b *testing.B) {
			benchResync(b, nblk, k)
		})
	}
}

// benchResync: a file of nblk blocks; per iteration a commit of k blocks, a
// Conn at the revision before reads them (pins on access), then the timed
// Resync to the commit (k unpins).
func benchResync(b *testing.B, nblk, k int) {
	e, at := newEnvB(b, testBlksize, nblk)
	ctx := context.Background()
	c, err := e.wc.Connect(ctx, at)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	f, err := c.Open(ctx, e.foid)
	if err != nil {
		b.Fatal(err)
	}
	m, err := f.Mmap(0, int64(nblk))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, testBlksize)
	var blks []int64
	for blk := range int64(k) {
		blks = append(blks, blk)
	}
	// every commit also changes the last block, which the Conn never reads
	// (so never pinned): K=0 is a commit too
	changed := append(blks, int64(nblk-1))
	var durs []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		at = e.commit(fmt.Sprintf("i%d", i), changed...)
		for _, blk := range blks {
			if _, err := m.ReadAt(buf, blk*testBlksize); err != nil {
				b.Fatal(err)
			}
		}
		if n := len(f.Pinned()); n != k {
			b.Fatalf("%d blocks pinned before resync, want %d", n, k)
		}
		b.StartTimer()
		t0 := time.Now()
		if err := c.Resync(ctx, at); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(t0))
	}
	b.StopTimer()
	if n := len(f.Pinned()); n != 0 {
		b.Fatalf("%d blocks pinned after resync to head", n)
	}
	// the mean (ns/op) suffers from the server's tails: report quantiles
	slices.Sort(durs)
	q := func(p float64) float64 { return float64(durs[int(p*float64(len(durs)-1))].Microseconds()) }
	b.ReportMetric(q(0.5), "p50-µs")
	b.ReportMetric(q(0.9), "p90-µs")
	if k > 0 {
		b.ReportMetric(q(0.5)/float64(k), "p50-µs/pin")
	}
}

func BenchmarkPinRemap(b *testing.B) {
	e, at0 := newEnvB(b, refBlksize, 4)
	c := e.wc.newConn(at0, nil)
	defer c.Close()
	f, err := c.Open(context.Background(), e.foid)
	if err != nil {
		b.Fatal(err)
	}
	m, err := f.Mmap(0, 4)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Unmap()
	if err := f.pin(3, at0); err != nil { // keeps @at0 open: pins to it do not open it
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rev := at0
		if i%2 == 1 {
			rev = headRev
		}
		if err := f.pin(1, rev); err != nil {
			b.Fatal(err)
		}
	}
}

// newEnvB is newEnv for benchmarks.
func newEnvB(b *testing.B, blksize int64, nblk int) (*env, zodb.Tid) {
	b.Helper()
	db := testdb.Create(b, filepath.Join(b.TempDir(), "1.fs"))
	foid := db.CreateFile("zf", blksize, testdb.ZBlk0)
	for blk := range int64(nblk) {
		db.WriteBlock("zf", blk, blkData(blksize, "v0", blk))
	}
	at := db.Commit("v0")
	srv := wcfstest.Start(b, db.ZURL(), strings.Fields(os.Getenv("WCFS_BENCH_ARGS"))...)
	return &env{tb: b, db: db, srv: srv, wc: New(srv.Mnt), foid: foid, blksize: blksize}, at
}
