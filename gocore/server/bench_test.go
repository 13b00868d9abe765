// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

// Benchmarks of the server through a real mount (see BENCHMARKS.md,
// "Server"), each side by side with its baseline in the same run:
//
//	go test -run=NONE -bench=Server -benchtime=3x ./gocore/server
//
//   - ColdSeq: sequential read of a 512 MiB file (2 MiB blocks, ZBlk0) right
//     after the server starts (the default mode: reads load their blocks
//     only), against the reference server (wendelin.core's wcfs.go:
//     $WCFS_REF_BIN, or the one `make test-upstream` builds) and the data
//     layer (zdata) loading the same blocks in-process without FUSE, one
//     after another: LoadBlkInto into one reused buffer, and LoadBlkShared
//     (no copy, what the server uses); the FileStorage is in the OS cache.
//     Fresh servers with -prefetch=16M, WCFS_NO_SPLICE=1 (page cache
//     stores written from the map of data.fs) and WCFS_NO_MMAP=1 (blocks
//     read by pread) read alongside.
//   - WarmSeq: the same read with the file in the page cache, against reading
//     the same bytes from a tmpfs file.
//   - Rand4K: random 4 KiB reads of the warm file, latency percentiles
//     (tmpfs alongside).
//   - CommitVisible: from the end of a genuine ZODB commit (the toolkit's
//     reply) to head/at showing it (the .wcfs/debug/zhead stream).
//
// $WCFS_BENCH_SIZE changes the file size (default 512M); $WCFS_BENCH_ARGS
// adds server flags (e.g. -cpuprofile=/tmp/wcfs.prof). The database is made
// once per test process by genuine ZODB (`python -m ztestdb gen`).

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/testenv"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
	"wendelin.dev/wcfs/gocore/zdata"
	"wendelin.dev/wcfs/gocore/zurl"
)

// benchArgs returns the server flags from $WCFS_BENCH_ARGS.
func benchArgs(args ...string) []string {
	return append(args, strings.Fields(os.Getenv("WCFS_BENCH_ARGS"))...)
}

// zfile opens the benchmark file in-process through the data layer.
func zfile(b *testing.B, zurlStr string) (*zdata.ZConn, *zdata.ZBigFile, int64) {
	b.Helper()
	ctx := context.Background()
	stor, err := zdata.OpenStorage(ctx, zurl.MustParse(zurlStr))
	if err != nil {
		b.Fatal(err)
	}
	db := zdata.NewDB(stor)
	zc, err := zdata.OpenConn(ctx, db, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { zc.Close(); db.Close(); stor.Close() })
	root, err := zc.Get(zc.Ctx(ctx), 0)
	if err != nil {
		b.Fatal(err)
	}
	if err := root.PActivate(zc.Ctx(ctx)); err != nil {
		b.Fatal(err)
	}
	obj, _ := root.(*zodb.Map).Get("zf0").(zodb.IPersistent)
	root.PDeactivate()
	if obj == nil {
		b.Fatal("no root['zf0']")
	}
	f, err := zc.LoadZBigFile(ctx, obj.POid())
	if err != nil {
		b.Fatal(err)
	}
	size, _, err := f.Size(zc.Ctx(ctx))
	if err != nil {
		b.Fatal(err)
	}
	return zc, f, size
}

// warmOS reads path so that it is in the OS page cache.
func warmOS(b *testing.B, path string) {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(io.Discard, f); err != nil {
		b.Fatal(err)
	}
}

// readSeq reads path sequentially with reads of bufsize bytes and returns
// the number of bytes read.
func readSeq(b *testing.B, path string, bufsize int) int64 {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, bufsize)
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

const seqBuf = 2 << 20 // read(2) size of sequential reads

// timeRead reads path sequentially and returns how long it took; it fails
// unless the read gave want bytes.
func timeRead(b *testing.B, path string, want int64) time.Duration {
	t0 := time.Now()
	n := readSeq(b, path, seqBuf)
	d := time.Since(t0)
	if n != want {
		b.Fatalf("%s: read %d bytes, want %d", path, n, want)
	}
	return d
}

