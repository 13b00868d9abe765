// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// zheadStream follows .wcfs/debug/zhead.
type zheadStream struct {
	tids chan zheadEvent
	fd   int
	once sync.Once
}

// zheadEvent is one line of the stream and when it was read.
type zheadEvent struct {
	tid  zodb.Tid
	mono time.Duration // CLOCK_MONOTONIC
}

// monotonic returns CLOCK_MONOTONIC (the clock of Python's time.monotonic).
func monotonic() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return time.Duration(ts.Nano())
}

// openZhead opens .wcfs/debug/zhead. The reader stays blocked until the
// server stops (which ends the stream); the descriptor is closed without
// waiting for it (os.File.Close would wait for the read in progress).
func openZhead(t testing.TB, srv *wcfstest.Server) *zheadStream {
	t.Helper()
	fd, err := unix.Open(srv.Path(".wcfs", "debug", "zhead"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	z := &zheadStream{tids: make(chan zheadEvent, 1000), fd: fd}
	go func() {
		defer close(z.tids)
		sc := bufio.NewScanner(fdReader(fd))
		for sc.Scan() {
			mono := monotonic()
			tid, err := zodb.ParseTid(sc.Text())
			if err != nil {
				return
			}
			z.tids <- zheadEvent{tid, mono}
		}
	}()
	t.Cleanup(z.close)
	return z
}

// close closes the stream's descriptor (the server can then unmount).
func (z *zheadStream) close() { z.once.Do(func() { unix.Close(z.fd) }) }

// fdReader reads a raw file descriptor.
type fdReader int

func (fd fdReader) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(int(fd), p)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// waitTid waits until the server says it processed tid.
func (z *zheadStream) waitTid(t testing.TB, tid zodb.Tid) zheadEvent {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-z.tids:
			if !ok {
				t.Fatalf("zhead stream ended before @%s", tid)
			}
			if ev.tid == tid {
				return ev
			}
			if ev.tid > tid {
				t.Fatalf("zhead: got @%s, expected @%s first", ev.tid, tid)
			}
		case <-timeout:
			t.Fatalf("zhead: @%s not processed within a minute", tid)
		}
	}
}

// mapping is a read-only shared mapping of a file, whose page cache
// residency is seen with mincore.
type mapping struct {
	mem     []byte
	blksize int64
}

