// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/testproc"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// commitScript commits with genuine ZODB, one transaction per line of
// stdin, changes of root['f']: "blk" gives block blk random data, "lo hi
// ver" gives blocks [lo, hi) the content stampBlock(ver, blk) (a few bytes,
// zero-padded by readers: big commits of small records). It answers every
// commit with its tid and the time the commit reached the storage file: when
// FileStorage has flushed the transaction's final status (from then on any
// reader of the file sees it; FileStorage then fsyncs and ZODB runs
// invalidations and hooks before commit() returns). CLOCK_MONOTONIC.
const commitScript = `
import os, sys, time, transaction, ZODB, ZODB.FileStorage
stor = ZODB.FileStorage.FileStorage(sys.argv[1])
conn = ZODB.DB(stor, cache_size=1000).open()
zf = conn.root()['f']
end = []
finish_finish = stor._finish_finish
def _finish_finish(tid):
    stor._file.flush()
    end.append(time.clock_gettime(time.CLOCK_MONOTONIC))
    finish_finish(tid)
stor._finish_finish = _finish_finish
for line in sys.stdin:
    args = [int(x) for x in line.split()]
    if len(args) == 1:
        zf.storeblk(args[0], os.urandom(zf.blksize))
    else:
        lo, hi, ver = args
        for blk in range(lo, hi):
            zf.storeblk(blk, b'%d.%d' % (ver, blk))
    del end[:]
    transaction.commit()
    conn.cacheMinimize()
    print(stor.lastTransaction().hex(), repr(end[0]), flush=True)
`

// stampBlock is the content commitScript gives block blk at version
// ver (bs bytes).
func stampBlock(ver int, blk int64, bs int64) []byte {
	b := make([]byte, bs)
	copy(b, strconv.Itoa(ver)+"."+strconv.FormatInt(blk, 10))
	return b
}

// committer runs commitScript on a FileStorage whose root['f'] is a
// ZBigFile (nobody else may have the storage open for writing).
type committer struct {
	stdin   io.WriteCloser
	replies *bufio.Scanner
}

func startCommitter(tb testing.TB, path string) *committer {
	tb.Helper()
	py := testdb.Command(tb) // python with the toolkit on PYTHONPATH
	py.Args = []string{py.Args[0], "-c", commitScript, path}
	stdin, err := py.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := py.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	py.Stderr = os.Stderr
	if err := py.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close() // EOF: the script ends
		py.Wait()
	})
	return &committer{stdin: stdin, replies: bufio.NewScanner(stdout)}
}

// commit gives blocks [lo, hi) the content of version ver in one
// transaction and returns its tid and when it reached the storage file
// (CLOCK_MONOTONIC).
func (c *committer) commit(tb testing.TB, lo, hi int64, ver int) (zodb.Tid, time.Duration) {
	tb.Helper()
	return c.send(tb, fmt.Sprintf("%d %d %d", lo, hi, ver))
}

// send sends a line of commitScript and returns the commit's tid and when
// it reached the storage file (CLOCK_MONOTONIC).
func (c *committer) send(tb testing.TB, line string) (zodb.Tid, time.Duration) {
	tb.Helper()
	fmt.Fprintln(c.stdin, line)
	if !c.replies.Scan() {
		tb.Fatalf("committer: %v", c.replies.Err())
	}
	var tidHex string
	var end float64
	if _, err := fmt.Sscan(c.replies.Text(), &tidHex, &end); err != nil {
		tb.Fatalf("committer said %q: %v", c.replies.Text(), err)
	}
	tid, err := zodb.ParseTid(tidHex)
	if err != nil {
		tb.Fatal(err)
	}
	return tid, time.Duration(end * 1e9)
}

// procSampler samples a process's thread count and private memory
// (RssAnon) from /proc until stopped, and keeps the maxima.
type procSampler struct {
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	maxThreads int
	maxAnon    uint64 // bytes
	err        error
}

