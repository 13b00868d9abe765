// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"
)

// The client with the isolation protocol of a real server.

// refBlksize is the block size of tests that check which blocks get pinned
// (as the reference's tests): a page fault also reads around it (the
// kernel's mmap read-around), and the server pins the blocks of head/ that
// are read, so small blocks would get neighbours of what was read pinned.
const refBlksize = 2 << 20

func connect(t *testing.T, e *env, at zodb.Tid) *Conn {
	t.Helper()
	c, err := e.wc.Connect(context.Background(), at)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantPinned(t *testing.T, f *FileH, want map[int64]zodb.Tid) {
	t.Helper()
	got := f.Pinned()
	if len(got) != len(want) {
		t.Fatalf("pinned %v, want %v", got, want)
	}
	for blk, rev := range want {
		if got[blk] != rev {
			t.Fatalf("pinned %v, want %v", got, want)
		}
	}
}

// The reference's test_wcfs_client (spec 8.5) in Go.
func TestClient(t *testing.T) {
	t.Parallel()
	const bs = refBlksize
	e, at0 := newEnv(t, bs, 0)
	at1 := e.commit("c1", 2, 3)
	at2 := e.commit("c2", 2)

	c := connect(t, e, at1)
	f, err := c.Open(context.Background(), e.foid)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Mmap(2, 3)
	if err != nil {
		t.Fatal(err)
	}
	wantPinned(t, f, nil)
	checkBlk(t, m, 2, blkData(bs, "c1", 2))
	wantPinned(t, f, map[int64]zodb.Tid{2: at1})
	checkBlk(t, m, 3, blkData(bs, "c1", 3))
	checkBlk(t, m, 4, zeros(bs))
	wantPinned(t, f, map[int64]zodb.Tid{2: at1})

	at3 := e.commit("c3", 3, 4) // the file grows
	checkBlk(t, m, 2, blkData(bs, "c1", 2))
	checkBlk(t, m, 3, blkData(bs, "c1", 3))
	checkBlk(t, m, 4, zeros(bs))
	wantPinned(t, f, map[int64]zodb.Tid{2: at1, 3: at1})

	if err := c.Resync(context.Background(), at2); err != nil {
		t.Fatal(err)
	}
	wantPinned(t, f, map[int64]zodb.Tid{3: at1})
	checkBlk(t, m, 2, blkData(bs, "c2", 2))
	checkBlk(t, m, 3, blkData(bs, "c1", 3))
	checkBlk(t, m, 4, zeros(bs))
	wantPinned(t, f, map[int64]zodb.Tid{3: at1, 4: at0})

	if err := c.Resync(context.Background(), at3); err != nil {
		t.Fatal(err)
	}
	wantPinned(t, f, nil)
	checkBlk(t, m, 3, blkData(bs, "c3", 3))
	checkBlk(t, m, 4, blkData(bs, "c3", 4))

	err = c.Resync(context.Background(), at1)
	if err == nil || !strings.Contains(err.Error(), "going back in history is forbidden") {
		t.Fatalf("resync back: %v", err)
	}
	if _, err := c.Open(context.Background(), e.foid); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("open after failed resync: %v", err)
	}
	if all, _ := faults(m.Mem()); !all {
		t.Fatal("mapping does not fault after the Conn was closed")
	}
}

