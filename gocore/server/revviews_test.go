// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// revViewsMax is the server's bound of @<rev>/ views without open files.
const revViewsMax = 1024

// A client looking up 3,000 distinct revisions: the server does not keep
// a view for each until -revgc.idle (here 10 minutes) but releases the least
// recently used ones at once, down to its bound; a view with an open file
// is never released and keeps serving.
func TestRevViewsBounded(t *testing.T) {
	t.Parallel()
	const bs = 4 << 10
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	foid := db.CreateFile("f", bs, testdb.ZBlk0)
	db.WriteBlock("f", 0, randData(1, bs))
	at1 := db.Commit("at1")
	srv := wcfstest.Start(t, db.ZURL(), "-revgc.idle=10m")

	// the oldest view, with an open file
	f, err := os.Open(srv.Path("@"+at1.String(), "bigfile", foid.String()))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	ps := sampleProc(t, srv.PID)
	const nrev = 3000
	for i := 1; i <= nrev; i++ {
		var st syscall.Stat_t
		path := srv.Path("@" + (at1 - zodb.Tid(i)).String())
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatalf("stat %s: %v", path, err)
		}
	}
	var n int64
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if n = stats(t, srv)["RevHead"]; n <= revViewsMax {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf(".wcfs/stats: RevHead = %d a minute after looking up %d revisions; want <= %d", n, nrev+1, revViewsMax)
		}
	}
	threads, anon, err := ps.end()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d views left of %d; server: at most %d threads, RssAnon %d MiB", n, nrev+1, threads, anon>>20)

	buf := make([]byte, bs)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatalf("@%s: read after the views were trimmed: %v", at1, err)
	}
	if !bytes.Equal(buf, randData(1, bs)) {
		t.Errorf("@%s: block 0 differs after the views were trimmed", at1)
	}
}
