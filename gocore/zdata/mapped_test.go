// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package zdata

import (
	"bytes"
	"context"
	"math/rand"
	"path/filepath"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
)

// mappedReady waits until stor's map of the data file has its index, and
// returns the map's error (the test fails if stor has no map).
func mappedReady(t *testing.T, stor zodb.IStorage) {
	t.Helper()
	s, ok := stor.(*storage)
	if !ok || s.mapped == nil {
		t.Fatalf("%T: no map of the data file", stor)
	}
	<-s.mapped.Ready()
	if err := s.mapped.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestLoadBlkSharedMapped: from a FileStorage, LoadBlkShared gives full
// ZBlk0 blocks in place in the data file's map, other blocks as before,
// all equal to LoadBlkInto's; after a commit the map follows.
func TestLoadBlkSharedMapped(t *testing.T) {
	const bs = 64 << 10
	rng := rand.New(rand.NewSource(1))
	block := func(n int) []byte {
		b := make([]byte, n)
		rng.Read(b)
		return b
	}
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	foid := db.CreateFile("f", bs, testdb.ZBlk0)
	db.WriteBlock("f", 0, block(bs))
	db.Write("f", 1*bs, block(100)) // a short ZBlk0 record: padded, copied
	db.WriteBlockAs("f", 2, block(bs), testdb.ZBlk1)
	db.WriteBlock("f", 3, block(bs))
	db.Commit("init")

	stor, zdb := openTestDB(t, db.Path())
	mappedReady(t, stor)
	ctx := context.Background()

	check := func(at zodb.Tid, wantMapped map[int64]bool) {
		t.Helper()
		zc := openTestConn(t, zdb, at)
		f, err := zc.LoadZBigFile(ctx, foid)
		if err != nil {
			t.Fatal(err)
		}
		fctx := zc.Ctx(ctx)
		want := make([]byte, bs)
		for blk := int64(0); blk < 5; blk++ {
			info, err := f.LoadBlkInto(fctx, blk, want)
			if err != nil {
				t.Fatal(err)
			}
			d, sinfo, err := f.LoadBlkShared(fctx, blk)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(d.Data, want) || sinfo.ZBlk != info.ZBlk || sinfo.ZRev != info.ZRev {
				t.Errorf("@%s blk %d: LoadBlkShared differs from LoadBlkInto", at, blk)
			}
			if mapped := d.rec.Data != nil; mapped != wantMapped[blk] {
				t.Errorf("@%s blk %d (%s): mapped %v, want %v", at, blk, info.Format, mapped, wantMapped[blk])
			}
			// a block in place can be read from data.fs where Source says
			if src, off, ok := d.Source(); ok != wantMapped[blk] {
				t.Errorf("@%s blk %d: Source ok %v, want %v", at, blk, ok, wantMapped[blk])
			} else if ok {
				got := make([]byte, bs)
				if _, err := src.ReadAt(got, off); err != nil || !bytes.Equal(got, want) {
					t.Errorf("@%s blk %d: Source %s@%d holds other bytes (%v)", at, blk, src.Name(), off, err)
				}
			}
			d.Release()
			d.Release() // no-op
		}
	}
	at1 := db.Head()
	check(at1, map[int64]bool{0: true, 3: true})

	// a commit after the map was made: loads at it index it first
	db.WriteBlock("f", 0, block(bs))
	db.WriteBlock("f", 4, block(bs))
	db.DeleteBlock("f", 3)
	at2 := db.Commit("change")
	if err := stor.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	check(at2, map[int64]bool{0: true, 4: true})
	check(at1, map[int64]bool{0: true, 3: true}) // the old revisions stay
}

// TestNoMmap: $WCFS_NO_MMAP turns the map off.
func TestNoMmap(t *testing.T) {
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	db.CreateFile("f", 64<<10, testdb.ZBlk0)
	db.Commit("init")
	db.Close()
	t.Setenv("WCFS_NO_MMAP", "1")
	stor, _ := openTestDB(t, db.Path())
	if s := stor.(*storage); s.mapped != nil {
		t.Fatal("mapped with $WCFS_NO_MMAP set")
	}
}