// refBinary returns the reference server (wendelin.core's wcfs.go) to read
// alongside: $WCFS_REF_BIN, else the one `make test-upstream` builds; "" if
// there is none.
func refBinary(b *testing.B) string {
	if p := os.Getenv("WCFS_REF_BIN"); p != "" {
		return p
	}
	p := filepath.Join(testenv.Repo(b), ".upstream", "env", "wendelin.core", "wcfs", "wcfs.orig")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// refColdRead starts the reference server on zurl, reads file foid
// sequentially through it and stops it; it returns the read's time. The
// reference has no readiness notification: the mount table is polled. It
// cleans up after itself (unmount, its process by pid, the directory) even
// when the read fails.
func refColdRead(b *testing.B, bin, zurl, foid string, size int64) time.Duration {
	b.StopTimer()
	mnt, err := os.MkdirTemp("", "wcfs-bench-ref-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(mnt)
	cmd := exec.Command(bin, "-logtostderr", zurl, mnt)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		if wcfstest.IsMounted(mnt) {
			unix.Unmount(mnt, 0)
		}
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	}()
	for deadline := time.Now().Add(time.Minute); !wcfstest.IsMounted(mnt); time.Sleep(10 * time.Millisecond) {
		select {
		case <-exited:
			b.Fatalf("reference server exited before mounting:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("reference server not mounted within a minute:\n%s", log.String())
		}
	}
	b.StartTimer()
	return timeRead(b, filepath.Join(mnt, "head", "bigfile", foid), size)
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }

// BenchmarkServer runs the server benchmarks against one database.
func BenchmarkServer(b *testing.B) {
	path := testdb.BenchFS(b)
	zurl := "file://" + path
	warmOS(b, path)
	zc, zf, size := zfile(b, zurl)
	foid := zf.POid()
	const bs = 2 << 20

	b.Run("ColdSeq", func(b *testing.B) {
		ctx := zc.Ctx(context.Background())
		dst := make([]byte, bs)
		ref := refBinary(b)
		if ref == "" {
			b.Logf("no reference server (set $WCFS_REF_BIN, or make test-upstream builds one): not read")
		}
		var twcfs, tprefetch, tref, tnosplice, tpread, tzdata, tshared time.Duration
		var nbytes int64
		// a fresh server: the first read after start
		coldRead := func(env string, args ...string) time.Duration {
			b.StopTimer()
			warmOS(b, path)
			if env != "" {
				os.Setenv(env, "1")
			}
			srv := wcfstest.Start(b, zurl, benchArgs(args...)...)
			os.Unsetenv(env)
			b.StartTimer()
			d := timeRead(b, srv.Path("head", "bigfile", foid.String()), size)
			if err := srv.Stop(); err != nil {
				b.Fatal(err)
			}
			return d
		}
		for b.Loop() {
			// every pass starts with the whole FileStorage in the OS page
			// cache: proactive reclaim evicts some of its pages between
			// passes, and each pass would otherwise pay for what the pass
			// before it left out (untimed)
			twcfs += coldRead("")                      // the default: read blocks only
			tprefetch += coldRead("", "-prefetch=16M") // prefetch
			tnosplice += coldRead("WCFS_NO_SPLICE")    // stores written from the map
			tpread += coldRead("WCFS_NO_MMAP")         // the server without the map of data.fs
			if ref != "" {
				b.StopTimer()
				warmOS(b, path)
				b.StartTimer()
				tref += refColdRead(b, ref, zurl, foid.String(), size)
			}
			nbytes += size

			b.StopTimer()
			warmOS(b, path)
			b.StartTimer()
			t0 := time.Now()
			for blk := int64(0); blk < size/bs; blk++ {
				if _, err := zf.LoadBlkInto(ctx, blk, dst); err != nil {
					b.Fatal(err)
				}
			}
			tzdata += time.Since(t0)

			// what the server calls: no copy of full ZBlk0 blocks
			b.StopTimer()
			warmOS(b, path)
			b.StartTimer()
			t0 = time.Now()
			for blk := int64(0); blk < size/bs; blk++ {
				d, _, err := zf.LoadBlkShared(ctx, blk)
				if err != nil {
					b.Fatal(err)
				}
				d.Release()
			}
			tshared += time.Since(t0)
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(mbps(nbytes, twcfs), "wcfs-MB/s")
		b.ReportMetric(mbps(nbytes, tprefetch), "wcfs-prefetch-MB/s")
		b.ReportMetric(mbps(nbytes, tnosplice), "wcfs-nosplice-MB/s")
		b.ReportMetric(mbps(nbytes, tpread), "wcfs-nommap-MB/s")
		b.ReportMetric(mbps(nbytes, tzdata), "zdata-MB/s")
		b.ReportMetric(mbps(nbytes, tshared), "zdata-shared-MB/s")
		b.ReportMetric(float64(tzdata)/float64(twcfs), "wcfs/zdata")
		b.ReportMetric(float64(tprefetch)/float64(twcfs), "wcfs/wcfs-prefetch")
		b.ReportMetric(float64(tzdata)/float64(tnosplice), "wcfs-nosplice/zdata")
		b.ReportMetric(float64(tzdata)/float64(tpread), "wcfs-nommap/zdata")
		b.ReportMetric(float64(tshared)/float64(twcfs), "wcfs/zdata-shared")
		if ref != "" {
			b.ReportMetric(mbps(nbytes, tref), "ref-MB/s")
			b.ReportMetric(float64(tref)/float64(twcfs), "wcfs/ref")
			b.ReportMetric(float64(tref)/float64(tprefetch), "wcfs-prefetch/ref")
		}
	})

	srv := wcfstest.Start(b, zurl, benchArgs()...)
	headf := srv.Path("head", "bigfile", foid.String())

	// a tmpfs copy of the same bytes
	tmpfs, err := os.CreateTemp("/dev/shm", "wcfs-bench-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(tmpfs.Name())
	src, err := os.Open(headf)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.Copy(tmpfs, src); err != nil {
		b.Fatal(err)
	}
	src.Close()
	tmpfs.Close()

	b.Run("WarmSeq", func(b *testing.B) {
		readSeq(b, headf, seqBuf) // warm
		var twcfs, ttmpfs time.Duration
		var nbytes int64
		for b.Loop() {
			t0 := time.Now()
			n := readSeq(b, headf, seqBuf)
			twcfs += time.Since(t0)
			t0 = time.Now()
			readSeq(b, tmpfs.Name(), seqBuf)
			ttmpfs += time.Since(t0)
			nbytes += n
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(mbps(nbytes, twcfs), "wcfs-MB/s")
		b.ReportMetric(mbps(nbytes, ttmpfs), "tmpfs-MB/s")
		b.ReportMetric(float64(ttmpfs)/float64(twcfs), "wcfs/tmpfs")
	})

	b.Run("Rand4K", func(b *testing.B) {
		readSeq(b, headf, seqBuf) // warm
		const nread = 20000
		lat := func(path string) []time.Duration {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			rng := rand.New(rand.NewSource(1))
			buf := make([]byte, 4096)
			d := make([]time.Duration, nread)
			for i := range d {
				off := rng.Int63n(size/4096) * 4096
				t0 := time.Now()
				if _, err := unix.Pread(int(f.Fd()), buf, off); err != nil {
					b.Fatal(err)
				}
				d[i] = time.Since(t0)
			}
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
			return d
		}
		var w, m []time.Duration
		for b.Loop() {
			w, m = lat(headf), lat(tmpfs.Name())
		}
		pct := func(d []time.Duration, p float64) float64 {
			return float64(d[int(p*float64(len(d)-1))].Nanoseconds()) / 1e3
		}
		b.ReportMetric(0, "ns/op")
		for _, p := range []float64{0.5, 0.9, 0.99, 0.999} {
			b.ReportMetric(pct(w, p), fmt.Sprintf("wcfs-p%g-µs", p*100))
		}
		b.ReportMetric(pct(m, 0.5), "tmpfs-p50-µs")
		b.ReportMetric(pct(m, 0.99), "tmpfs-p99-µs")
	})
}

// BenchmarkCommitVisible: a genuine ZODB commit reaches the storage file ->
// head/at shows it (the .wcfs/debug/zhead line, published right after head/at
// advanced; both sides timed with CLOCK_MONOTONIC).
func BenchmarkCommitVisible(b *testing.B) {
	db := testdb.Create(b, filepath.Join(b.TempDir(), "1.fs"))
	foid := db.CreateFile("f", 64<<10, testdb.ZBlk0)
	for blk := int64(0); blk < 16; blk++ {
		db.WriteBlock("f", blk, randData(blk, 64<<10))
	}
	db.Commit("init")
	db.Close()

	srv := wcfstest.Start(b, db.ZURL(), benchArgs("-debug")...)
	zh := openZhead(b, srv)
	// a served file with cached blocks: commits have page cache work to do
	readFileB(b, srv.Path("head", "bigfile", foid.String()))

	zc := startCommitter(b, db.Path())
	var d []time.Duration
	rng := rand.New(rand.NewSource(1))
	for b.Loop() {
		tid, end := zc.send(b, strconv.Itoa(rng.Intn(16)))
		ev := zh.waitTid(b, tid)
		d = append(d, ev.mono-end)
		if got := readFileB(b, srv.Path("head", "at")); string(got) != tid.String() {
			b.Fatalf("head/at = %s after @%s was published", got, tid)
		}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(d[len(d)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(d[len(d)*9/10].Microseconds()), "p90-µs")
	b.ReportMetric(float64(d[len(d)-1].Microseconds()), "max-µs")
}

func readFileB(b *testing.B, path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return data
}