func sampleProc(tb testing.TB, pid int) *procSampler {
	tb.Helper()
	p, err := procfs.NewProc(pid)
	if err != nil {
		tb.Fatal(err)
	}
	s := &procSampler{stop: make(chan struct{}), done: make(chan struct{})}
	sample := func() bool {
		st, err := p.Stat()
		if err == nil {
			var status procfs.ProcStatus
			status, err = p.NewStatus()
			if err == nil {
				s.mu.Lock()
				s.maxThreads = max(s.maxThreads, st.NumThreads)
				s.maxAnon = max(s.maxAnon, status.RssAnon)
				s.mu.Unlock()
				return true
			}
		}
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		return false
	}
	if !sample() {
		tb.Fatal(s.err)
	}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-tick.C:
				if !sample() {
					return
				}
			}
		}
	}()
	tb.Cleanup(func() { s.end() })
	return s
}

// end stops sampling and returns the maxima.
func (s *procSampler) end() (threads int, anon uint64, err error) {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxThreads, s.maxAnon, s.err
}

// residency returns, for each page of mem, whether it is in the page cache.
func residency(tb testing.TB, mem []byte) []bool {
	tb.Helper()
	vec := make([]byte, (len(mem)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		tb.Fatal("mincore:", e)
	}
	in := make([]bool, len(vec))
	for i, v := range vec {
		in[i] = v&1 != 0
	}
	return in
}

// checkStamps reads path sequentially and checks that block blk has the
// content stampBlock(ver(blk), blk).
func checkStamps(tb testing.TB, path string, bs, nblk int64, ver func(blk int64) int) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	buf := make([]byte, bs)
	bad := 0
	for blk := int64(0); blk < nblk; blk++ {
		if _, err := io.ReadFull(r, buf); err != nil {
			tb.Fatalf("%s: block %d: %v", path, blk, err)
		}
		if want := stampBlock(ver(blk), blk, bs); !bytes.Equal(buf, want) {
			if bad++; bad <= 3 {
				tb.Errorf("%s: block %d: got %q..., want %q...", path, blk, bytes.TrimRight(buf[:32], "\x00"), bytes.TrimRight(want[:32], "\x00"))
			}
		}
	}
	if n, _ := r.Read(buf); n != 0 {
		tb.Errorf("%s: more than %d blocks", path, nblk)
	}
	if bad > 3 {
		tb.Errorf("%s: %d blocks differ", path, bad)
	}
}

// keptRe matches the server's -v=1 line about a processed commit.
var keptRe = regexp.MustCompile(`@([0-9a-f]{16}) processed in \S+ \(\d+ objects changed; (\d+) blocks changed, (\d+) kept in @<rev>/\)`)

// keptBlocks returns, from the server's log, how many changed blocks the
// processing of commit tid reported and how many of them it kept in
// @<rev>/ (-1, -1: no such line). The line comes right after the zhead
// stream said tid: it is waited for a while.
func keptBlocks(srv *wcfstest.Server, tid zodb.Tid) (changed, kept int) {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, m := range keptRe.FindAllStringSubmatch(srv.Log(), -1) {
			if m[1] == tid.String() {
				changed, _ = strconv.Atoi(m[2])
				kept, _ = strconv.Atoi(m[3])
				return changed, kept
			}
		}
	}
	return -1, -1
}

// bigFileTest is a server over a FileStorage whose root['f'] has nblk
// blocks of 4 KiB (stampBlock version 1, committed at at1), read through
// the mount, its first mapped blocks mapped: they stay cached (mapped pages
// are not evicted, see mapping.waitCached).
type bigFileTest struct {
	zc   *committer
	srv  *wcfstest.Server
	zh   *zheadStream
	foid zodb.Oid
	at1  zodb.Tid
	mem  []byte
}

const bigBlksize = 4 << 10