// openAcrossCommit opens zf in c, which is ahead of head/: it checks that
// the Open waits, commits blkv (tag), and returns the FileH.
func openAcrossCommit(t *testing.T, e *env, c *Conn, tag string, blkv ...int64) *FileH {
	t.Helper()
	opened := make(chan error, 1)
	var f *FileH
	go func() {
		var err error
		f, err = c.Open(context.Background(), e.foid)
		opened <- err
	}()
	select {
	case err := <-opened:
		t.Fatalf("open returned before head/ reached the Conn's at: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	e.commit(tag, blkv...)
	select {
	case err := <-opened:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("open did not return after the commit")
	}
	return f
}

// Open of a Conn ahead of head/ waits in the server for head/at >= at (the
// file exists), or polls head/at (the file comes with that commit).
func TestOpenAheadOfHead(t *testing.T) {
	t.Parallel()
	e, at0 := newEnv(t, testBlksize, 1)

	// at0+1: the next commit, whatever its tid, is after it; the data as
	// of at0+1 is that of at0
	c := connect(t, e, at0+1)
	f := openAcrossCommit(t, e, c, "v1", 0)
	m, err := f.Mmap(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkBlk(t, m, 0, blkData(testBlksize, "v0", 0))
	wantPinned(t, f, map[int64]zodb.Tid{0: at0})

	// a file created by a commit the server may not show yet
	foid2 := e.db.CreateFile("zf2", testBlksize, "")
	e.db.WriteBlock("zf2", 0, blkData(testBlksize, "z", 0))
	at2 := e.db.Commit("zf2")
	c2 := connect(t, e, at2)
	f2, err := c2.Open(context.Background(), foid2)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := f2.Mmap(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkBlk(t, m2, 0, blkData(testBlksize, "z", 0))
}

// Many goroutines read one mapping while commits and resyncs happen: every
// page read is the data as of the Conn's at at that moment (an at between
// the last resync begun before the read and the first resync ended after).
func TestConcurrentReadsCommitsResyncs(t *testing.T) {
	t.Parallel()
	const (
		nblk     = 8
		mapBlks  = 12 // 4 beyond EOF; the file grows into them
		nreaders = 8
		ncommit  = 12
	)
	e, at0 := newEnv(t, testBlksize, nblk)
	// history: tag of every block as of each revision ("" = zeros)
	type rev struct {
		at   zodb.Tid
		tags [mapBlks]string
	}
	var hist []rev
	var cur rev
	cur.at = at0
	for blk := range nblk {
		cur.tags[blk] = "v0"
	}
	hist = append(hist, cur)
	expect := func(at zodb.Tid, blk int64) []byte {
		var r *rev
		for i := range hist {
			if hist[i].at <= at {
				r = &hist[i]
			}
		}
		if r.tags[blk] == "" {
			return zeros(testBlksize)
		}
		return blkData(testBlksize, r.tags[blk], blk)
	}

	c := connect(t, e, at0)
	f, err := c.Open(context.Background(), e.foid)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Mmap(0, mapBlks)
	if err != nil {
		t.Fatal(err)
	}

	// window is [lo, hi]: the Conn's at is lo, or is moving from lo to hi
	var wmu sync.RWMutex
	lo, hi := at0, at0
	window := func() (zodb.Tid, zodb.Tid) { wmu.RLock(); defer wmu.RUnlock(); return lo, hi }
	var histMu sync.RWMutex

	var stop atomic.Bool
	var nread, npages atomic.Int64
	errc := make(chan error, nreaders)
	var wg sync.WaitGroup
	for i := range nreaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(uint64(i), 1))
			for !stop.Load() {
				blk := rnd.Int64N(mapBlks)
				lo1, _ := window()
				got := blkMem(m, blk)
				_, hi2 := window()
				histMu.RLock()
				for off := 0; off < len(got); off += pageSize {
					ok := false
					for _, r := range hist {
						if r.at >= lo1 && r.at <= hi2 && bytes.Equal(got[off:off+pageSize], expect(r.at, blk)[off:off+pageSize]) {
							ok = true
							break
						}
					}
					if !ok {
						histMu.RUnlock()
						errc <- fmt.Errorf("block #%d page %d: %q... is no data as of [@%s, @%s]",
							blk, off/pageSize, trunc(got[off:]), lo1, hi2)
						return
					}
					npages.Add(1)
				}
				histMu.RUnlock()
				nread.Add(1)
			}
		}()
	}

	rnd := rand.New(rand.NewPCG(42, 42))
	maxPinned := 0
	for i := 1; i <= ncommit; i++ {
		tag := fmt.Sprintf("v%d", i)
		var blks []int64
		for range 3 {
			blks = append(blks, rnd.Int64N(nblk+int64(i/3))) // grows by a block every 3 commits
		}
		at := e.commit(tag, blks...)
		histMu.Lock()
		next := hist[len(hist)-1]
		next.at = at
		for _, blk := range blks {
			next.tags[blk] = tag
		}
		hist = append(hist, next)
		histMu.Unlock()
		time.Sleep(20 * time.Millisecond) // readers see the Conn behind head
		maxPinned = max(maxPinned, len(f.Pinned()))

		if i%3 == 0 || i == ncommit {
			// resync, sometimes not to head (pins to older revisions)
			target := at
			if i%2 == 1 && i != ncommit {
				target = hist[len(hist)-2].at
			}
			wmu.Lock()
			hi = target
			wmu.Unlock()
			if err := c.Resync(context.Background(), target); err != nil {
				t.Fatal(err)
			}
			wmu.Lock()
			lo = target
			wmu.Unlock()
		}
		select {
		case err := <-errc:
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		default:
		}
	}
	time.Sleep(50 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	// at head at the end: no pin
	wantPinned(t, f, nil)
	for blk := range int64(mapBlks) {
		checkBlk(t, m, blk, expect(c.At(), blk))
	}
	if maxPinned == 0 {
		t.Fatal("no block was ever pinned: the test did not exercise pins")
	}
	t.Logf("%d block reads (%d pages) by %d goroutines over %d commits; up to %d blocks pinned",
		nread.Load(), npages.Load(), nreaders, ncommit, maxPinned)
}

// When the server dies, the Conn goes down: its mappings fault (nothing
// keeps them isolated any more) and calls say why.
func TestServerDies(t *testing.T) {
	t.Parallel()
	e, at0 := newEnv(t, testBlksize, 2)
	c := connect(t, e, at0)
	f, err := c.Open(context.Background(), e.foid)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Mmap(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkBlk(t, m, 0, blkData(testBlksize, "v0", 0))
	if err := e.srv.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-e.srv.Exited()
	// the Conn leaves the WCFS last when it closes, after its mappings
	// fault (closed is set first: polling it would race with the efault)
	deadline := time.Now().Add(time.Minute)
	for hasConn(e.wc, c) {
		if time.Now().After(deadline) {
			t.Fatal("the Conn is not closed a minute after its server died")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if all, _ := faults(m.Mem()); !all {
		t.Fatal("mapping does not fault after the server died")
	}
	_, err = c.Open(context.Background(), e.foid)
	if !errors.Is(err, ErrConnClosed) || !strings.Contains(err.Error(), "pinner: ") {
		t.Fatalf("open after the server died: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// nothing of the client holds the dead mount: it unmounts (not lazily)
	if err := unix.Unmount(e.srv.Mnt, 0); err != nil {
		t.Fatalf("unmount the dead server's mount after Conn.Close: %v", err)
	}
}

// Opens and closes of a file race with resyncs and commits: a resync never
// watches a file being closed (a pin for it would be unexpected: nak, and
// the server kills the process), and the Conn stays up.
func TestOpenCloseVsResync(t *testing.T) {
	t.Parallel()
	e, _ := newEnv(t, testBlksize, 2)
	foid2 := e.db.CreateFile("zf2", testBlksize, "")
	e.db.WriteBlock("zf2", 0, blkData(testBlksize, "w0", 0))
	at := e.commit("v1", 0)
	c := connect(t, e, at)

	var stop atomic.Bool
	done := make(chan error, 1)
	var nopen atomic.Int64
	go func() {
		buf := make([]byte, testBlksize)
		for !stop.Load() {
			f, err := c.Open(context.Background(), foid2)
			if err != nil {
				done <- err
				return
			}
			m, err := f.Mmap(0, 2)
			if err == nil {
				_, err = m.ReadAt(buf, 0)
			}
			if err != nil {
				done <- err
				return
			}
			if err := f.Close(); err != nil {
				done <- err
				return
			}
			nopen.Add(1)
		}
		done <- nil
	}()
	for i := range 10 {
		e.db.WriteBlock("zf2", 0, blkData(testBlksize, fmt.Sprintf("w%d", i+1), 0))
		at = e.commit(fmt.Sprintf("v%d", i+2), 1)
		if err := c.Resync(context.Background(), at); err != nil {
			stop.Store(true)
			<-done
			t.Fatal(err)
		}
	}
	stop.Store(true)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c.isClosed() || nopen.Load() == 0 {
		t.Fatalf("closed %v after %d opens", c.isClosed(), nopen.Load())
	}
}

// cancelledOpen opens foid with a ctx that ends while the server waits for
// head/ to reach the Conn's at.
func cancelledOpen(t *testing.T, c *Conn, foid zodb.Oid) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if f, err := c.Open(ctx, foid); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("open ahead of head with a ctx that ends: %v, %v", f, err)
	}
}

// waitWatches waits until the server counts n watches.
func waitWatches(t *testing.T, e *env, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := serverStats(t, e)["Watch"]
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server counts %d watches, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An Open whose ctx ends while the server waits for head/ to reach the
// Conn's at leaves no watch behind: the server sets the watch up once head/
// gets there all the same, and the client stops it (a pin for it would be
// unexpected: nak, and the server would kill the process; the watch would
// also hold back the server's history). An Open of the file meanwhile waits
// for that, then sets a watch up of its own.
func TestOpenCancelled(t *testing.T) {
	t.Parallel()
	e, at0 := newEnv(t, testBlksize, 1)

	// no Open after it: the watch goes once head/ is there
	c := connect(t, e, at0+1)
	cancelledOpen(t, c, e.foid)
	at1 := e.commit("v1", 0)
	waitWatches(t, e, 0)
	// the server counts the watch gone before it answers "watch -": the
	// FileH leaves the Conn when the answer is in
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		nfiles := len(c.files)
		c.mu.Unlock()
		if nfiles == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d files in the Conn after a failed open was unwatched", nfiles)
		}
	}
	f, err := c.Open(context.Background(), e.foid)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Mmap(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkBlk(t, m, 0, blkData(testBlksize, "v0", 0))
	wantPinned(t, f, map[int64]zodb.Tid{0: at0})
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// an Open meanwhile
	c2 := connect(t, e, at1+1)
	cancelledOpen(t, c2, e.foid)
	f2 := openAcrossCommit(t, e, c2, "v2", 0)
	if n := serverStats(t, e)["Watch"]; n != 1 {
		t.Fatalf("the server counts %d watches, want that of the second open", n)
	}
	m2, err := f2.Mmap(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkBlk(t, m2, 0, blkData(testBlksize, "v1", 0))
	wantPinned(t, f2, map[int64]zodb.Tid{0: at1})
	if err := f2.Close(); err != nil {
		t.Fatal(err)
	}
	if n := serverStats(t, e)["Watch"]; n != 0 {
		t.Fatalf("the server counts %d watches after the last close", n)
	}
}

// The pins of the watch a cancelled Open leaves for a while (the setup the
// server completes once head/ reaches at, reads through head/ meanwhile)
// are acknowledged, as for a file being closed: nobody gets killed. The
// client is another process (the server would kill it on a nak).
func TestOpenCancelledPins(t *testing.T) {
	t.Parallel()
	e, at0 := newEnv(t, testBlksize, 1)
	head := e.srv.Path("head", "bigfile", e.foid.String())
	readHead := func(tag string) {
		t.Helper()
		data, err := os.ReadFile(head)
		if err != nil {
			t.Fatal(err)
		}
		if want := blkData(testBlksize, tag, 0); !bytes.Equal(data, want) {
			t.Fatalf("head/: %q..., want %q...", trunc(data), trunc(want))
		}
	}
	readHead("v0") // the server tracks block 0: a watch behind gets it pinned

	h := startHelper(t, "open-cancel", e.srv.Mnt, e.foid, at0+1)
	h.expect("cancelled")
	e.commit("v1", 0)
	readHead("v1")
	h.send("open")
	got := h.expect("opened")
	want := []string{strconv.Quote(string(blkData(testBlksize, "v0", 0)[:16])), fmt.Sprint(map[int64]zodb.Tid{0: at0})}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("helper: opened %q, want %q", got, want)
	}
	if err := h.wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if n := serverStats(t, e)["pinkill"]; n != 0 || strings.Contains(e.srv.Log(), "killing") {
		t.Fatalf("the server killed a client (pinkill %d):\n%s", n, e.srv.Log())
	}
}

// helperOpenCancelled ("open-cancel MOUNTPOINT FOID AT") connects at AT,
// ahead of head/, and opens FOID with a ctx that ends first; it prints
// "cancelled", and once it reads a line, opens FOID again and prints
// "opened <the first 16 bytes of block 0, quoted> <pins>", then waits for
// its stdin to close.
func helperOpenCancelled(argv []string) error {
	mnt, foid, at, _, err := helperArgs(argv, 0)
	if err != nil {
		return err
	}
	bg := context.Background()
	c, err := New(mnt).Connect(bg, at)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(bg, 200*time.Millisecond)
	_, err = c.Open(ctx, foid)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("open ahead of head with a ctx that ends: %v", err)
	}
	fmt.Println("cancelled")
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return err
	}
	f, err := c.Open(bg, foid)
	if err != nil {
		return err
	}
	m, err := f.Mmap(0, 1)
	if err != nil {
		return err
	}
	buf := make([]byte, 16)
	if _, err := m.ReadAt(buf, 0); err != nil {
		return err
	}
	fmt.Printf("opened %q %v\n", buf, f.Pinned())
	io.Copy(io.Discard, in)
	return nil
}

// OpenWatchLink and Connect honour their ctx (the mount is not touched).
func TestOpenWatchLinkCtx(t *testing.T) {
	t.Parallel()
	wc := New(t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := wc.OpenWatchLink(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("OpenWatchLink with a cancelled ctx: %v", err)
	}
	if _, err := wc.Connect(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Connect with a cancelled ctx: %v", err)
	}
}

// Open of an oid that is no ZBigFile says why, not only "invalid argument"
// (the server's reason, through the watch link), and leaves no watch.
func TestOpenNotZBigFile(t *testing.T) {
	t.Parallel()
	e, at := newEnv(t, testBlksize, 1)
	c := connect(t, e, at)
	for _, tc := range []struct {
		what   string
		foid   zodb.Oid
		reason string
	}{
		{"a missing object", 0xdeadbeef, fmt.Sprintf("invalid argument: no such object as of @%s", at)},
		{"the root object", 0, "invalid argument: not a ZBigFile: class persistent.mapping.PersistentMapping"},
	} {
		_, err := c.Open(context.Background(), tc.foid)
		if err == nil || !errors.Is(err, unix.EINVAL) || !strings.HasSuffix(err.Error(), tc.reason) {
			t.Errorf("open of %s: %v; want EINVAL ending with %q", tc.what, err, tc.reason)
		}
	}
	f, err := c.Open(context.Background(), e.foid)
	if err != nil {
		t.Fatal(err)
	}
	if st := serverStats(t, e); st["Watch"] != 1 {
		t.Errorf("watches after two failed opens and one open: %d, want 1", st["Watch"])
	}
	f.Close()
}
