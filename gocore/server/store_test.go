// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/server"
	"wendelin.dev/wcfs/gocore/zurl"
)

// Page cache stores of blocks in place go by splice from data.fs, other
// blocks by write; with WCFS_NO_SPLICE=1 all by write. Either way a
// sequential read returns the data (most of it from the stored pages), and
// so does a second read, from the page cache alone. The server runs in
// this process, to see its counters.
func TestStoreSplice(t *testing.T) {
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	db.CreateFile("f", 2<<20, testdb.ZBlk0)
	for blk := int64(0); blk < 6; blk++ {
		b := make([]byte, 2<<20) // full blocks: records in place
		rand.New(rand.NewSource(blk)).Read(b)
		db.WriteBlock("f", blk, b)
	}
	db.WriteBlock("f", 6, randData(6, 100000)) // a short block: copied
	db.Commit("t1")
	fs := db.Manifest().Last().Files["f"]

	for _, mode := range []string{"splice", "write"} {
		t.Run(mode, func(t *testing.T) {
			if mode == "write" {
				t.Setenv("WCFS_NO_SPLICE", "1")
			}
			s, mnt, stop := mountInProcess(t, db, server.Options{})

			path := filepath.Join(mnt, "head", "bigfile", fs.Oid.String())
			for pass := range 2 {
				if got := readSha(t, path, 2<<20); got != fs.Sha256 {
					t.Fatalf("pass %d: content differs", pass)
				}
			}
			stop() // the uploads are done: the counters are final
			st := s.Stats()
			spliced, written := st.StoredSplice.Load(), st.StoredWrite.Load()
			t.Logf("stored by splice %d, by write %d bytes", spliced, written)
			if written == 0 {
				t.Error("nothing stored by write (the short block)")
			}
			switch mode {
			case "splice":
				if spliced < 2<<20 {
					t.Errorf("stored by splice %d bytes, want the blocks in place", spliced)
				}
			case "write":
				if spliced != 0 {
					t.Errorf("WCFS_NO_SPLICE=1: %d bytes stored by splice", spliced)
				}
			}
		})
	}
}

// readSha reads path sequentially in pieces of n bytes; it returns the
// content's sha256 in hex.
func readSha(t *testing.T, path string, n int) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// A read of part of block N loads block N only and uploads the rest of it
// into the page cache, as the reference does (its tests check the page
// cache block by block); with -prefetch (Options.Prefetch) a sequential
// reader also gets the next blocks loaded and uploaded.
func TestPrefetchOption(t *testing.T) {
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	db.CreateFile("f", 2<<20, testdb.ZBlk0)
	const nblk = 6
	for blk := int64(0); blk < nblk; blk++ {
		db.WriteBlock("f", blk, randData(blk, 2<<20))
	}
	db.Commit("t1")
	foid := db.Manifest().Last().Files["f"].Oid

	for _, tt := range []struct {
		prefetch   int64
		wantLoaded int64
	}{
		{0, 1},           // the default: block 0 only
		{16 << 20, nblk}, // the whole file (8 blocks ahead, 6 in the file)
		{4 << 20, 1 + 2}, // block 0 and the next 2
	} {
		t.Run(fmt.Sprintf("prefetch=%d", tt.prefetch), func(t *testing.T) {
			s, mnt, stop := mountInProcess(t, db, server.Options{Prefetch: tt.prefetch})
			path := filepath.Join(mnt, "head", "bigfile", foid.String())
			m := mapFile(t, path, nblk*(2<<20), 2<<20)
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4096)
			if _, err := f.ReadAt(buf, 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
			// the blocks loaded end up in the page cache in full
			full := (2 << 20) / os.Getpagesize()
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
				n := 0
				for blk := int64(0); blk < tt.wantLoaded; blk++ {
					n += m.cached(t, blk)
				}
				if n == int(tt.wantLoaded)*full {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("blocks [0, %d) not in the page cache after a minute (%d of %d pages)", tt.wantLoaded, n, int(tt.wantLoaded)*full)
				}
			}
			for blk := tt.wantLoaded; blk < nblk; blk++ {
				if n := m.cached(t, blk); n != 0 {
					t.Errorf("block %d: %d pages in the page cache, want none", blk, n)
				}
			}
			m.unmap() // (a mapping keeps the mount busy)
			stop()    // uploads and prefetches are done: the counter is final
			if got := s.Stats().Loaded.Load(); got != tt.wantLoaded {
				t.Errorf("blocks loaded: %d, want %d", got, tt.wantLoaded)
			}
		})
	}
}

// mountInProcess serves db in this process (for its Stats) with opt at a
// new mountpoint; stop (also a cleanup of t) unmounts it and waits for the
// server's end, once.
func mountInProcess(t *testing.T, db *testdb.DB, opt server.Options) (s *server.Server, mnt string, stop func()) {
	t.Helper()
	mnt = filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	opt.ZURL, opt.Mountpoint = zurl.MustParse(db.ZURL()), mnt
	s, err := server.Open(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Mount(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := s.Unmount(); err != nil {
				t.Errorf("unmount: %s", err)
				return
			}
			if err := s.Wait(); err != nil {
				t.Errorf("wait: %s", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, mnt, stop
}
