// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package e2e

// The data path over distributed storage through the mount: a real wcfs
// server (subprocess, real FUSE mount) serving zeo:// (genuine ZEO server),
// neo:// and neos:// (real NEO cluster) shows the FileStorage's bytes at head
// and at every revision, and follows commits made through ZEO while mounted.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/neotest"
	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
	"wendelin.dev/wcfs/gocore/internal/zeotest"
)

func shaHex(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// checkMount checks every file of txn under view ("head" or "@<tid>") of
// the mount: size, whole content and every block against the manifest.
func checkMount(t *testing.T, srv *wcfstest.Server, txn *testdb.Txn, view string) {
	t.Helper()
	for name, f := range txn.Files {
		path := srv.Path(view, "bigfile", f.Oid.String())
		data, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%s (%s): %v", path, name, err)
			continue
		}
		if int64(len(data)) != f.Size || shaHex(data) != f.Sha256 {
			t.Errorf("%s (%s): %d bytes, sha256 %s; want %d %s", path, name, len(data), shaHex(data), f.Size, f.Sha256)
			continue
		}
		for blk := int64(0); blk < f.NBlocks(); blk++ {
			if got := shaHex(data[blk*f.BlkSize : (blk+1)*f.BlkSize]); got != f.BlockSha256(blk) {
				t.Errorf("%s (%s): block %d differs", path, name, blk)
			}
		}
	}
}

// checkAllRevisions checks head/ against the manifest's last transaction and
// @<tid>/ against every transaction.
func checkAllRevisions(t *testing.T, srv *wcfstest.Server, m *testdb.Manifest) {
	t.Helper()
	checkMount(t, srv, m.Last(), "head")
	for _, txn := range m.Transactions {
		if len(txn.Files) > 0 {
			checkMount(t, srv, txn, "@"+txn.Tid.String())
		}
	}
}

// `wcfs neo://...` and `wcfs neos://...` serve the FileStorage behind the
// cluster: every file, at head and at every revision.
func TestServeNEO(t *testing.T) {
	m, fsPath := testdb.SmallFixture(t)
	for _, tc := range []struct {
		name string
		opt  neotest.Options
		all  bool // every revision, else head and the first revision with files
	}{
		{"neo", neotest.Options{}, true},
		{"neos", neotest.Options{TLS: true}, false}, // the same data path, over TLS
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := neotest.Start(t, fsPath, tc.opt)
			srv := wcfstest.Start(t, c.ZURL())
			if got := readString(t, srv.Path(".wcfs", "zurl")); got != c.ZURL() {
				t.Errorf(".wcfs/zurl = %q, want %q", got, c.ZURL())
			}
			if got := readString(t, srv.Path("head", "at")); got != m.Head.String() {
				t.Errorf("head/at = %s, want %s", got, m.Head)
			}
			if tc.all {
				checkAllRevisions(t, srv, m)
			} else {
				checkMount(t, srv, m.Last(), "head")
				checkMount(t, srv, m.Transactions[1], "@"+m.Transactions[1].Tid.String())
			}
		})
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// waitHeadAt waits until head/at shows tid.
func waitHeadAt(t *testing.T, srv *wcfstest.Server, tid zodb.Tid) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		at := readString(t, srv.Path("head", "at"))
		if at == tid.String() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("head/at = %s 30s after commit @%s", at, tid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// residency returns, per page of mem, whether it is in the page cache.
func residency(t *testing.T, mem []byte) []bool {
	t.Helper()
	vec := make([]byte, (len(mem)+os.Getpagesize()-1)/os.Getpagesize())
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		t.Fatal("mincore:", e)
	}
	in := make([]bool, len(vec))
	for i, v := range vec {
		in[i] = v&1 != 0
	}
	return in
}

// pageCached returns how many pages of mem are in the page cache.
func pageCached(t *testing.T, mem []byte) int {
	t.Helper()
	n := 0
	for _, in := range residency(t, mem) {
		if in {
			n++
		}
	}
	return n
}

