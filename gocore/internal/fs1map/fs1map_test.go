// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package fs1map_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"
	"lab.nexedi.com/kirr/neo/go/zodb/storage/fs1"

	"wendelin.dev/wcfs/gocore/internal/fs1map"
	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/testenv"
)

// openDriver opens path with neo/go's FileStorage driver: the reference
// the map's loads are checked against.
func openDriver(t *testing.T, path string) *fs1.FileStorage {
	t.Helper()
	fs, _, err := fs1.Open(context.Background(), path, &zodb.DriverOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	return fs
}

func openMap(t *testing.T, path string, minSize int64) *fs1map.File {
	t.Helper()
	m, err := fs1map.Open(path, minSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	<-m.Ready()
	if err := m.Err(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return m
}

// history lists the tids of path's transactions and the oids it has.
func history(t *testing.T, path string) (tids []zodb.Tid, oids []zodb.Oid) {
	t.Helper()
	it, f, err := fs1.IterateFile(path, fs1.IterForward)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[zodb.Oid]bool{}
	for {
		err := it.NextTxn(fs1.LoadNoStrings)
		if err != nil {
			break
		}
		tids = append(tids, it.Txnh.Tid)
		for it.NextData() == nil {
			if !seen[it.Datah.Oid] {
				seen[it.Datah.Oid] = true
				oids = append(oids, it.Datah.Oid)
			}
		}
	}
	return tids, oids
}

// checkAll loads every object at every revision (and between revisions)
// through the map and the driver: what the map answers must be what the
// driver answers. It returns the number of loads the map answered.
func checkAll(t *testing.T, m *fs1map.File, drv *fs1.FileStorage, tids []zodb.Tid, oids []zodb.Oid) int {
	t.Helper()
	ctx := context.Background()
	var ats []zodb.Tid
	for _, tid := range tids {
		ats = append(ats, tid, tid+1)
	}
	n := 0
	for _, oid := range oids {
		for _, at := range ats {
			xid := zodb.Xid{Oid: oid, At: at}
			rec, serial, ok := m.Load(xid)
			if !ok {
				continue
			}
			n++
			buf, dserial, err := drv.Load(ctx, xid)
			if err != nil {
				t.Fatalf("%s: map answered (serial %s), driver: %v", xid, serial, err)
			}
			if serial != dserial || !bytes.Equal(rec.Data, buf.Data) {
				t.Fatalf("%s: map: serial %s, %d bytes; driver: serial %s, %d bytes", xid, serial, len(rec.Data), dserial, len(buf.Data))
			}
			buf.Release()
			checkLocate(t, xid, rec)
			rec.Release()
			rec.Release() // again: nothing
			if _, _, ok := rec.Locate(buf.Data); ok {
				t.Fatalf("%s: Locate after Release", xid)
			}
		}
	}
	return n
}

// checkLocate: the bytes Locate points to in the data file are the
// record's; slices outside the record are refused.
func checkLocate(t *testing.T, xid zodb.Xid, rec fs1map.Record) {
	t.Helper()
	n := len(rec.Data)
	for _, part := range [][2]int{{0, n}, {n / 3, n/3 + 1}, {n - 1, n}} {
		p := rec.Data[part[0]:part[1]]
		f, off, ok := rec.Locate(p)
		if !ok {
			t.Fatalf("%s: Locate(Data[%d:%d]) refused", xid, part[0], part[1])
		}
		got := make([]byte, len(p))
		if _, err := f.ReadAt(got, off); err != nil || !bytes.Equal(got, p) {
			t.Fatalf("%s: Locate(Data[%d:%d]) = %s@%d: other bytes there (%v)", xid, part[0], part[1], f.Name(), off, err)
		}
	}
	if _, _, ok := rec.Locate(bytes.Clone(rec.Data[:1])); ok {
		t.Fatalf("%s: Locate of memory outside the record accepted", xid)
	}
	if _, _, ok := rec.Locate(rec.Data[:0]); ok {
		t.Fatalf("%s: Locate of an empty slice accepted", xid)
	}
}

// newFile creates a database with a ZBigFile "f" of nblk blocks of
// pseudo-random data, not committed yet.
func newFile(t *testing.T, blksize int64, format testdb.Format, nblk int64) (*testdb.DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "1.fs")
	db := testdb.Create(t, path)
	db.CreateFile("f", blksize, format)
	for blk := int64(0); blk < nblk; blk++ {
		db.WriteBlock("f", blk, randBlock(blk, blksize))
	}
	return db, path
}

func randBlock(seed, size int64) []byte {
	b := make([]byte, size)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// TestLoad: databases written by genuine ZODB, ZBlk0 blocks of 64 KiB (big
// records) and 4 KiB (small ones), changed, deleted and rewritten over
// several transactions, some before the map is opened and some after (the
// index follows them lazily).
func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "1.fs")
	db := testdb.Create(t, path)
	db.CreateFile("big", 64<<10, testdb.ZBlk0)
	db.CreateFile("small", 4<<10, testdb.ZBlk0)
	for blk := int64(0); blk < 4; blk++ {
		db.WriteBlock("big", blk, randBlock(blk, 64<<10))
		db.WriteBlock("small", blk, randBlock(100+blk, 4<<10))
	}
	db.Commit("init")
	db.WriteBlock("big", 1, randBlock(11, 64<<10))
	db.Commit("change 1")

	drv := openDriver(t, path)
	m := openMap(t, path, fs1map.MinSize)
	tids, oids := history(t, path)
	if n := checkAll(t, m, drv, tids, oids); n == 0 {
		t.Fatal("the map answered no load")
	}

	// commits after Open: loads at them index them first
	db.WriteBlock("big", 2, randBlock(22, 64<<10))
	db.WriteBlock("big", 5, randBlock(55, 64<<10))
	db.Commit("change 2, add 5")
	db.DeleteBlock("big", 0)
	db.Write("big", 3*64<<10+100, []byte("short")) // the block stays a full record
	db.Commit("delete 0, write into 3")
	db.Close()
	drv.Close()
	drv = openDriver(t, path)
	tids, oids = history(t, path)
	n := checkAll(t, m, drv, tids, oids)

	// every 64 KiB block at the head comes from the map
	head := tids[len(tids)-1]
	big := 0
	for _, oid := range oids {
		buf, _, err := drv.Load(context.Background(), zodb.Xid{Oid: oid, At: head})
		if err != nil || len(buf.Data) < fs1map.MinSize {
			continue
		}
		big++
		if _, _, ok := m.Load(zodb.Xid{Oid: oid, At: head}); !ok {
			t.Errorf("%s at head (%d bytes): the map did not answer", oid, len(buf.Data))
		}
	}
	if big < 5 {
		t.Fatalf("%d big records at head, want at least 5", big)
	}
	t.Logf("%d loads answered by the map, %d big records at head", n, big)

	// a load at a revision past the end of the file: not answered
	if _, _, ok := m.Load(zodb.Xid{Oid: oids[0], At: head + 1000}); ok {
		t.Error("load past the last transaction answered")
	}
}

// TestLoadSmallRecords: with a small minSize the map indexes objects with
// small records too (BTree nodes, ZBigFile): every answer still matches.
func TestLoadSmallRecords(t *testing.T) {
	path := filepath.Join(t.TempDir(), "1.fs")
	db := testdb.Create(t, path)
	db.CreateFile("f", 4<<10, testdb.ZBlk1)
	for blk := int64(0); blk < 8; blk++ {
		db.WriteBlock("f", blk, randBlock(blk, 4<<10))
		if blk%3 == 0 {
			db.Commit("w")
		}
	}
	db.Commit("w")
	db.Close()
	m := openMap(t, path, 1)
	tids, oids := history(t, path)
	if n := checkAll(t, m, openDriver(t, path), tids, oids); n < len(oids) {
		t.Fatalf("the map answered %d loads, want at least %d (one per object)", n, len(oids))
	}
}

// TestSharedFixtures: the genuine-ZODB databases in ../shared (Python 2 and
// 3 era pickles, ZBlk0 and ZBlk1).
func TestSharedFixtures(t *testing.T) {
	dir := testenv.SharedZODB(t)
	paths, _ := filepath.Glob(filepath.Join(dir, "*.fs"))
	if len(paths) == 0 {
		t.Skip("no fixtures")
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			path := testdb.CopyFS(t, p)
			m := openMap(t, path, 1)
			tids, oids := history(t, path)
			n := checkAll(t, m, openDriver(t, path), tids, oids)
			t.Logf("%d transactions, %d objects, %d loads answered", len(tids), len(oids), n)
		})
	}
}

