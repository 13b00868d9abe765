// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// A change of a served ZBigFile itself (blksize, blktab replaced) drops that
// file's cache and serves the new content; the filesystem keeps working
// (the reference switches to "EIO mode" and exits).
func TestEpoch(t *testing.T) {
	t.Parallel()
	const bs = 4 << 10
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	foid := db.CreateFile("f", bs, testdb.ZBlk0)
	db.CreateFile("g", bs, testdb.ZBlk1)
	for blk := int64(0); blk < 8; blk++ {
		db.WriteBlock("f", blk, randData(blk, bs))
		db.WriteBlock("g", blk, randData(50+blk, bs))
	}
	db.Commit("at1")

	srv := wcfstest.Start(t, db.ZURL(), "-debug")
	zh := openZhead(t, srv)
	m := db.Manifest()
	checkView(t, srv, m, m.Last(), "head") // everything read and cached
	headf := srv.Path("head", "bigfile", foid.String())
	mf := mapFile(t, headf, 8*bs, bs)
	for blk := int64(0); blk < 8; blk++ {
		mf.touch(blk)
	}

	db.SetBlkSize("f", 2*bs)
	at2 := db.Commit("at2: blksize doubled")
	zh.waitTid(t, at2)
	if got := mf.cachedState(t, 8); got != "0 0 0 0 0 0 0 0" {
		t.Errorf("head cache of f after its epoch: %s, want all dropped", got)
	}
	m = db.Manifest()
	checkView(t, srv, m, m.Last(), "head")

	db.ReplaceBlkTab("f", false)
	at3 := db.Commit("at3: blktab replaced by an empty one")
	zh.waitTid(t, at3)
	m = db.Manifest()
	checkAllViews(t, srv, m)
	if st := stat(t, headf); st.Size != 0 {
		t.Errorf("f after an empty blktab: size %d", st.Size)
	}
	if !strings.Contains(srv.Log(), "ZBigFile changed") {
		t.Errorf("the epoch is not logged")
	}

	// and the filesystem follows later commits
	db.WriteBlock("f", 3, randData(99, 2*bs))
	at4 := db.Commit("at4")
	zh.waitTid(t, at4)
	m = db.Manifest()
	checkView(t, srv, m, m.Last(), "head")
}

// @<rev>/ views nobody uses are released (the kernel forgets them, their
// connection is closed) and come back on lookup; an open file keeps its
// view.
func TestRevGC(t *testing.T) {
	t.Parallel()
	zurl, m := smallFS(t)
	srv := wcfstest.Start(t, zurl, "-revgc.idle=300ms", "-v=1")
	at1, at2 := m.Transactions[1].Tid, m.Transactions[2].Tid
	f0 := m.Files["zf0"].Oid.String()
	p1 := srv.Path("@"+at1.String(), "bigfile", f0)
	p2 := srv.Path("@"+at2.String(), "bigfile", f0)
	readFile(t, p1)
	f2, err := os.Open(p2)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()

	// @at1 goes, @at2 stays (open)
	waitStat(t, srv, "RevHead\t: 1\n")
	if _, err := f2.ReadAt(make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	if !waitLog(srv, "@"+at1.String()+"/: released") {
		t.Errorf("@at1/ not released")
	}
	if strings.Contains(srv.Log(), "@"+at2.String()+"/: released") {
		t.Errorf("@at2/ released while a file of it is open")
	}
	// back on lookup, same content
	checkView(t, srv, m, m.Transactions[1], "@"+at1.String())
	f2.Close()
	waitStat(t, srv, "RevHead\t: 0\n")
}

// waitStat waits until .wcfs/stats contains line.
func waitStat(t *testing.T, srv *wcfstest.Server, line string) {
	t.Helper()
	var stats string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		stats = string(readFile(t, srv.Path(".wcfs", "stats")))
		if strings.Contains(stats, line) {
			return
		}
	}
	t.Fatalf(".wcfs/stats never had %q:\n%s", line, stats)
}