// arrivals records which pages of a mapping were seen in the page cache at
// least once, polling mincore every millisecond until the test ends.
//
// The server pushes data into the page cache that nobody read (spec 1.4):
// the rest of a block after a partial read, the old data of a changed block
// into @<rev>/. Whether it did cannot be checked by looking at the cache a
// while later: the machine may evict clean file pages that no process maps
// at any time (proactive reclaim: the test VMs run DAMON's pageout of
// unmapped file pages, which drops such pages within a fraction of a second
// without any memory pressure). So a page counts once it was seen.
type arrivals struct {
	mu   sync.Mutex
	seen []bool
	stop chan struct{}
	done chan struct{}
}

func watchArrivals(t *testing.T, mem []byte) *arrivals {
	t.Helper()
	a := &arrivals{seen: make([]bool, len(mem)/os.Getpagesize()), stop: make(chan struct{}), done: make(chan struct{})}
	a.poll(t, mem)
	go func() {
		defer close(a.done)
		for {
			select {
			case <-a.stop:
				return
			case <-time.After(time.Millisecond):
			}
			a.poll(t, mem)
		}
	}()
	t.Cleanup(func() {
		close(a.stop)
		<-a.done
	})
	return a
}

func (a *arrivals) poll(t *testing.T, mem []byte) {
	in := residency(t, mem)
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range in {
		a.seen[i] = a.seen[i] || in[i]
	}
}

// missing returns the pages never seen in the page cache so far.
func (a *arrivals) missing() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	var v []int
	for i, seen := range a.seen {
		if !seen {
			v = append(v, i)
		}
	}
	return v
}

// wait waits until every page was seen in the page cache.
func (a *arrivals) wait(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(a.missing()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: pages never in the page cache after 30s: %v (of %d)", what, a.missing(), len(a.seen))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCached waits until all of mem is in the page cache (the server pushes
// the rest of a block asynchronously after a partial read).
func waitCached(t *testing.T, what string, mem []byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for pageCached(t, mem) != len(mem)/os.Getpagesize() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d of %d pages cached", what, pageCached(t, mem), len(mem)/os.Getpagesize())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mapFile maps size bytes of path read-only (shared, as wendelin.core does);
// the mapping and the file are released when the test ends.
func mapFile(t *testing.T, path string, size int64) (*os.File, []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		unix.Munmap(mem)
		f.Close()
	})
	return f, mem
}

// makeZEODB writes a database with genuine ZODB and serves it with a genuine
// ZEO server; it returns the server and the toolkit open on it through ZEO
// (for commits while mounted).
func makeZEODB(t *testing.T, bs int64) (*zeotest.Server, *testdb.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "1.fs")
	db := testdb.Create(t, path)
	db.CreateFile("f", bs, testdb.ZBlk0)
	db.CreateFile("g", bs, testdb.ZBlk1)
	for blk := int64(0); blk < 4; blk++ {
		if blk != 2 { // a hole
			db.WriteBlock("f", blk, bytes.Repeat([]byte{byte('a' + blk)}, int(bs)))
		}
		db.WriteBlock("g", blk, bytes.Repeat([]byte{byte('A' + blk)}, int(bs)/2))
	}
	db.Commit("t1")
	db.Close() // runzeo takes the FileStorage over
	zeo := zeotest.Start(t, path)
	return zeo, testdb.Open(t, zeo.ZURL())
}