func newBigFileTest(t *testing.T, nblk, mapped int64) *bigFileTest {
	t.Helper()
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	bt := &bigFileTest{foid: db.CreateFile("f", bigBlksize, testdb.ZBlk0)}
	db.Commit("init")
	db.Close()
	bt.zc = startCommitter(t, db.Path())
	bt.at1, _ = bt.zc.commit(t, 0, nblk, 1)

	bt.srv = wcfstest.Start(t, db.ZURL(), "-debug", "-v=1")
	bt.zh = openZhead(t, bt.srv)
	checkStamps(t, bt.head(), bigBlksize, nblk, func(int64) int { return 1 })
	f, err := os.Open(bt.head())
	if err != nil {
		t.Fatal(err)
	}
	bt.mem, err = unix.Mmap(int(f.Fd()), 0, int(mapped*bigBlksize), unix.PROT_READ, unix.MAP_SHARED)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	mem := bt.mem
	t.Cleanup(func() { unix.Munmap(mem) })
	for off := 0; off < len(mem); off += os.Getpagesize() {
		sink.Add(uint64(mem[off]))
	}
	for blk, in := range residency(t, mem) {
		if !in {
			t.Fatalf("head block %d not cached after reading and mapping the file", blk)
		}
	}
	return bt
}

func (bt *bigFileTest) head() string { return bt.srv.Path("head", "bigfile", bt.foid.String()) }

// bounded runs f while sampling the server, and checks that its thread
// count stayed at most 100 and its private memory did not grow by more
// than maxGrowth (the race detector's shadow memory at least doubles what
// the heap takes: 4 times maxGrowth under -race).
func (bt *bigFileTest) bounded(t *testing.T, what string, maxGrowth int64, f func()) {
	t.Helper()
	ps := sampleProc(t, bt.srv.PID)
	_, anon0, err := ps.end()
	if err != nil {
		t.Fatal(err)
	}
	ps = sampleProc(t, bt.srv.PID)
	f()
	threads, anon, err := ps.end()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server during %s: at most %d threads, RssAnon %d MiB (%d MiB before)", what, threads, anon>>20, anon0>>20)
	// a thread per block was the failure; the bound leaves room for the
	// race detector's and go-fuse's own threads
	if threads > 100 {
		t.Errorf("server had %d threads during %s, want <= 100", threads, what)
	}
	if wcfstest.Race {
		maxGrowth *= 4
	}
	if grown := int64(anon) - int64(anon0); grown > maxGrowth {
		t.Errorf("server's private memory grew by %d MiB during %s, want <= %d MiB", grown>>20, what, maxGrowth>>20)
	}
}

// One commit changing 50,000 cached blocks (4 KiB, small records): the
// server's thread count and private memory stay bounded (sampled from
// /proc during the commit; the server is built with -race under `go test
// -race`), every changed block leaves the head file's page cache and every
// unchanged one stays, head/ has the new data, @<rev>/ the old, and all the
// old blocks were kept in @<rev>/'s page cache.
//
// Before bounding the page cache work of a commit, the server started a
// goroutine per changed block, each blocking in a syscall: 1,600 threads
// and 7 GB of private memory for this commit under -race; a plain server
// died of thread exhaustion (10,000 threads) with 15,000 blocks.
func TestCommitManyBlocks(t *testing.T) {
	t.Parallel()
	const nblk, changed = 60000, 50000
	bt := newBigFileTest(t, nblk, nblk)
	var at2 zodb.Tid
	// the old data alone is 195 MiB: it must not be held at once
	bt.bounded(t, fmt.Sprintf("a commit changing %d blocks", changed), 96<<20, func() {
		at2, _ = bt.zc.commit(t, 0, changed, 2)
		bt.zh.waitTid(t, at2)
	})

	in := residency(t, bt.mem)
	var stale, dropped int
	for blk := int64(0); blk < nblk; blk++ {
		switch {
		case blk < changed && in[blk]:
			stale++
		case blk >= changed && !in[blk]:
			dropped++
		}
	}
	if stale != 0 || dropped != 0 {
		t.Errorf("head cache after the commit: %d changed blocks still cached, %d unchanged blocks dropped; want 0, 0", stale, dropped)
	}
	if nc, kept := keptBlocks(bt.srv, at2); nc != changed || kept != changed {
		t.Errorf("server log: @%s: %d blocks changed, %d kept in @<rev>/; want %d, %d", at2, nc, kept, changed, changed)
	}
	checkStamps(t, bt.head(), bigBlksize, nblk, func(blk int64) int {
		if blk < changed {
			return 2
		}
		return 1
	})
	checkStamps(t, bt.srv.Path("@"+bt.at1.String(), "bigfile", bt.foid.String()), bigBlksize, nblk, func(int64) int { return 1 })
}

