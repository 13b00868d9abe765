// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"math/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

func sha(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// checkView checks every file of txn as served under view ("head" or
// "@<tid>"): attributes, whole content, every block, reads around EOF, and
// that files of the manifest that do not exist in txn are EINVAL.
func checkView(t *testing.T, srv *wcfstest.Server, m *testdb.Manifest, txn *testdb.Txn, view string) {
	t.Helper()
	for name, fs := range txn.Files {
		path := srv.Path(view, "bigfile", fs.Oid.String())
		st := stat(t, path)
		if st.Mode != syscall.S_IFREG|0444 || st.Size != fs.Size || int64(st.Blksize) != fs.BlkSize {
			t.Errorf("%s (%s): mode %o size %d blksize %d; want 0444 %d %d",
				path, name, st.Mode, st.Size, st.Blksize, fs.Size, fs.BlkSize)
			continue
		}
		data := readFile(t, path)
		if int64(len(data)) != fs.Size || (fs.Sha256 != "" && sha(data) != fs.Sha256) {
			t.Errorf("%s (%s): content (%d bytes) differs from the manifest", path, name, len(data))
		}
		for blk := int64(0); blk < fs.NBlocks(); blk++ {
			b := pread(t, path, blk*fs.BlkSize, int(fs.BlkSize))
			if sha(b) != fs.BlockSha256(blk) {
				t.Errorf("%s (%s): block %d differs (len %d)", path, name, blk, len(b))
			}
			if !bytes.Equal(b, data[blk*fs.BlkSize:(blk+1)*fs.BlkSize]) {
				t.Errorf("%s: block %d read alone differs from the whole read", path, blk)
			}
		}
		// around and past EOF (spec 1.4)
		if fs.Size > 0 {
			if got := pread(t, path, fs.Size-3, 4); !bytes.Equal(got, data[fs.Size-3:]) {
				t.Errorf("%s: 4 bytes at size-3: %q, want %q", path, got, data[fs.Size-3:])
			}
		}
		for _, off := range []int64{fs.Size, fs.Size + 1, fs.Size + fs.BlkSize, 1 << 50} {
			if got := pread(t, path, off, 4096); len(got) != 0 {
				t.Errorf("%s: read at %d (size %d) returned %d bytes", path, off, fs.Size, len(got))
			}
		}
	}
	for name, id := range m.Files {
		if _, ok := txn.Files[name]; ok {
			continue
		}
		if _, ok := txn.Files[name]; !ok && fileExists(txn, id.Oid) {
			continue
		}
		_, err := os.Stat(srv.Path(view, "bigfile", id.Oid.String()))
		wantErrno(t, view+": "+name+" (not existing)", err, syscall.EINVAL)
	}
}

func fileExists(txn *testdb.Txn, oid zodb.Oid) bool {
	for _, fs := range txn.Files {
		if fs.Oid == oid {
			return true
		}
	}
	return false
}

// checkAllViews checks head/ and @<tid>/ of every transaction.
func checkAllViews(t *testing.T, srv *wcfstest.Server, m *testdb.Manifest) {
	t.Helper()
	checkView(t, srv, m, m.Last(), "head")
	for _, txn := range m.Transactions {
		if len(txn.Files) == 0 {
			continue
		}
		checkView(t, srv, m, txn, "@"+txn.Tid.String())
	}
}

// The shared genuine-ZODB fixture (2 MiB, 64 KiB, 4 KiB blocks, both
// formats, holes, rewrites, shrinks) at head and every revision.
func TestContentFixture(t *testing.T) {
	t.Parallel()
	zurl, m := smallFS(t)
	srv := wcfstest.Start(t, zurl)
	checkAllViews(t, srv, m)
}

// randData returns n deterministic pseudo-random bytes (seed), with the
// last quarter zero (so that stored data is shorter than the block).
func randData(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	clear(b[n-n/4:])
	return b
}

// genDB creates a database with files of 2 MiB, 64 KiB and 4 KiB blocks in
// all formats, holes, and several transactions.
func genDB(t *testing.T) *testdb.DB {
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	db.CreateFile("f2m", 2<<20, testdb.ZBlk0)
	db.CreateFile("f64k", 64<<10, testdb.ZBlk1)
	db.CreateFile("f4k", 4<<10, testdb.Auto)
	db.CreateFile("fleg", 64<<10, testdb.ZBlkLegacy)
	db.CreateFile("fempty", 4<<10, testdb.ZBlk0)
	db.WriteBlock("f2m", 0, randData(1, 2<<20))
	db.WriteBlock("f2m", 2, randData(2, 100000)) // hole at 1, short block
	db.WriteBlock("f64k", 0, randData(3, 64<<10))
	db.WriteBlock("f64k", 3, randData(4, 5000))
	db.WriteBlock("fleg", 1, randData(5, 64<<10))
	for blk := int64(0); blk < 90; blk += 3 {
		db.WriteBlock("f4k", blk, randData(100+blk, 4<<10))
	}
	db.Commit("t1")

	db.WriteBlockAs("f2m", 1, randData(6, 1<<20), testdb.ZBlk1) // fill the hole
	db.Write("f64k", 100, []byte("hello world"))                // patch a ZBlk1 chunk
	db.WriteBlock("f4k", 200, randData(7, 4<<10))               // append far away
	db.Commit("t2")

	db.DeleteBlock("f64k", 0)
	db.Truncate("f4k", 50)
	db.SetFormat("f2m", 2, testdb.ZBlk1)
	db.Commit("t3")
	return db
}

// Databases written by genuine ZODB through the toolkit: content at head
// and at every revision.
func TestContentGenerated(t *testing.T) {
	t.Parallel()
	db := genDB(t)
	m := db.Manifest()
	srv := wcfstest.Start(t, db.ZURL())
	checkAllViews(t, srv, m)
	// the same through mmap, for head
	for _, fs := range m.Last().Files {
		if fs.Size == 0 {
			continue
		}
		if got := mmapRead(t, srv.Path("head", "bigfile", fs.Oid.String()), fs.Size); sha(got) != fs.Sha256 {
			t.Errorf("head/bigfile/%s: mmap content differs", fs.Oid)
		}
	}
}

// mmapRead reads the file through a private mapping.
func mmapRead(t *testing.T, path string, size int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mem, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mem)
	return bytes.Clone(mem)
}
