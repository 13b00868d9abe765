// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package e2e

// The data path over distributed storage at the data-layer level: zdata reads
// the same ZBigFile bytes through zeo:// (a genuine ZEO server), neo:// and
// neos:// (a real NEO cluster) as through file:// from the FileStorage behind
// them, at every revision, with the same block provenance.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/neotest"
	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/zeotest"
	"wendelin.dev/wcfs/gocore/zdata"
	"wendelin.dev/wcfs/gocore/zurl"
)

// blkRead is what the data layer says about one block.
type blkRead struct {
	sha  string
	zblk zodb.Oid
	rev  zodb.Tid // BlkInfo.RevMax
	fmt  zdata.BlkFormat
}

// fileRead is one ZBigFile as of one revision.
type fileRead struct {
	size   int64
	sha    string // of the whole content
	blocks []blkRead
}

// readAll reads, through zdata over zurl, every file of the manifest that
// exists at each transaction: map[tid][file]fileRead.
func readAll(t *testing.T, zurl string, m *testdb.Manifest) map[zodb.Tid]map[string]fileRead {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db, closeDB := openDB(t, ctx, zurl)
	defer closeDB()

	out := map[zodb.Tid]map[string]fileRead{}
	for _, txn := range m.Transactions {
		zc, err := zdata.OpenConn(ctx, db, txn.Tid)
		if err != nil {
			t.Fatalf("%s: %v", zurl, err)
		}
		out[txn.Tid] = map[string]fileRead{}
		for name, f := range txn.Files {
			r, err := readFile(zc.Ctx(ctx), zc, f.Oid)
			if err != nil {
				t.Fatalf("%s: %s @%s: %v", zurl, name, txn.Tid, err)
			}
			out[txn.Tid][name] = r
		}
		zc.Close()
	}
	return out
}

// openDB opens the storage at zurl with zdata and a DB over it; closeDB
// closes both.
func openDB(tb testing.TB, ctx context.Context, zurlStr string) (db *zodb.DB, closeDB func()) {
	tb.Helper()
	stor, err := zdata.OpenStorage(ctx, zurl.MustParse(zurlStr))
	if err != nil {
		tb.Fatal(err)
	}
	db = zdata.NewDB(stor)
	return db, func() {
		db.Close()
		stor.Close()
	}
}

func readFile(ctx context.Context, zc *zdata.ZConn, oid zodb.Oid) (fileRead, error) {
	f, err := zc.LoadZBigFile(ctx, oid)
	if err != nil {
		return fileRead{}, err
	}
	size, _, err := f.Size(ctx)
	if err != nil {
		return fileRead{}, err
	}
	r := fileRead{size: size}
	whole := sha256.New()
	for blk := int64(0); blk*f.BlkSize() < size; blk++ {
		data, info, err := f.LoadBlk(ctx, blk)
		if err != nil {
			return fileRead{}, err
		}
		whole.Write(data)
		h := sha256.Sum256(data)
		r.blocks = append(r.blocks, blkRead{hex.EncodeToString(h[:]), info.ZBlk, info.RevMax, info.Format})
	}
	r.sha = hex.EncodeToString(whole.Sum(nil))
	return r, nil
}

func TestDataLayerSameBytes(t *testing.T) {
	m, fixture := testdb.SmallFixture(t)

	// the reference: the FileStorage itself, checked against the manifest
	want := readAll(t, "file://"+fixture, m)
	for _, txn := range m.Transactions {
		for name, f := range txn.Files {
			got := want[txn.Tid][name]
			if got.size != f.Size || got.sha != f.Sha256 {
				t.Fatalf("file:// %s @%s: size %d sha256 %s; manifest: %d %s", name, txn.Tid, got.size, got.sha, f.Size, f.Sha256)
			}
		}
	}

	zurls := map[string]func(t *testing.T) string{
		"zeo": func(t *testing.T) string {
			return zeotest.Start(t, testdb.CopyFS(t, fixture)).ZURL()
		},
		"neo": func(t *testing.T) string {
			return neotest.Start(t, fixture, neotest.Options{}).ZURL()
		},
		"neos": func(t *testing.T) string {
			return neotest.Start(t, fixture, neotest.Options{TLS: true}).ZURL()
		},
	}
	for name, serve := range zurls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			zurl := serve(t)
			got := readAll(t, zurl, m)
			for tid, files := range want {
				if len(got[tid]) != len(files) {
					t.Fatalf("@%s: %d files, want %d", tid, len(got[tid]), len(files))
				}
				for fname, w := range files {
					if d := diffFile(got[tid][fname], w); d != "" {
						t.Errorf("%s %s @%s: %s", zurl, fname, tid, d)
					}
				}
			}
		})
	}
}

// diffFile describes how got differs from want ("" when it does not).
func diffFile(got, want fileRead) string {
	if got.size != want.size || got.sha != want.sha {
		return fmt.Sprintf("size %d sha256 %s, want %d %s", got.size, got.sha, want.size, want.sha)
	}
	for i := range want.blocks {
		if got.blocks[i] != want.blocks[i] {
			return fmt.Sprintf("block %d: %+v, want %+v (as read from the FileStorage)", i, got.blocks[i], want.blocks[i])
		}
	}
	return ""
}
