// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package client

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/procmem"
)

// The memory mechanics, with pins applied by hand (a Conn without watch
// link): what a mapping shows, remaps of single blocks, zeros beyond EOF,
// growth, efault, DONTFORK. The protocol itself is tested in client_test.go.

const testBlksize = 64 << 10

func openNoLink(t *testing.T, e *env, at zodb.Tid) (*Conn, *FileH) {
	t.Helper()
	c := e.wc.newConn(at, nil)
	t.Cleanup(func() { c.Close() })
	f, err := c.Open(context.Background(), e.foid)
	if err != nil {
		t.Fatal(err)
	}
	return c, f
}

func TestMmapHeadZerosAndPins(t *testing.T) {
	t.Parallel()
	e, at0 := newEnv(t, testBlksize, 3)
	e.commit("v1", 1, 3) // block 1 changes, the file grows by block 3

	_, f := openNoLink(t, e, at0)
	if f.BlkSize() != testBlksize {
		t.Fatalf("blksize %d, want %d", f.BlkSize(), testBlksize)
	}
	m, err := f.Mmap(0, 6)
	if err != nil {
		t.Fatal(err)
	}
	// head/ as opened (at1) for blocks inside its file, zeros beyond
	checkBlk(t, m, 0, blkData(testBlksize, "v0", 0))
	checkBlk(t, m, 1, blkData(testBlksize, "v1", 1))
	checkBlk(t, m, 2, blkData(testBlksize, "v0", 2))
	checkBlk(t, m, 3, blkData(testBlksize, "v1", 3))
	checkBlk(t, m, 4, zeros(testBlksize))
	checkBlk(t, m, 5, zeros(testBlksize))

	// pins: block 1 to @at0, block 3 to @at0 (beyond EOF there: zeros)
	for _, blk := range []int64{1, 3} {
		if err := f.pin(blk, at0); err != nil {
			t.Fatal(err)
		}
	}
	checkBlk(t, m, 0, blkData(testBlksize, "v0", 0))
	checkBlk(t, m, 1, blkData(testBlksize, "v0", 1))
	checkBlk(t, m, 3, zeros(testBlksize))
	if p := f.Pinned(); len(p) != 2 || p[1] != at0 || p[3] != at0 {
		t.Fatalf("pinned %v, want {1: %s, 3: %s}", p, at0, at0)
	}

	// a new mapping applies the pins
	m2, err := f.Mmap(1, 3)
	if err != nil {
		t.Fatal(err)
	}
	checkBlk(t, m2, 1, blkData(testBlksize, "v0", 1))
	checkBlk(t, m2, 2, blkData(testBlksize, "v0", 2))
	checkBlk(t, m2, 3, zeros(testBlksize))

	// @head maps head/ back; @rev files are shared and released with
	// their last pin
	e.wc.mu.Lock()
	nrev := len(e.wc.revFiles)
	e.wc.mu.Unlock()
	if nrev != 1 {
		t.Fatalf("%d @rev files open, want 1 (shared by the pins to @%s)", nrev, at0)
	}
	for _, blk := range []int64{1, 3} {
		if err := f.pin(blk, headRev); err != nil {
			t.Fatal(err)
		}
	}
	checkBlk(t, m, 1, blkData(testBlksize, "v1", 1))
	checkBlk(t, m2, 1, blkData(testBlksize, "v1", 1))
	checkBlk(t, m, 3, blkData(testBlksize, "v1", 3))
	if p := f.Pinned(); len(p) != 0 {
		t.Fatalf("pinned %v after unpin, want none", p)
	}
	e.wc.mu.Lock()
	nrev = len(e.wc.revFiles)
	e.wc.mu.Unlock()
	if nrev != 0 {
		t.Fatalf("%d @rev files open after the last unpin, want 0", nrev)
	}

	// a mapping entirely beyond EOF
	m3, err := f.Mmap(100, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkBlk(t, m3, 100, zeros(testBlksize))
	checkBlk(t, m3, 101, zeros(testBlksize))

	for _, m := range []*Mapping{m, m2, m3} {
		if err := m.Unmap(); err != nil {
			t.Fatal(err)
		}
		if err := m.Unmap(); err != nil { // idempotent
			t.Fatal(err)
		}
	}
}

// Blocks beyond the end of the file become data when a Resync moves past
// the growth; the rest stays zeros.
func TestResyncGrows(t *testing.T) {
	t.Parallel()
	e, at0 := newEnv(t, testBlksize, 2)
	c, f := openNoLink(t, e, at0)
	m, err := f.Mmap(0, 4)
	if err != nil {
		t.Fatal(err)
	}
	checkBlk(t, m, 2, zeros(testBlksize))
	at1 := e.commit("v1", 2)
	checkBlk(t, m, 2, zeros(testBlksize)) // isolated from the growth
	if err := c.Resync(context.Background(), at1); err != nil {
		t.Fatal(err)
	}
	if c.At() != at1 {
		t.Fatalf("at %s after resync, want %s", c.At(), at1)
	}
	checkBlk(t, m, 1, blkData(testBlksize, "v0", 1))
	checkBlk(t, m, 2, blkData(testBlksize, "v1", 2))
	checkBlk(t, m, 3, zeros(testBlksize))

	// going back: error, the Conn is closed
	err = c.Resync(context.Background(), at0)
	if err == nil || !strings.Contains(err.Error(), "going back in history is forbidden") {
		t.Fatalf("resync back: got %v, want going back in history is forbidden", err)
	}
	if all, _ := faults(m.Mem()); !all {
		t.Fatal("mapping does not fault after the Conn was closed by a failed resync")
	}
	if _, err := c.Open(context.Background(), e.foid); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("open after close: got %v, want connection closed", err)
	}
}