// `wcfs zeo://...` serves the FileStorage behind a genuine ZEO server and
// follows commits made through ZEO while mounted: head/at advances, head
// shows the new data, only the changed block leaves the page cache, @<rev>
// keeps the old data; the whole history stays readable.
func TestServeZEO(t *testing.T) {
	const bs = 64 << 10
	// a fault on the mapping fails the test instead of killing the test
	// process (which would skip every cleanup)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	zeo, db := makeZEODB(t, bs)
	srv := wcfstest.Start(t, zeo.ZURL())
	m := db.Manifest()
	at1 := m.Head

	// a fault reads one page (MADV_RANDOM: no read-around); the server
	// pushes the rest of its block into the page cache
	f := m.Last().Files["f"]
	path := srv.Path("head", "bigfile", f.Oid.String())
	fh, mem := mapFile(t, path, 8*bs)
	if err := unix.Madvise(mem, unix.MADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	block := func(blk int64) []byte { return mem[blk*bs : (blk+1)*bs] }
	arrived := watchArrivals(t, mem[:4*bs])
	for blk := int64(0); blk < 4; blk++ {
		touched.Add(int64(block(blk)[0])) // fault it in (a plain `_ = mem[i]` is compiled away)
	}
	arrived.wait(t, "head file after faulting in the first page of each block")
	// from now on every page is mapped: the checks below see what the
	// server does to the cache, not the machine's eviction of unmapped pages
	keepMapped(mem[:4*bs])
	checkAllRevisions(t, srv, m)

	// commit through ZEO: change block 1 of f; the server keeps the old
	// block in the cache of @at1 before anyone reads it there
	old := srv.Path("@"+at1.String(), "bigfile", f.Oid.String())
	_, omem := mapFile(t, old, 4*bs)
	oldArrived := watchArrivals(t, omem[bs:2*bs])
	db.WriteBlock("f", 1, bytes.Repeat([]byte{'x'}, bs))
	at2 := db.Commit("t2")
	waitHeadAt(t, srv, at2)

	cachedAfter := make([]int, 4)
	for blk := int64(0); blk < 4; blk++ {
		cachedAfter[blk] = pageCached(t, block(blk))
	}
	full := bs / os.Getpagesize()
	if cachedAfter[0] != full || cachedAfter[1] != 0 || cachedAfter[2] != full || cachedAfter[3] != full {
		t.Errorf("head page cache after commit (pages per block 0-3): %v; want only block 1 dropped (%d pages each)", cachedAfter, full)
	}
	if !bytes.Equal(block(1), bytes.Repeat([]byte{'x'}, bs)) {
		t.Errorf("head block 1 after commit: not the new data")
	}
	// the old block 1, as of its own last change, was put in @at1's cache
	// while the commit was processed
	if miss := oldArrived.missing(); len(miss) > 0 {
		t.Errorf("@%s block 1: pages %v of %d never in the page cache before anyone read them", at1, miss, full)
	}
	if !bytes.Equal(omem[bs:2*bs], bytes.Repeat([]byte{'b'}, bs)) {
		t.Errorf("@%s block 1: not the old data", at1)
	}

	waitCached(t, "head block 1 after reading it again", block(1))

	// grow the file (block 5; 4 is a hole)
	db.WriteBlock("f", 5, []byte("appended"))
	at3 := db.Commit("t3")
	waitHeadAt(t, srv, at3)
	var st unix.Stat_t
	if err := unix.Fstat(int(fh.Fd()), &st); err != nil || st.Size != 6*bs {
		t.Fatalf("head file size after commit: %d (%v), want %d", st.Size, err, 6*bs)
	}
	if got := block(5)[:8]; string(got) != "appended" {
		t.Errorf("head block 5 after commit: %q", got)
	}
	for blk := int64(0); blk < 4; blk++ {
		if n := pageCached(t, block(blk)); n != full {
			t.Errorf("head block %d: %d of %d pages cached after the file grew (unchanged blocks stay)", blk, n, full)
		}
	}
	checkAllRevisions(t, srv, db.Manifest())

	// a file created through ZEO while mounted appears in head/
	oid := db.CreateFile("h", 4<<10, testdb.ZBlk1)
	db.WriteBlock("h", 3, []byte("new file"))
	at4 := db.Commit("t4")
	waitHeadAt(t, srv, at4)
	data := readString(t, srv.Path("head", "bigfile", oid.String()))
	if len(data) != 4*4<<10 || !strings.HasPrefix(data[3*4<<10:], "new file") {
		t.Errorf("head/bigfile/%s (created while mounted): %d bytes", oid, len(data))
	}
}

// outageStorage is a storage a test can take away and bring back.
type outageStorage interface {
	ZURL() string
	Kill() error
	Restart() error
	Pause() error
	Resume() error
}

// zstorTimeout is what outage tests give the server as -zstor.timeout.
const zstorTimeout = 2 * time.Second

// keepCached maps the file at path and touches every page of it, so that
// its pages stay in the page cache for the rest of the test: the machine
// may evict clean file pages nobody maps at any time (proactive reclaim,
// e.g. DAMON's pageout of unmapped file pages on the test VMs), and a test
// about what the server does with cached data needs them to stay.
func keepCached(t *testing.T, path string, size int64) {
	t.Helper()
	_, mem := mapFile(t, path, size)
	keepMapped(mem)
}

// keepMapped touches every page of mem, so that the pages of a mapped file
// stay in the page cache (see keepCached).
func keepMapped(mem []byte) {
	sum := 0
	for i := 0; i < len(mem); i += os.Getpagesize() {
		sum += int(mem[i])
	}
	touched.Add(int64(sum))
}

// touched is where keepCached's reads go (so that they are not optimized away).
var touched atomic.Int64

// zstorState returns the content of .wcfs/zstor ("up", "down since ...").
func zstorState(t *testing.T, srv *wcfstest.Server) string {
	t.Helper()
	return strings.TrimSpace(readString(t, srv.Path(".wcfs", "zstor")))
}

// statsKeys returns the keys of .wcfs/stats in order.
func statsKeys(t *testing.T, srv *wcfstest.Server) []string {
	t.Helper()
	var keys []string
	for _, line := range strings.Split(strings.TrimSpace(readString(t, srv.Path(".wcfs", "stats"))), "\n") {
		k, _, _ := strings.Cut(line, "\t: ")
		keys = append(keys, k)
	}
	return keys
}

// readBounded reads path in a goroutine and waits at most bound: a read that
// hangs is reported and left to the server's cleanup (which aborts the FUSE
// connection).
func readBounded(t *testing.T, path string, bound time.Duration) ([]byte, error) {
	t.Helper()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	t0 := time.Now()
	go func() {
		data, err := os.ReadFile(path)
		done <- result{data, err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-time.After(bound):
		t.Fatalf("read %s: no answer after %s (a hang)", path, time.Since(t0).Round(time.Millisecond))
		return nil, nil
	}
}

// Storage outages, as docs/operations.md ("Storage outages") specifies:
// while the storage is away, reads that need it fail with EIO within a
// bounded time, cached data stays right, .wcfs/zstor says "down since ...";
// when the storage is back the server exits non-zero with a message naming
// the storage (log and sd_notify STATUS=), leaving no mount.
func TestStorageOutage(t *testing.T) {
	m, fsPath := testdb.SmallFixture(t)
	head := m.Last()
	cachedF, otherF := head.Files["zf0"], head.Files["zf64k"]

	for _, kind := range []string{"zeo", "neo"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var stor outageStorage
			var addr string
			switch kind {
			case "zeo":
				z := zeotest.Start(t, testdb.CopyFS(t, fsPath))
				stor, addr = z, z.Addr
			case "neo":
				c := neotest.Start(t, fsPath, neotest.Options{})
				stor, addr = c, c.MasterAddr
			}
			srv := wcfstest.Start(t, stor.ZURL(), "-zstor.timeout="+zstorTimeout.String())
			cached := srv.Path("head", "bigfile", cachedF.Oid.String())
			other := srv.Path("head", "bigfile", otherF.Oid.String())
			if data := readString(t, cached); shaHex([]byte(data)) != cachedF.Sha256 {
				t.Fatalf("%s: wrong content before the outage", cached)
			}
			keepCached(t, cached, cachedF.Size)
			if st := zstorState(t, srv); st != "up" {
				t.Fatalf(".wcfs/zstor = %q before the outage, want \"up\"", st)
			}
			keys := statsKeys(t, srv)

			if err := stor.Kill(); err != nil {
				t.Fatal(err)
			}
			// EIO for what needs the storage, right data for what is cached
			bound := zstorTimeout + 10*time.Second
			_, err := readBounded(t, other, bound)
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("read of uncached %s during the outage: %v, want EIO", other, err)
			}
			if data, err := readBounded(t, cached, bound); err != nil || shaHex(data) != cachedF.Sha256 {
				t.Errorf("read of cached %s during the outage: %v (or wrong data)", cached, err)
			}
			deadline := time.Now().Add(bound)
			for !strings.HasPrefix(zstorState(t, srv), "down since ") {
				if time.Now().After(deadline) {
					t.Fatalf(".wcfs/zstor = %q during the outage, want \"down since ...\"", zstorState(t, srv))
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf(".wcfs/zstor during the outage: %s", zstorState(t, srv))
			if got := statsKeys(t, srv); fmt.Sprint(got) != fmt.Sprint(keys) {
				t.Errorf(".wcfs/stats keys during the outage: %v, want %v (the reference's)", got, keys)
			}
			// while down, reads needing the storage fail at once
			t0 := time.Now()
			if _, err := readBounded(t, srv.Path("head", "bigfile", head.Files["zf4k"].Oid.String()), bound); !errors.Is(err, syscall.EIO) {
				t.Errorf("read of another uncached file while down: %v, want EIO", err)
			}
			if d := time.Since(t0); d > zstorTimeout {
				t.Errorf("read while down took %s: want a fast failure", d)
			}

			if err := stor.Restart(); err != nil {
				t.Fatal(err)
			}
			code, err := srv.WaitExit(30 * time.Second)
			if err != nil {
				t.Fatalf("storage back: %v; want the server to exit", err)
			}
			if code == 0 {
				t.Errorf("server exit code 0 after losing its storage, want non-zero")
			}
			if log := srv.Log(); !strings.Contains(log, addr) || !strings.Contains(log, "it is back: exiting") {
				t.Errorf("server log does not say that the storage (%s) is back:\n%s", addr, log)
			}
			if wcfstest.IsMounted(srv.Mnt) {
				t.Errorf("%s still mounted after the server exited", srv.Mnt)
			}
		})
	}
}

// A storage that hangs (SIGSTOP) makes reads that need it fail with EIO
// within -zstor.timeout, not hang; cached data stays right.
func TestStorageHang(t *testing.T) {
	m, fsPath := testdb.SmallFixture(t)
	head := m.Last()
	for _, kind := range []string{"zeo", "neo"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var stor outageStorage
			if kind == "zeo" {
				stor = zeotest.Start(t, testdb.CopyFS(t, fsPath))
			} else {
				stor = neotest.Start(t, fsPath, neotest.Options{})
			}
			srv := wcfstest.Start(t, stor.ZURL(), "-zstor.timeout="+zstorTimeout.String())
			cachedF, otherF := head.Files["zf0"], head.Files["zf64k"]
			cached := srv.Path("head", "bigfile", cachedF.Oid.String())
			readString(t, cached)
			keepCached(t, cached, cachedF.Size)
			if err := stor.Pause(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { stor.Resume() })
			t0 := time.Now()
			_, err := readBounded(t, srv.Path("head", "bigfile", otherF.Oid.String()), zstorTimeout+10*time.Second)
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("read needing a hung storage: %v after %s, want EIO", err, time.Since(t0))
			}
			if data, err := readBounded(t, cached, zstorTimeout+10*time.Second); err != nil || shaHex(data) != cachedF.Sha256 {
				t.Errorf("read of cached %s while the storage hangs: %v (or wrong data)", cached, err)
			}
			if st := zstorState(t, srv); !strings.HasPrefix(st, "down since ") || !strings.Contains(st, "no answer within") {
				t.Errorf(".wcfs/zstor while the storage hangs: %q", st)
			}
			// it answers again: a new server must follow it (neo/go's
			// clients may have given up on the session meanwhile)
			if err := stor.Resume(); err != nil {
				t.Fatal(err)
			}
			if code, err := srv.WaitExit(30 * time.Second); err != nil || code == 0 {
				t.Errorf("storage answering again: server exit code %d, %v; want a non-zero exit", code, err)
			}
		})
	}
}