// A watch set up behind a commit that changed 10,000 tracked blocks: the
// setup pins every one of them to the revision before the commit, with
// bounded resources. Before pins were bounded (pinFanout), the server sent
// them all at once, a goroutine each.
func TestWatchManyPins(t *testing.T) {
	t.Parallel()
	const nblk = 10000
	bt := newBigFileTest(t, nblk, nblk)
	at2, _ := bt.zc.commit(t, 0, nblk, 2)
	bt.zh.waitTid(t, at2)

	tl := openLink(t, bt.srv)
	bt.bounded(t, fmt.Sprintf("a watch setup pinning %d blocks", nblk), 16<<20, func() {
		if err := tl.watch(bt.foid, bt.at1); err != nil {
			t.Fatalf("watch @%s: %v", bt.at1, err)
		}
	})
	tl.mu.Lock()
	pinned := tl.pinned[bt.foid]
	wrong := 0
	for _, rev := range pinned {
		if rev != bt.at1 {
			wrong++
		}
	}
	npinned := len(pinned)
	tl.mu.Unlock()
	if npinned != nblk || wrong != 0 {
		t.Errorf("watch @%s: %d blocks pinned, %d not to @%[1]s; want %d, 0", bt.at1, npinned, wrong, nblk)
	}
}

// A block evicted from the page cache and read again while a commit that
// changed it keeps old data in @<rev>/: what the commit retrieves from the
// page cache after the read is new data, and must not be kept as the old.
// (The block is the last of 20,000 changed blocks: the commit retrieves it
// last, with head reads running at the new revision.)
func TestCommitPreserveReadRace(t *testing.T) {
	t.Parallel()
	const nblk = 20001
	const b = nblk - 1 // not mapped: it can be evicted
	bt := newBigFileTest(t, nblk, nblk-1)

	// evict b and read it again, over and over, until it reads the new
	// data (in phase 2 of the commit: reads wait during phase 1); then it
	// stays cached
	fd, err := unix.Open(bt.head(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.Fadvise(fd, 0, 0, unix.FADV_RANDOM)
	newData := make(chan int, 1)
	go func() {
		buf := make([]byte, bigBlksize)
		for n := 1; ; n++ {
			unix.Fadvise(fd, b*bigBlksize, bigBlksize, unix.FADV_DONTNEED)
			_, err := unix.Pread(fd, buf, b*bigBlksize)
			if err != nil || bytes.Equal(buf, stampBlock(2, b, bigBlksize)) {
				newData <- n
				return
			}
		}
	}()
	at2, _ := bt.zc.commit(t, 0, nblk, 2)
	bt.zh.waitTid(t, at2)
	t.Logf("block %d read %d times until it had the new data", b, <-newData)

	if got, want := readBlk(t, bt.head(), b, bigBlksize), stampBlock(2, b, bigBlksize); !bytes.Equal(got, want) {
		t.Errorf("head/: block %d: got %q..., want %q...", b, bytes.TrimRight(got[:32], "\x00"), bytes.TrimRight(want[:32], "\x00"))
	}
	at1f := bt.srv.Path("@"+bt.at1.String(), "bigfile", bt.foid.String())
	for _, blk := range []int64{0, b - 1, b} {
		if got, want := readBlk(t, at1f, blk, bigBlksize), stampBlock(1, blk, bigBlksize); !bytes.Equal(got, want) {
			t.Errorf("@%s: block %d: got %q..., want %q...", bt.at1, blk, bytes.TrimRight(got[:32], "\x00"), bytes.TrimRight(want[:32], "\x00"))
		}
	}
}

// One commit changing cached blocks of files with blocks of 4 KiB (100
// separate runs) and 2 MiB: the workers keeping old data handle both sizes
// (a worker's buffer holds the largest run), and every old block is kept.
func TestCommitMixedBlksize(t *testing.T) {
	t.Parallel()
	const bsA, nA = 4 << 10, 200
	const bsB, nB = 2 << 20, 2
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	oidA := db.CreateFile("a", bsA, testdb.ZBlk0) // runs of "a" come first
	oidB := db.CreateFile("b", bsB, testdb.ZBlk0)
	for blk := int64(0); blk < nA; blk++ {
		db.WriteBlock("a", blk, randData(blk, bsA))
	}
	for blk := int64(0); blk < nB; blk++ {
		db.WriteBlock("b", blk, randData(1000+blk, bsB))
	}
	at1 := db.Commit("at1")

	srv := wcfstest.Start(t, db.ZURL(), "-debug", "-v=1")
	zh := openZhead(t, srv)
	pathA := srv.Path("head", "bigfile", oidA.String())
	pathB := srv.Path("head", "bigfile", oidB.String())
	mA, mB := mapFile(t, pathA, nA*bsA, bsA), mapFile(t, pathB, nB*bsB, bsB)
	all := func(n int64) []int64 {
		v := make([]int64, n)
		for i := range v {
			v[i] = int64(i)
		}
		return v
	}
	readFile(t, pathA)
	readFile(t, pathB)
	mA.waitCached(t, "a", all(nA)...)
	mB.waitCached(t, "b", all(nB)...)

	for blk := int64(0); blk < nA; blk += 2 {
		db.WriteBlock("a", blk, randData(2000+blk, bsA))
	}
	for blk := int64(0); blk < nB; blk++ {
		db.WriteBlock("b", blk, randData(3000+blk, bsB))
	}
	at2 := db.Commit("at2")
	zh.waitTid(t, at2)
	if nc, kept := keptBlocks(srv, at2); nc != nA/2+nB || kept != nc {
		t.Errorf("server log: @%s: %d blocks changed, %d kept in @<rev>/; want %d, %d", at2, nc, kept, nA/2+nB, nA/2+nB)
	}
	revA := srv.Path("@"+at1.String(), "bigfile", oidA.String())
	revB := srv.Path("@"+at1.String(), "bigfile", oidB.String())
	checkBlocks(t, revA, bsA, map[int64][]byte{0: randData(0, bsA), 1: randData(1, bsA), nA - 2: randData(nA-2, bsA)})
	checkBlocks(t, revB, bsB, map[int64][]byte{0: randData(1000, bsB), 1: randData(1001, bsB)})
	checkBlocks(t, pathA, bsA, map[int64][]byte{0: randData(2000, bsA), 1: randData(1, bsA)})
	checkBlocks(t, pathB, bsB, map[int64][]byte{0: randData(3000, bsB), 1: randData(3001, bsB)})
}

// waitVisible waits until srv says it processed tid (the zhead stream);
// false if the server died first or did not get there within timeout (a
// crashed or hung server may leave its mount hung: Kill it).
func waitVisible(tb testing.TB, zh *zheadStream, srv *wcfstest.Server, tid zodb.Tid, timeout time.Duration) (zheadEvent, bool) {
	tb.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-zh.tids:
			if !ok {
				return zheadEvent{}, false
			}
			if ev.tid == tid {
				return ev, true
			}
			if ev.tid > tid {
				tb.Fatalf("zhead: got @%s, expected @%s first", ev.tid, tid)
			}
		case <-tick.C:
			if !testproc.Alive(srv.PID) {
				return zheadEvent{}, false
			}
		case <-deadline:
			return zheadEvent{}, false
		}
	}
}