// lastTxn returns the bytes of the last transaction of the file at path.
func lastTxn(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := int64(binary.BigEndian.Uint64(data[len(data)-8:])) // the redundant length
	return data[int64(len(data))-n-8:]
}

func appendFile(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTail: a transaction being committed (status 'c') or written halfway
// at the end of the file is not indexed, and the rest still is; garbage
// makes the map decline everything (the driver reports the damage).
func TestTail(t *testing.T) {
	db, path := newFile(t, 64<<10, testdb.ZBlk0, 1)
	db.Commit("init")
	db.WriteBlock("f", 1, randBlock(2, 64<<10))
	db.Commit("the tail")
	db.Close()
	tids, oids := history(t, path)
	txn := lastTxn(t, path)
	// without the last transaction
	tids = tids[:len(tids)-1]
	head := tids[len(tids)-1]

	// the reference: the whole file (neo/go cannot open a file ending
	// with half a transaction), up to head
	drv := openDriver(t, path)
	check := func(t *testing.T, m *fs1map.File) {
		t.Helper()
		if n := checkAll(t, m, drv, tids, oids); n == 0 {
			t.Fatal("the map answered no load")
		}
		if _, _, ok := m.Load(zodb.Xid{Oid: oids[0], At: head + 1}); ok {
			t.Fatal("a load after the last committed transaction was answered")
		}
		if err := m.Err(); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("inprogress", func(t *testing.T) {
		p := testdb.CopyFS(t, path)
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		st, _ := f.Stat()
		// the status byte of the last transaction: as during tpc_vote
		if _, err := f.WriteAt([]byte{'c'}, st.Size()-int64(len(txn))+16); err != nil {
			t.Fatal(err)
		}
		f.Close()
		check(t, openMap(t, p, 0))
	})
	t.Run("halfway", func(t *testing.T) {
		p := testdb.CopyFS(t, path)
		st, _ := os.Stat(p)
		if err := os.Truncate(p, st.Size()-int64(len(txn))/2); err != nil {
			t.Fatal(err)
		}
		os.Remove(p + ".index") // it covers the whole transaction
		check(t, openMap(t, p, 0))
	})
	t.Run("garbage", func(t *testing.T) {
		p := testdb.CopyFS(t, path)
		appendFile(t, p, bytes.Repeat([]byte{0xff}, 100))
		m, err := fs1map.Open(p, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		<-m.Ready()
		if m.Err() == nil {
			t.Fatal("garbage after the last transaction: no error")
		}
		for _, oid := range oids {
			if _, _, ok := m.Load(zodb.Xid{Oid: oid, At: head}); ok {
				t.Fatalf("%s: answered by a map whose scan failed", oid)
			}
		}
	})
}

// TestClose: a record stays readable until released, after Close; loads
// after Close are declined.
func TestClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "1.fs")
	db := testdb.Create(t, path)
	db.CreateFile("f", 64<<10, testdb.ZBlk0)
	want := randBlock(7, 64<<10)
	db.WriteBlock("f", 0, want)
	db.Commit("init")
	db.Close()
	tids, oids := history(t, path)
	head := tids[len(tids)-1]

	m, err := fs1map.Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	<-m.Ready()
	var rec fs1map.Record
	for _, oid := range oids {
		if r, _, ok := m.Load(zodb.Xid{Oid: oid, At: head}); ok {
			rec = r
			break
		}
	}
	if rec.Data == nil {
		t.Fatal("no record answered")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(rec.Data, want) {
		t.Fatal("the record held over Close does not have the block's data")
	}
	rec.Release()
	if _, _, ok := m.Load(zodb.Xid{Oid: oids[0], At: head}); ok {
		t.Fatal("load after Close answered")
	}
	if err := m.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

// TestOpenErrors: what is not a FileStorage is refused at Open.
func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := fs1map.Open(filepath.Join(dir, "none.fs"), 0); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.fs")
	os.WriteFile(bad, []byte("not a filestorage"), 0o644)
	if _, err := fs1map.Open(bad, 0); err == nil {
		t.Error("a file without FileStorage magic was opened")
	}
}

// seed.fs (testdata) is a small FileStorage written by genuine ZODB 6:
// records of 50 to 3000 bytes over four transactions, the last one an
// undo of the one before it (its records are backpointers).
const seedFS = "testdata/seed.fs"

// TestUndo: records of an undo are backpointers to older records; the map
// follows them as the driver does.
func TestUndo(t *testing.T) {
	path := testdb.CopyFS(t, seedFS)
	m := openMap(t, path, 1)
	tids, oids := history(t, path)
	if len(tids) != 5 {
		t.Fatalf("%d transactions in %s, want 5", len(tids), seedFS)
	}
	if n := checkAll(t, m, openDriver(t, path), tids, oids); n == 0 {
		t.Fatal("the map answered no load")
	}
}

// FuzzLoad: whatever the data file holds, the map neither crashes nor
// answers a load that the driver does not answer the same way.
func FuzzLoad(f *testing.F) {
	seed, err := os.ReadFile(seedFS)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	log.SetOutput(io.Discard) // neo/go's "index rebuild..." for every input
	f.Fuzz(func(t *testing.T, data []byte) {
		// the file in memory: nothing is left on disk when the fuzzer
		// kills a worker in the middle of an input
		fd, err := unix.MemfdCreate("fs1map-fuzz", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		if _, err := unix.Write(fd, data); err != nil {
			t.Fatal(err)
		}
		path := fmt.Sprintf("/proc/self/fd/%d", fd)
		m, err := fs1map.Open(path, 1)
		if err != nil {
			return
		}
		defer m.Close()
		<-m.Ready()
		drv := openFuzzDriver(path) // nil if it fails
		if drv != nil {
			defer drv.Close()
		}
		ats := []zodb.Tid{0, 1, zodb.TidMax - 1}
		if len(data) >= 12 {
			ats = append(ats, zodb.Tid(binary.BigEndian.Uint64(data[4:12])))
		}
		for oid := zodb.Oid(0); oid < 8; oid++ {
			for _, at := range ats {
				xid := zodb.Xid{Oid: oid, At: at}
				rec, serial, ok := m.Load(xid)
				if !ok {
					continue
				}
				if drv != nil {
					buf, dserial, err := loadFuzz(drv, xid)
					if err == nil && (dserial != serial || !bytes.Equal(buf, rec.Data)) {
						t.Fatalf("%s: map and driver differ", xid)
					}
				}
				rec.Release()
			}
		}
	})
}

// openFuzzDriver opens path with neo/go's driver, nil when it fails or
// panics (its decoders panic on some damaged headers).
func openFuzzDriver(path string) (drv *fs1.FileStorage) {
	defer func() {
		if recover() != nil {
			drv = nil
		}
	}()
	drv, _, err := fs1.Open(context.Background(), path, &zodb.DriverOptions{ReadOnly: true})
	if err != nil {
		return nil
	}
	return drv
}

func loadFuzz(drv *fs1.FileStorage, xid zodb.Xid) (data []byte, serial zodb.Tid, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	buf, serial, err := drv.Load(context.Background(), xid)
	if err != nil {
		return nil, 0, err
	}
	return buf.Data, serial, nil
}

// TestConcurrent: loads from several goroutines while genuine ZODB commits
// (each load at the newest revision indexes what was appended), then a
// Close racing with loads; the race detector watches.
func TestConcurrent(t *testing.T) {
	db, path := newFile(t, 64<<10, testdb.ZBlk0, 4)
	var head atomic.Uint64 // the last commit: loads at it
	tid0 := db.Commit("init")
	head.Store(uint64(tid0))
	var newer atomic.Int64 // loads answered with a record committed after Open
	m, err := fs1map.Open(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	<-m.Ready()
	_, oids := history(t, path)

	stop := make(chan struct{})
	done := make(chan int)
	for g := 0; g < 4; g++ {
		go func() {
			n := 0
			for {
				select {
				case <-stop:
					done <- n
					return
				default:
				}
				for _, oid := range oids {
					if rec, serial, ok := m.Load(zodb.Xid{Oid: oid, At: zodb.Tid(head.Load())}); ok {
						_ = rec.Data[len(rec.Data)-1] // the record is readable
						if serial > tid0 {
							newer.Add(1)
						}
						rec.Release()
						n++
					}
				}
			}
		}()
	}
	for i := int64(0); i < 5; i++ {
		db.WriteBlock("f", i%4, randBlock(10+i, 64<<10))
		head.Store(uint64(db.Commit("change")))
	}
	db.Close()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	close(stop)
	n := 0
	for g := 0; g < 4; g++ {
		n += <-done
	}
	if n == 0 || newer.Load() == 0 {
		t.Fatalf("%d loads answered, %d of records committed after Open; want both > 0", n, newer.Load())
	}
}
