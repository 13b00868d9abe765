// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package client

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/procmem"
	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// Tests run real servers (bin built once per test binary) on real mounts,
// over databases written by genuine ZODB. The test binary is also the other
// client process of TestTwoProcessesShareHeadPageCache.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	code := wcfstest.Run(m)
	testdb.RemoveGenerated()
	os.Exit(code)
}

// env is a database with one ZBigFile "zf" and a server for it.
type env struct {
	tb      testing.TB
	db      *testdb.DB
	srv     *wcfstest.Server
	wc      *WCFS
	foid    zodb.Oid
	blksize int64
}

// newEnv creates a database whose file zf (blksize bytes per block) has
// nblk blocks of blkData("v0", blk), starts a server on it and returns
// the env and the revision of that commit.
func newEnv(t *testing.T, blksize int64, nblk int64, args ...string) (*env, zodb.Tid) {
	t.Helper()
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	foid := db.CreateFile("zf", blksize, testdb.ZBlk0)
	for blk := int64(0); blk < nblk; blk++ {
		db.WriteBlock("zf", blk, blkData(blksize, "v0", blk))
	}
	at := db.Commit("v0")
	srv := wcfstest.Start(t, db.ZURL(), args...)
	e := &env{tb: t, db: db, srv: srv, wc: New(srv.Mnt), foid: foid, blksize: blksize}
	return e, at
}

// commit writes blkData(tag, blk) into blocks blkv, commits, waits for the
// server to show the commit, and returns its revision.
func (e *env) commit(tag string, blkv ...int64) zodb.Tid {
	e.tb.Helper()
	for _, blk := range blkv {
		e.db.WriteBlock("zf", blk, blkData(e.blksize, tag, blk))
	}
	at := e.db.Commit(tag)
	e.waitHead(at)
	return at
}

// waitHead waits until head/at >= at.
func (e *env) waitHead(at zodb.Tid) {
	e.tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.wc.waitHead(ctx, at); err != nil {
		e.tb.Fatal(err)
	}
}

// blkData returns the content of a block written with tag: a repeated
// pattern naming tag and blk (every page differs from other blocks' and
// other tags').
func blkData(blksize int64, tag string, blk int64) []byte {
	pat := []byte(fmt.Sprintf("%s:#%d;", tag, blk))
	return bytes.Repeat(pat, int(blksize)/len(pat)+1)[:blksize]
}

// faults reports whether reading every page of b faults, and whether any
// page does.
func faults(b []byte) (all bool, any bool) {
	res := procmem.Faults(unsafe.Pointer(unsafe.SliceData(b)), len(b))
	return !strings.Contains(res, "0"), strings.Contains(res, "1")
}

// blkMem returns block blk of m's memory, read with ReadAt (a goroutine
// must not fault on memory that needs a pin: see Mapping.Mem).
func blkMem(m *Mapping, blk int64) []byte {
	bs := m.f.blksize
	buf := make([]byte, bs)
	if _, err := m.ReadAt(buf, (blk-m.blkStart)*bs); err != nil {
		panic(err)
	}
	return buf
}

// checkBlk checks that block blk of m holds want.
func checkBlk(t *testing.T, m *Mapping, blk int64, want []byte) {
	t.Helper()
	got := blkMem(m, blk)
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: block #%d: got %q..., want %q...", m, blk, trunc(got), trunc(want))
	}
}

func trunc(b []byte) []byte {
	if len(b) > 24 {
		return b[:24]
	}
	return b
}

// zeros returns n zero bytes.
func zeros(n int64) []byte { return make([]byte, n) }

// vma is one line of /proc/self/smaps with its fields.
type vma struct {
	lo, hi uintptr
	path   string
	fields map[string]string
}

// smaps returns the VMAs of this process overlapping [addr, addr+n).
func smaps(t *testing.T, addr uintptr, n int) []vma {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []vma
	var cur *vma
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) > 0 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			lohi := strings.SplitN(fields[0], "-", 2)
			lo, _ := strconv.ParseUint(lohi[0], 16, 64)
			hi, _ := strconv.ParseUint(lohi[1], 16, 64)
			cur = nil
			if uintptr(lo) < addr+uintptr(n) && uintptr(hi) > addr {
				v := vma{lo: uintptr(lo), hi: uintptr(hi), fields: map[string]string{}}
				if len(fields) >= 6 {
					v.path = fields[5]
				}
				out = append(out, v)
				cur = &out[len(out)-1]
			}
			continue
		}
		if cur != nil && len(fields) >= 2 {
			cur.fields[strings.TrimSuffix(fields[0], ":")] = strings.Join(fields[1:], " ")
		}
	}
	return out
}

// hasConn reports whether c is among the Conns of wc (a closing Conn leaves
// them last).
func hasConn(wc *WCFS, c *Conn) bool {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	_, ok := wc.conns[c]
	return ok
}

// serverStats returns the counters of the server's .wcfs/stats.
func serverStats(t testing.TB, e *env) map[string]int64 {
	t.Helper()
	data, err := os.ReadFile(e.srv.Path(".wcfs/stats"))
	if err != nil {
		t.Fatal(err)
	}
	st := make(map[string]int64)
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, ok := strings.Cut(line, ":")
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if !ok || err != nil {
			t.Fatalf(".wcfs/stats: bad line %q", line)
		}
		st[strings.TrimSpace(k)] = n
	}
	return st
}
