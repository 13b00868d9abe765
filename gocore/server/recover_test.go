// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// fsTxn is the byte range of one transaction in a FileStorage file.
type fsTxn struct {
	tid        zodb.Tid
	start, end int64
}

// fsTxns splits a FileStorage file into its transactions (format of
// ZODB's FileStorage: "FS30" (or "FS21"), then per transaction tid, length, status,
// lengths of user/description/extension, those strings, data records, and
// the length again).
func fsTxns(t *testing.T, data []byte) []fsTxn {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("FS30")) && !bytes.HasPrefix(data, []byte("FS21")) {
		t.Fatal("not a FileStorage")
	}
	var txns []fsTxn
	for pos := int64(4); pos < int64(len(data)); {
		tid := zodb.Tid(binary.BigEndian.Uint64(data[pos:]))
		tlen := int64(binary.BigEndian.Uint64(data[pos+8:]))
		txns = append(txns, fsTxn{tid, pos, pos + tlen + 8})
		pos += tlen + 8
	}
	return txns
}

// corruptBTreeRecords makes the state pickle of every LOBTree/LOBucket
// record of transaction txn undecodable, keeping its length (FileStorage
// has no checksum: the storage serves it as is).
func corruptBTreeRecords(t *testing.T, data []byte, txn fsTxn) int {
	t.Helper()
	const txnFix, dataHdr = 8 + 8 + 1 + 2 + 2 + 2, 8 + 8 + 8 + 8 + 2 + 8
	p := txn.start
	ulen := int64(binary.BigEndian.Uint16(data[p+17:]))
	dlen := int64(binary.BigEndian.Uint16(data[p+19:]))
	elen := int64(binary.BigEndian.Uint16(data[p+21:]))
	n := 0
	for pos := p + txnFix + ulen + dlen + elen; pos < txn.end-8; {
		plen := int64(binary.BigEndian.Uint64(data[pos+34:]))
		rec := data[pos+dataHdr : pos+dataHdr+plen]
		if bytes.Contains(rec, []byte("LOBTree")) || bytes.Contains(rec, []byte("LOBucket")) {
			rec[len(rec)-1] = 0xff // STOP -> an opcode no decoder knows
			n++
		}
		if plen == 0 {
			plen = 8 // backpointer
		}
		pos += dataHdr + plen
	}
	return n
}

// A commit the block history cannot apply (its blktab record is
// unreadable) does not stop the server: the history recovers, the file
// concerned restarts at that commit with its cache dropped (reads of it
// fail while its records cannot be read), other files are unaffected, and a
// later commit that makes the file readable again brings it back.
func TestHistoryRecovery(t *testing.T) {
	t.Parallel()
	const bs = 64 << 10
	path := filepath.Join(t.TempDir(), "1.fs")
	db := testdb.Create(t, path)
	foid := db.CreateFile("f", bs, testdb.ZBlk0)
	goid := db.CreateFile("g", bs, testdb.ZBlk0)
	for blk := int64(0); blk < 4; blk++ {
		db.WriteBlock("f", blk, bytes.Repeat([]byte{byte('a' + blk)}, bs))
		db.WriteBlock("g", blk, bytes.Repeat([]byte{byte('A' + blk)}, bs))
	}
	db.Commit("t1")
	db.WriteBlock("f", 10, []byte("t2")) // the file grows: its blktab changes
	t2 := db.Commit("t2")
	db.WriteBlock("f", 11, []byte("t3"))
	t3 := db.Commit("t3")
	want := db.Manifest().Last().Files["f"]
	db.Close()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	txns := fsTxns(t, data)
	if len(txns) < 3 || txns[len(txns)-2].tid != t2 || txns[len(txns)-1].tid != t3 {
		t.Fatalf("transactions: %v", txns)
	}
	tx2, tx3 := txns[len(txns)-2], txns[len(txns)-1]
	if n := corruptBTreeRecords(t, data, tx2); n == 0 {
		t.Fatal("t2 has no LOBTree record")
	}

	// the server follows a copy that receives the transactions one by one
	served := filepath.Join(t.TempDir(), "served.fs")
	if err := os.WriteFile(served, data[:tx2.start], 0o644); err != nil {
		t.Fatal(err)
	}
	appendTxn := func(txn fsTxn) {
		t.Helper()
		f, err := os.OpenFile(served, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.Write(data[txn.start:txn.end]); err != nil {
			t.Fatal(err)
		}
	}
	srv := wcfstest.Start(t, "file://"+served)
	fpath := srv.Path("head", "bigfile", foid.String())
	gpath := srv.Path("head", "bigfile", goid.String())
	if got := readFile(t, fpath); len(got) != 4*bs {
		t.Fatalf("f before t2: %d bytes", len(got))
	}
	gdata := readFile(t, gpath)

	appendTxn(tx2)
	if !waitHeadAt(srv, t2) {
		t.Fatalf("head/at does not reach t2 @%s", t2)
	}
	if _, err := os.ReadFile(fpath); !errors.Is(err, syscall.EIO) {
		t.Errorf("read of f while its blktab is unreadable: %v, want EIO", err)
	}
	if got := readFile(t, gpath); !bytes.Equal(got, gdata) {
		t.Errorf("g after t2 (not concerned): wrong data")
	}
	if log := srv.Log(); !strings.Contains(log, "applied without knowing what it changed") {
		t.Errorf("the log does not say that the history recovered:\n%s", log)
	}

	appendTxn(tx3)
	if !waitHeadAt(srv, t3) {
		t.Fatalf("head/at does not reach t3 @%s", t3)
	}
	got := readFile(t, fpath)
	if sum := sha256.Sum256(got); int64(len(got)) != want.Size || hex.EncodeToString(sum[:]) != want.Sha256 {
		t.Errorf("f after t3 (readable again): %d bytes; want %d, sha256 %s", len(got), want.Size, want.Sha256)
	}
	if err := srv.Stop(); err != nil {
		t.Error(err)
	}
}
