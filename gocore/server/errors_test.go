// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// A block that cannot be loaded (a ZBlk record of an unknown class) gives
// EIO for the reads of that block only; the server keeps serving the rest.
func TestEIO(t *testing.T) {
	t.Parallel()
	const bs = 64 << 10
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	foid := db.CreateFile("f", bs, testdb.ZBlk0)
	goid := db.CreateFile("g", bs, testdb.ZBlk0)
	marker := bytes.Repeat([]byte("EIO-MARKER-"), 100)
	db.WriteBlock("f", 0, randData(1, bs))
	db.WriteBlock("f", 1, marker)
	db.WriteBlock("f", 2, randData(2, bs))
	db.WriteBlock("g", 0, randData(3, bs))
	db.Commit("t1")
	db.Close()

	// damage the class of the ZBlk record holding block 1
	data, err := os.ReadFile(db.Path())
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(data, marker)
	cls := bytes.LastIndex(data[:at], []byte("ZBlk0\n"))
	if at < 0 || cls < 0 {
		t.Fatalf("ZBlk record of block 1 not found in %s", db.Path())
	}
	copy(data[cls:], "ZBlkX\n")
	if err := os.WriteFile(db.Path(), data, 0644); err != nil {
		t.Fatal(err)
	}

	srv := wcfstest.Start(t, db.ZURL())
	f := srv.Path("head", "bigfile", foid.String())
	for i := 0; i < 2; i++ { // not cached: every read fails
		_, err := readAt(f, 1*bs, bs)
		wantErrno(t, "read of the damaged block", err, syscall.EIO)
	}
	if got := pread(t, f, 0, bs); !bytes.Equal(got, randData(1, bs)) {
		t.Errorf("block 0 next to the damaged block: wrong data")
	}
	if got := pread(t, f, 2*bs, bs); !bytes.Equal(got, randData(2, bs)) {
		t.Errorf("block 2 next to the damaged block: wrong data")
	}
	if got := pread(t, srv.Path("head", "bigfile", goid.String()), 0, bs); !bytes.Equal(got, randData(3, bs)) {
		t.Errorf("another file: wrong data")
	}
	if !strings.Contains(srv.Log(), "ZBlkX") {
		t.Errorf("log does not name the problem:\n%s", srv.Log())
	}
}

// readAt reads n bytes at off and returns the error of the read.
func readAt(path string, off int64, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, n)
	k, err := f.ReadAt(buf, off)
	return buf[:k], err
}