func mapFile(t *testing.T, path string, length, blksize int64) *mapping {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, int(length), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	// one access must not read neighbours (readahead)
	if err := unix.Madvise(mem, unix.MADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	m := &mapping{mem: mem, blksize: blksize}
	t.Cleanup(m.unmap)
	return m
}

// unmap unmaps m (idempotent).
func (m *mapping) unmap() {
	if m.mem != nil {
		unix.Munmap(m.mem)
		m.mem = nil
	}
}

// cached returns how many pages of block blk are in the page cache.
func (m *mapping) cached(t *testing.T, blk int64) int {
	t.Helper()
	b := m.mem[blk*m.blksize : (blk+1)*m.blksize]
	vec := make([]byte, len(b)/os.Getpagesize())
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		t.Fatal("mincore:", e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

func (m *mapping) pages() int { return int(m.blksize) / os.Getpagesize() }

// touch reads one byte of block blk (a page fault served by WCFS).
func (m *mapping) touch(blk int64) { sink.Add(uint64(m.mem[blk*m.blksize])) }

// sink keeps reads of mapped memory from being optimized away.
var sink atomic.Uint64

// waitCached waits until the whole of every block in blks is cached (the
// server uploads the rest of a block asynchronously after a read).
//
// A page counts once it was seen cached: the machine may evict clean file
// pages nobody maps at any time (proactive reclaim: the test VMs run DAMON's
// pageout of unmapped file pages, which drops such pages within a fraction
// of a second without memory pressure). Once every page was seen, each is
// touched, so that the block stays cached (mapped pages are not evicted)
// for the checks that follow; a page evicted meanwhile is read again.
func (m *mapping) waitCached(t *testing.T, what string, blks ...int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	pagesize := int64(os.Getpagesize())
	for _, blk := range blks {
		b := m.mem[blk*m.blksize : (blk+1)*m.blksize]
		seen := make([]bool, m.pages())
		for {
			vec := make([]byte, len(seen))
			if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
				t.Fatal("mincore:", e)
			}
			n := 0
			for i, v := range vec {
				seen[i] = seen[i] || v&1 != 0
				if seen[i] {
					n++
				}
			}
			if n == len(seen) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: block %d: %d of %d pages were in the page cache", what, blk, n, len(seen))
			}
			time.Sleep(time.Millisecond)
		}
		for off := int64(0); off < m.blksize; off += pagesize {
			sink.Add(uint64(b[off]))
		}
	}
}

// cachedState describes the cache state of blocks [0, n) like "F F 0 F"
// (F: fully cached, 0: nothing, k: k pages).
func (m *mapping) cachedState(t *testing.T, n int64) string {
	var s []string
	for blk := int64(0); blk < n; blk++ {
		switch c := m.cached(t, blk); c {
		case m.pages():
			s = append(s, "F")
		default:
			s = append(s, strconv.Itoa(c))
		}
	}
	return strings.Join(s, " ")
}

// Commits while mounted: head/at advances after the commit is applied, new
// data is read, only the changed blocks leave the page cache (unchanged
// blocks and holes stay, also when the file grows), the old data of a
// changed block is already in the page cache of @<rev> where rev is the
// block's own last change, and @<rev> views read the old data.
func TestCommitFollow(t *testing.T) {
	t.Parallel()
	const bs = 64 << 10
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	foid := db.CreateFile("f", bs, testdb.ZBlk0)
	for _, blk := range []int64{0, 1, 2, 4} { // 3 is a hole
		db.WriteBlock("f", blk, randData(blk, bs))
	}
	at1 := db.Commit("at1")

	srv := wcfstest.Start(t, db.ZURL(), "-debug", "-v=1")
	zh := openZhead(t, srv)
	headf := srv.Path("head", "bigfile", foid.String())
	m := mapFile(t, headf, 8*bs, bs)
	for blk := int64(0); blk < 5; blk++ {
		m.touch(blk)
	}
	m.waitCached(t, "head after reading", 0, 1, 2, 3, 4)

	// at2: change block 1, append block 6 (5 is a hole): the file grows
	db.WriteBlock("f", 1, randData(100, bs))
	db.WriteBlock("f", 6, randData(101, bs))
	at2 := db.Commit("at2")
	zh.waitTid(t, at2)
	if got := string(readFile(t, srv.Path("head", "at"))); got != at2.String() {
		t.Errorf("head/at = %s after @%s was processed", got, at2)
	}
	if got := m.cachedState(t, 5); got != "F 0 F F F" {
		t.Errorf("head cache after at2 (block 1 changed): %s, want F 0 F F F", got)
	}
	if st := stat(t, headf); st.Size != 7*bs || !mtime(st).Equal(tidTime(at2)) {
		t.Errorf("head file after at2: size %d mtime %s; want %d %s", st.Size, mtime(st), 7*bs, tidTime(at2))
	}
	// the old block 1 is in @at1's cache before anybody read it there
	rev1 := mapFile(t, srv.Path("@"+at1.String(), "bigfile", foid.String()), 5*bs, bs)
	if c := rev1.cached(t, 1); c != rev1.pages() {
		t.Errorf("@at1: old block 1: %d of %d pages cached, want all", c, rev1.pages())
	}
	checkBlocks(t, srv.Path("head", "bigfile", foid.String()), bs, map[int64][]byte{
		0: randData(0, bs), 1: randData(100, bs), 3: nil, 5: nil, 6: randData(101, bs),
	})
	checkBlocks(t, srv.Path("@"+at1.String(), "bigfile", foid.String()), bs, map[int64][]byte{
		1: randData(1, bs), 4: randData(4, bs),
	})

	// at3: change block 4 (last changed at at1) and fill the hole 3
	m.touch(1)
	m.waitCached(t, "head block 1 read again", 1)
	db.WriteBlock("f", 4, randData(200, bs))
	db.WriteBlock("f", 3, randData(201, bs))
	at3 := db.Commit("at3")
	zh.waitTid(t, at3)
	if got := m.cachedState(t, 5); got != "F F F 0 0" {
		t.Errorf("head cache after at3 (blocks 3, 4 changed): %s, want F F F 0 0", got)
	}
	if c := rev1.cached(t, 4); c != rev1.pages() {
		t.Errorf("@at1: old block 4 (last changed at at1): %d of %d pages cached, want all", c, rev1.pages())
	}
	checkBlocks(t, headf, bs, map[int64][]byte{3: randData(201, bs), 4: randData(200, bs), 1: randData(100, bs)})
	checkBlocks(t, srv.Path("@"+at2.String(), "bigfile", foid.String()), bs, map[int64][]byte{
		1: randData(100, bs), 3: nil, 4: randData(4, bs), 6: randData(101, bs),
	})

	// re-opening keeps the cache
	m2 := mapFile(t, headf, 8*bs, bs)
	if got := m2.cachedState(t, 3); got != "F F F" {
		t.Errorf("head cache seen through a new mapping: %s, want F F F", got)
	}
	// (the cleanup unmaps, then stops the server and checks it exits)
}

// checkBlocks checks blocks of a file (nil: zeros).
func checkBlocks(t *testing.T, path string, bs int64, want map[int64][]byte) {
	t.Helper()
	for blk, data := range want {
		if data == nil {
			data = make([]byte, bs)
		}
		if got := pread(t, path, blk*bs, int(bs)); !bytes.Equal(got, data) {
			t.Errorf("%s: block %d differs (%d bytes read)", path, blk, len(got))
		}
	}
}