// Closing a FileH makes its mappings fault, other files' mappings keep
// working; a reopen gives a new FileH with working mappings.
func TestEfault(t *testing.T) {
	t.Parallel()
	e, at0 := newEnv(t, testBlksize, 2)
	c, f := openNoLink(t, e, at0)
	m1, err := f.Mmap(0, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.pin(0, at0); err != nil { // a pinned block faults too
		t.Fatal(err)
	}
	f2, err := c.Open(context.Background(), e.foid) // the same FileH
	if err != nil {
		t.Fatal(err)
	}
	if f2 != f {
		t.Fatal("second open of the same file returned another FileH")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, any := faults(m1.Mem()); any {
		t.Fatal("mapping faults after one of two opens was closed")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if all, _ := faults(m1.Mem()); !all {
		t.Fatal("mapping of a closed FileH does not fault on every page")
	}
	if err := f.Close(); err != nil { // no-op
		t.Fatal(err)
	}
	if _, err := f.Mmap(0, 1); !errors.Is(err, ErrFileClosed) {
		t.Fatalf("mmap of a closed FileH: got %v, want file already closed", err)
	}

	f3, err := c.Open(context.Background(), e.foid)
	if err != nil {
		t.Fatal(err)
	}
	if f3 == f {
		t.Fatal("reopen after close returned the closed FileH")
	}
	m3, err := f3.Mmap(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	checkBlk(t, m3, 0, blkData(testBlksize, "v0", 0))
	if all, _ := faults(m1.Mem()); !all {
		t.Fatal("old mapping stopped faulting after a reopen")
	}
	if err := m1.Unmap(); err != nil {
		t.Fatal(err)
	}

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if all, _ := faults(m3.Mem()); !all {
		t.Fatal("mapping does not fault after Conn.Close")
	}
	if _, err := c.Open(context.Background(), e.foid); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("open after close: got %v, want connection closed", err)
	}
	if err := c.Resync(context.Background(), at0); !errors.Is(err, ErrConnClosed) {
		t.Fatalf("resync after close: got %v, want connection closed", err)
	}
	if _, err := f3.Mmap(0, 1); !errors.Is(err, ErrFileClosed) {
		t.Fatalf("mmap after Conn.Close: got %v, want file already closed", err)
	}
	if err := c.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	if fds := e.wc.Fds(); len(fds) != 0 {
		t.Fatalf("descriptors left open after close: %v", fds)
	}
}

// Zeros beyond EOF take no memory, and every piece of a mapping is
// MADV_DONTFORK.
func TestZeroMappingTakesNoMemory(t *testing.T) {
	t.Parallel()
	e, at0 := newEnv(t, testBlksize, 1)
	_, f := openNoLink(t, e, at0)
	const nblk = 512 // 32 MiB
	m, err := f.Mmap(0, nblk)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Unmap()
	if err := f.pin(0, at0); err != nil {
		t.Fatal(err)
	}
	if res := procmem.Faults(unsafe.Pointer(unsafe.SliceData(m.Mem())), m.Len()); strings.Contains(res, "1") {
		t.Fatalf("zero mapping faults: %s", res)
	}
	var rssZero int64
	vmas := smaps(t, m.Addr(), m.Len())
	if len(vmas) == 0 {
		t.Fatal("mapping not in /proc/self/smaps")
	}
	for _, v := range vmas {
		if !strings.Contains(" "+v.fields["VmFlags"]+" ", " dc ") {
			t.Errorf("VMA %x-%x (%s) is not MADV_DONTFORK: VmFlags %s", v.lo, v.hi, v.path, v.fields["VmFlags"])
		}
		if strings.HasPrefix(v.path, "/dev/zero") {
			kb, _ := strconv.ParseInt(strings.Fields(v.fields["Rss"])[0], 10, 64)
			rssZero += kb
		}
	}
	if rssZero != 0 {
		t.Fatalf("zeros beyond EOF take %d KiB of memory after reading all of them, want 0", rssZero)
	}
	checkBlk(t, m, 0, blkData(testBlksize, "v0", 0))
	checkBlk(t, m, nblk-1, zeros(testBlksize))
}
