// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

// Benchmarks of the isolation protocol through a real mount (BENCHMARKS.md,
// "Isolation protocol"), side by side in one run:
//
//	go test -run=NONE -bench=Isolation ./gocore/server
//
//   - Pin: a read of a head block that a watch must be pinned for (the
//     watch is at the revision before the last commit, which changed every
//     block), against the same read with the watch at head (no pin) and
//     without any watch: the
//     difference is the pin round trip (pin sent, client's ack received)
//     plus its bookkeeping. Each read loads a block never read before (a
//     fresh server per pass over the file). WatchRTT: a watch request
//     that needs no pin, the client's round trip over the same transport.
//     InProc: the same round trip of two wproto links over a wproto.Pipe
//     in one process, without FUSE.
//   - Read: cold sequential read of a 64 MiB file (64 KiB blocks, and
//     2 MiB blocks with the server's prefetch) with 0, 1 and 16 links
//     watching it at head: the cost of the watch check on every load.

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
	"wendelin.dev/wcfs/gocore/wproto"
)

func BenchmarkIsolation(b *testing.B) {
	b.Run("Pin", benchPin)
	b.Run("Read", benchWatchedRead)
}

func benchPin(b *testing.B) {
	const bs = 4 << 10
	const nblk = 4096
	db := testdb.Create(b, filepath.Join(b.TempDir(), "pin.fs"))
	foid := db.CreateFile("f", bs, testdb.ZBlk0)
	seed := int64(0)
	// commit rewrites every block
	commit := func() zodb.Tid {
		seed++
		db.Write("f", 0, randData(seed, nblk*bs))
		return db.Commit(fmt.Sprintf("all blocks #%d", seed))
	}
	commit()

	// read reads b.N blocks never read before, each pass on a fresh
	// server after a commit that changed every block, with a link
	// watching at the revision before that commit (pin), at the commit
	// (nopin), or no link
	read := func(b *testing.B, mode string) {
		b.StopTimer()
		for done := 0; done < b.N; {
			srv := wcfstest.Start(b, db.ZURL(), benchArgs()...)
			path := srv.Path("head", "bigfile", foid.String())
			lookup(b, path)
			before := db.Head()
			if tid := commit(); !waitHeadAt(srv, tid) {
				b.Fatalf("head/at never reached @%s", tid)
			}
			fd, err := openRetry(path, unix.O_RDONLY)
			if err != nil {
				b.Fatal(err)
			}
			unix.Fadvise(fd, 0, 0, unix.FADV_RANDOM)
			var tl *tLink
			switch mode {
			case "pin":
				tl = openLink(b, srv)
				tl.mustWatch(foid, before)
			case "nopin":
				tl = openLink(b, srv)
				tl.mustWatch(foid, db.Head())
			}
			buf := make([]byte, bs)
			n := min(nblk, b.N-done)
			b.StartTimer()
			for blk := 0; blk < n; blk++ {
				if _, err := preadRetry(fd, buf, int64(blk)*bs); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			done += n
			unix.Close(fd)
			if tl != nil {
				want := int64(0)
				if mode == "pin" {
					want = int64(n)
				}
				if got := stats(b, srv)["pin"]; got != want {
					b.Fatalf("%d pins for %d reads, want %d", got, n, want)
				}
				tl.close()
			}
			stopServer(b, srv)
		}
	}
	b.Run("read=pin", func(b *testing.B) { read(b, "pin") })
	b.Run("read=nopin", func(b *testing.B) { read(b, "nopin") })
	b.Run("read=nowatch", func(b *testing.B) { read(b, "nowatch") })
	head := db.Head()

	b.Run("WatchRTT", func(b *testing.B) {
		srv := wcfstest.Start(b, db.ZURL(), benchArgs()...)
		lookup(b, srv.Path("head", "bigfile", foid.String()))
		tl := openLink(b, srv)
		req := wproto.Watch{Foid: foid, At: head}.String()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if reply, err := tl.req(req); err != nil || reply != wproto.ReplyOK {
				b.Fatal(reply, err)
			}
		}
	})

	b.Run("InProc", func(b *testing.B) {
		p := wproto.NewPipe()
		srv := wproto.NewLink(wproto.RoleServer, p)
		cli := wproto.NewLink(wproto.RoleClient, p.PeerTransport())
		defer srv.Close()
		defer cli.Close()
		ctx := context.Background()
		go func() {
			for {
				req, err := cli.RecvReq(ctx)
				if err != nil {
					return
				}
				cli.Reply(ctx, req, wproto.ReplyAck)
			}
		}()
		pin := wproto.Pin{Foid: foid, Blk: 1, Rev: head}.String()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if reply, err := srv.SendReq(ctx, pin); err != nil || reply != wproto.ReplyAck {
				b.Fatal(reply, err)
			}
		}
	})
}

func benchWatchedRead(b *testing.B) {
	for _, bsName := range []string{"64K", "2M"} {
		path := filepath.Join(b.TempDir(), "read.fs")
		cmd := testdb.Command(b, "gen", path, "--files=1", "--size=64M", "--blksize="+bsName,
			"--fmt=ZBlk0", "--no-manifest", "--no-progress")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		srv := wcfstest.Start(b, "file://"+path, benchArgs()...)
		zc, zf, size := zfile(b, "file://"+path)
		foid := zf.POid()
		head := zc.At()
		fpath := srv.Path("head", "bigfile", foid.String())
		for _, nlink := range []int{0, 1, 16} {
			b.Run(fmt.Sprintf("blksize=%s/links=%d", bsName, nlink), func(b *testing.B) {
				lookup(b, fpath)
				var links []*tLink
				for i := 0; i < nlink; i++ {
					tl := openLink(b, srv)
					tl.mustWatch(foid, head)
					links = append(links, tl)
				}
				b.SetBytes(size)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					dropCache(b, fpath)
					b.StartTimer()
					if n := readSeq(b, fpath, seqBuf); n != size {
						b.Fatalf("read %d bytes of %d", n, size)
					}
				}
				b.StopTimer()
				if n := stats(b, srv)["pin"]; n != 0 {
					b.Fatalf("%d pins", n)
				}
				for _, tl := range links {
					tl.close()
				}
			})
		}
	}
}

// dropCache drops the page cache of path and lets the server's uploads in
// flight land first (they would refill it).
func dropCache(b *testing.B, path string) {
	for i := 0; i < 2; i++ {
		fd, err := openRetry(path, unix.O_RDONLY)
		if err != nil {
			b.Fatal(err)
		}
		unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
		unix.Close(fd)
		time.Sleep(20 * time.Millisecond)
	}
}

// lookup looks path up (a watch needs the file known to the server).
func lookup(tb testing.TB, path string) {
	tb.Helper()
	var st unix.Stat_t
	if err := retryEINTR(func() error { return unix.Stat(path, &st) }); err != nil {
		tb.Fatalf("stat %s: %v", path, err)
	}
}

// stopServer stops srv with SIGTERM, again while it stays up: a mount that
// is busy for a moment (a release in flight on a loaded machine) makes the
// server keep serving.
func stopServer(tb testing.TB, srv *wcfstest.Server) {
	tb.Helper()
	for try := 0; try < 20; try++ {
		if err := srv.Signal(unix.SIGTERM); err != nil {
			break
		}
		if _, err := srv.WaitExit(time.Second); err == nil {
			return
		}
	}
	if _, err := srv.WaitExit(time.Second); err != nil {
		tb.Fatalf("wcfs (pid %d) does not stop: %v", srv.PID, err)
	}
}