// bigCommitBench is one kind of server serving the commits of
// BenchmarkCommitBig: ours, or the reference (other: no sd_notify, no
// signal handlers, may crash or hang on big commits).
type bigCommitBench struct {
	zurl  string
	foid  zodb.Oid
	other string // the reference's binary, "" for ours

	srv *wcfstest.Server
	zh  *zheadStream
	mem []byte // the head file, mapped

	lat     []time.Duration // commit -> visible
	threads int             // max during commits
	anon    uint64          // max RssAnon during commits
	crashes int             // commits the server did not survive (crashed or hung)
}

// commit makes the whole head file cached and mapped, commits a change of
// blocks [0, k) and measures it.
func (s *bigCommitBench) commit(b *testing.B, zc *committer, k int64, ver int) {
	b.StopTimer()
	if s.srv == nil {
		if s.other == "" {
			s.srv = wcfstest.Start(b, s.zurl, benchArgs("-debug")...)
		} else {
			srv, err := wcfstest.StartOther(b, s.other, s.zurl, "-debug")
			if err != nil {
				b.Fatal(err)
			}
			s.srv = srv
		}
		s.zh = openZhead(b, s.srv)
		b.Cleanup(func() { s.stop(b) }) // before the server's own cleanup
	}
	headf := s.srv.Path("head", "bigfile", s.foid.String())
	if s.mem == nil {
		f, err := os.Open(headf)
		if err != nil {
			b.Fatal(err)
		}
		st, err := f.Stat()
		if err == nil {
			s.mem, err = unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
		}
		f.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	for try := 0; ; try++ {
		readSeq(b, headf, seqBuf) // big reads fill the cache faster than faults
		for off := 0; off < len(s.mem); off += os.Getpagesize() {
			sink.Add(uint64(s.mem[off]))
		}
		missing := 0
		for _, in := range residency(b, s.mem) {
			if !in {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if try == 3 {
			b.Fatalf("%d pages of the head file not cached after reading it", missing)
		}
	}

	timeout := 10 * time.Minute
	if s.other != "" {
		timeout = 3 * time.Minute // it hangs (threads in D state on its own mount)
	}
	ps := sampleProc(b, s.srv.PID)
	b.StartTimer()
	tid, end := zc.commit(b, 0, k, ver)
	ev, ok := waitVisible(b, s.zh, s.srv, tid, timeout)
	b.StopTimer()
	threads, anon, _ := ps.end()
	s.threads, s.anon = max(s.threads, threads), max(s.anon, anon)
	switch {
	case ok:
		s.lat = append(s.lat, ev.mono-end)
	case s.other == "":
		b.Fatalf("server (pid %d) did not process @%s (%d blocks changed)", s.srv.PID, tid, k)
	default:
		s.crashes++
		s.srv.Kill(b) // aborts the connection
		b.Logf("reference (pid %d) did not process @%s (%d blocks changed): %s", s.srv.PID, tid, k, crashReason(s.srv.Log()))
		s.stop(b)
	}
	b.StartTimer()
}

// crashReason returns the lines of a Go program's log that say why it died
// (a crashed server's log is mostly its goroutines), or "hung".
func crashReason(log string) string {
	var why []string
	for _, line := range strings.Split(log, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "fatal error:") || strings.HasPrefix(line, "runtime: program exceeds") ||
			strings.HasPrefix(line, "panic:") || strings.Contains(line, "too many open files") {
			if !slices.Contains(why, line) && len(why) < 3 {
				why = append(why, line)
			}
		}
	}
	if len(why) == 0 {
		return "hung, killed"
	}
	return strings.Join(why, "; ")
}

// stop releases the mount and stops the server.
func (s *bigCommitBench) stop(b *testing.B) {
	if s.srv == nil {
		return
	}
	var err error
	if s.other != "" {
		// The reference has no signal handlers: SIGTERM would leave the
		// mount behind. The zhead stream's read keeps the mount busy until
		// a commit comes (and a close waits for a hung server's FLUSH):
		// abort the connection first, unmount, then terminate it (it does
		// not exit when its mount goes away).
		err = s.srv.Abort()
	}
	if s.mem != nil {
		unix.Munmap(s.mem)
	}
	s.zh.close()
	if s.other == "" {
		err = s.srv.Stop()
	}
	for try := 0; s.other != "" && err == nil; try++ {
		// EBUSY until the stream's read has returned
		if err = unix.Unmount(s.srv.Mnt, 0); err != unix.EBUSY || try == 500 {
			if err == unix.EINVAL { // not mounted (any more)
				err = nil
			}
			if err == nil {
				s.srv.Signal(syscall.SIGTERM)
				_, err = s.srv.WaitExit(wcfstest.StopTimeout)
			}
			break
		}
		err = nil
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		b.Error(err)
	}
	s.srv, s.zh, s.mem = nil, nil, nil
}

// report adds s's figures to b's metrics.
func (s *bigCommitBench) report(b *testing.B, k int64) {
	b.ReportMetric(0, "ns/op")
	if len(s.lat) > 0 {
		d := slices.Clone(s.lat)
		slices.Sort(d)
		p50 := d[len(d)/2]
		b.ReportMetric(float64(p50.Microseconds())/1e3, "p50-ms")
		b.ReportMetric(float64(d[len(d)-1].Microseconds())/1e3, "max-ms")
		b.ReportMetric(float64(p50.Nanoseconds())/1e3/float64(k), "µs/blk")
	}
	b.ReportMetric(float64(s.threads), "threads")
	b.ReportMetric(float64(s.anon>>20), "anon-MiB")
	b.ReportMetric(float64(s.crashes), "crashes")
}

// BenchmarkCommitBig: a genuine ZODB commit changing K cached blocks (of a
// file of 100,000 blocks of 4 KiB, read through the mount and kept mapped)
// until head/at shows it (the .wcfs/debug/zhead stream, as in
// CommitVisible), for K = 1, 100, 10,000, 100,000, with the server's
// threads and private memory (RssAnon) sampled from /proc during each
// commit (maxima over the commits). With $WCFS_BENCH_REF set to the
// reference server's binary (wcfs.orig), "ref" runs the same commits
// through it after ours ("wcfs"), in the same run: a reference that dies or
// hangs (3 minutes) is counted in crashes, its mount aborted, and a new one
// serves the next commit.
//
//	WCFS_BENCH_REF=/path/to/wcfs.orig go test -run=NONE -bench=CommitBig -benchtime=20x ./gocore/server
func BenchmarkCommitBig(b *testing.B) {
	const bs, nblk = 4 << 10, 100000
	db := testdb.Create(b, filepath.Join(b.TempDir(), "1.fs"))
	foid := db.CreateFile("f", bs, testdb.ZBlk0)
	db.Commit("init")
	db.Close()
	zc := startCommitter(b, db.Path())
	zc.commit(b, 0, nblk, 0)
	ver := 0
	kinds := []struct{ name, other string }{{"wcfs", ""}}
	if ref := os.Getenv("WCFS_BENCH_REF"); ref != "" {
		kinds = append(kinds, struct{ name, other string }{"ref", ref})
	}
	for _, k := range []int64{1, 100, 10000, 100000} {
		b.Run(fmt.Sprintf("K=%d", k), func(b *testing.B) {
			for _, kind := range kinds {
				b.Run(kind.name, func(b *testing.B) {
					s := &bigCommitBench{zurl: db.ZURL(), foid: foid, other: kind.other}
					for b.Loop() {
						ver++
						s.commit(b, zc, k, ver)
					}
					s.stop(b) // it would follow the next server's commits
					s.report(b, k)
				})
			}
		})
	}
}
