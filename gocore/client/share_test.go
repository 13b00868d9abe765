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

// helperEnv makes the test binary another client process (a nak of a pin
// gets a process killed; two processes share page cache): its value is a
// mode and its arguments, see helperMain.
const helperEnv = "WCFS_CLIENT_TEST_HELPER"

// helperMain runs the helper mode that $WCFS_CLIENT_TEST_HELPER names.
func helperMain() int {
	argv := strings.Fields(os.Getenv(helperEnv))
	modes := map[string]func(argv []string) error{
		"share":       helperShare,
		"open-cancel": helperOpenCancelled,
	}
	var mode func(argv []string) error
	if len(argv) > 0 {
		mode = modes[argv[0]]
	}
	var err error
	if mode == nil {
		err = fmt.Errorf("bad $%s %q", helperEnv, os.Getenv(helperEnv))
	} else {
		err = mode(argv[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// helperArgs parses "MOUNTPOINT FOID AT" and what follows.
func helperArgs(argv []string, nmore int) (mnt string, foid zodb.Oid, at zodb.Tid, more []string, err error) {
	if len(argv) != 3+nmore {
		return "", 0, 0, nil, fmt.Errorf("bad arguments %q", argv)
	}
	f, err1 := wproto.ParseHex16(argv[1])
	a, err2 := wproto.ParseHex16(argv[2])
	if err1 != nil || err2 != nil {
		return "", 0, 0, nil, fmt.Errorf("bad arguments %q", argv)
	}
	return argv[0], zodb.Oid(f), zodb.Tid(a), argv[3:], nil
}

// helperProc is the test binary running helperMain in mode argv[0].
type helperProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
}

// startHelper starts a helper process; the test's cleanup ends it.
func startHelper(t *testing.T, argv ...any) *helperProc {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.TrimSuffix(fmt.Sprintln(argv...), "\n"))
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
	h := &helperProc{t: t, cmd: cmd, stdin: stdin, stdout: bufio.NewReader(stdout)}
	t.Cleanup(func() { h.wait() })
	return h
}

// expect reads the helper's next line, whose first word must be want, and
// returns the other words.
func (h *helperProc) expect(want string) []string {
	h.t.Helper()
	line, err := h.stdout.ReadString('\n')
	if err != nil {
		h.wait()
		h.t.Fatalf("helper: %v (%s)", err, h.cmd.ProcessState)
	}
	fields := strings.Fields(line)
	if len(fields) == 0 || fields[0] != want {
		h.t.Fatalf("helper: got %q, want %s ...", line, want)
	}
	return fields[1:]
}

// send writes a line to the helper.
func (h *helperProc) send(line string) {
	h.t.Helper()
	if _, err := io.WriteString(h.stdin, line+"\n"); err != nil {
		h.t.Fatalf("helper: %v", err)
	}
}

// wait closes the helper's stdin (it exits) and waits for it.
func (h *helperProc) wait() error {
	h.stdin.Close()
	if h.cmd.ProcessState != nil {
		return nil
	}
	return h.cmd.Wait()
}

// helperShare ("share MOUNTPOINT FOID AT NBLK") connects at AT, maps and
// reads NBLK blocks of FOID, prints "ready <addr> <pinned blocks>" and
// waits for its stdin to close.
func helperShare(argv []string) error {
	mnt, foid, at, more, err := helperArgs(argv, 1)
	if err != nil {
		return err
	}
	nblk, err := strconv.ParseInt(more[0], 10, 64)
	if err != nil {
		return err
	}
	ctx := context.Background()
	c, err := New(mnt).Connect(ctx, at)
	if err != nil {
		return err
	}
	defer c.Close()
	f, err := c.Open(ctx, foid)
	if err != nil {
		return err
	}
	m, err := f.Mmap(0, nblk)
	if err != nil {
		return err
	}
	buf := make([]byte, m.Len())
	if _, err := m.ReadAt(buf, 0); err != nil {
		return err
	}
	var pinned []string
	for blk := range f.Pinned() {
		pinned = append(pinned, strconv.FormatInt(blk, 10))
	}
	fmt.Printf("ready %d %s\n", m.Addr(), strings.Join(pinned, ","))
	io.Copy(io.Discard, os.Stdin)
	return nil
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
	h := startHelper(t, "share", e.srv.Mnt, e.foid, at1, nblk)
	fields := h.expect("ready")
	if len(fields) != 2 {
		t.Fatalf("helper: ready %q", fields)
	}
	addr1, _ := strconv.ParseUint(fields[0], 10, 64)
	pinned := strings.Split(fields[1], ",")
	slices.Sort(pinned)
	if strings.Join(pinned, ",") != "0,1,2,3" {
		t.Fatalf("helper at @%s: pinned blocks %s, want the %d changed ones", at1, fields[1], nchanged)
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

	p1 := pfns(t, h.cmd.Process.Pid, uintptr(addr1), m.Len())
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
