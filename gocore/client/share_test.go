// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/wproto"
)

// helperEnv makes the test binary the other client of
// TestTwoProcessesShareHeadPageCache: "MOUNTPOINT FOID AT NBLK".
const helperEnv = "WCFS_CLIENT_TEST_HELPER"

// helperMain connects at AT, maps and reads NBLK blocks of FOID, prints
// "ready <addr> <pinned blocks>" and waits for its stdin to close.
func helperMain() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	argv := strings.Fields(os.Getenv(helperEnv))
	if len(argv) != 4 {
		return fail(fmt.Errorf("bad $%s", helperEnv))
	}
	foid, err1 := wproto.ParseHex16(argv[1])
	at, err2 := wproto.ParseHex16(argv[2])
	nblk, err3 := strconv.ParseInt(argv[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return fail(fmt.Errorf("bad $%s", helperEnv))
	}
	ctx := context.Background()
	c, err := New(argv[0]).Connect(ctx, zodb.Tid(at))
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	f, err := c.Open(ctx, zodb.Oid(foid))
	if err != nil {
		return fail(err)
	}
	m, err := f.Mmap(0, nblk)
	if err != nil {
		return fail(err)
	}
	buf := make([]byte, m.Len())
	if _, err := m.ReadAt(buf, 0); err != nil {
		return fail(err)
	}
	var pinned []string
	for blk := range f.Pinned() {
		pinned = append(pinned, strconv.FormatInt(blk, 10))
	}
	fmt.Printf("ready %d %s\n", m.Addr(), strings.Join(pinned, ","))
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// pfns returns the physical frame number of every page of [addr, addr+n)
// in process pid (0: not present), from /proc/<pid>/pagemap (root).
func pfns(t *testing.T, pid int, addr uintptr, n int) []uint64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	npage := n / pageSize
	buf := make([]byte, 8*npage)
	if _, err := f.ReadAt(buf, int64(addr/uintptr(pageSize))*8); err != nil {
		t.Fatal(err)
	}
	res := make([]uint64, npage)
	for i := range res {
		e := binary.LittleEndian.Uint64(buf[8*i:])
		if e&(1<<63) != 0 {
			res[i] = e & (1<<55 - 1)
		}
	}
	return res
}

// Two processes viewing a file at different revisions share the page cache
// of head/ for the blocks that did not change between them: their mappings
// of those blocks are the same physical pages. Blocks that changed are
// different pages (the older process maps @<rev>).
func TestTwoProcessesShareHeadPageCache(t *testing.T) {
	t.Parallel()
	const nblk, nchanged = 16, 4
	e, _ := newEnv(t, testBlksize, 0)
	var all, changed []int64
	for blk := int64(0); blk < nblk; blk++ {
		all = append(all, blk)
		if blk < nchanged {
			changed = append(changed, blk)
		}
	}
	at1 := e.commit("v1", all...)
	at2 := e.commit("v2", changed...)

	// the other process, at at1
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %s %s %d", helperEnv, e.srv.Mnt, e.foid, at1, nblk))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	fields := strings.Fields(line)
	if len(fields) != 3 || fields[0] != "ready" {
		t.Fatalf("helper: %q", line)
	}
	addr1, _ := strconv.ParseUint(fields[1], 10, 64)
	pinned := strings.Split(fields[2], ",")
	slices.Sort(pinned)
	if strings.Join(pinned, ",") != "0,1,2,3" {
		t.Fatalf("helper at @%s: pinned blocks %s, want the %d changed ones", at1, fields[2], nchanged)
	}

	// this process, at at2 (head)
	c := connect(t, e, at2)
	f, err := c.Open(context.Background(), e.foid)
	if err != nil {
		t.Fatal(err)
	}
	m, err := f.Mmap(0, nblk)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, m.Len())
	if _, err := m.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	wantPinned(t, f, nil)

	p1 := pfns(t, cmd.Process.Pid, uintptr(addr1), m.Len())
	p2 := pfns(t, os.Getpid(), m.Addr(), m.Len())
	perBlk := int(testBlksize) / pageSize
	shared, distinct := 0, 0
	for i := range p1 {
		blk := int64(i / perBlk)
		if p1[i] == 0 || p2[i] == 0 {
			t.Fatalf("block #%d page %d not resident after reading it (pfn %d, %d)", blk, i%perBlk, p1[i], p2[i])
		}
		if blk < nchanged {
			if p1[i] == p2[i] {
				t.Fatalf("changed block #%d page %d: both processes map frame %d", blk, i%perBlk, p1[i])
			}
			distinct++
		} else {
			if p1[i] != p2[i] {
				t.Fatalf("unchanged block #%d page %d: frames %d and %d: head/ page cache not shared", blk, i%perBlk, p1[i], p2[i])
			}
			shared++
		}
	}
	t.Logf("%d pages shared by the processes at @%s and @%s, %d distinct (blocks changed in between)", shared, at1, at2, distinct)
}
