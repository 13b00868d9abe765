// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"
	"lab.nexedi.com/kirr/neo/go/zodb/btree"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/zdata"
)

// blktabRecords returns every LOBTree and LOBucket record of the storage at
// path, with its oid and revision.
func blktabRecords(ctx context.Context, t *testing.T, path string) (zodb.IStorage, []zodb.DataInfo) {
	t.Helper()
	stor, err := zdata.OpenStorage(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stor.Close() })
	var recs []zodb.DataInfo
	testdb.EachRecord(ctx, t, stor, func(_ *zodb.TxnInfo, d *zodb.DataInfo) {
		if d == nil {
			return
		}
		switch zodb.PyData(d.Data).ClassName() {
		case classLOBTree, classLOBucket:
			recs = append(recs, zodb.DataInfo{Oid: d.Oid, Tid: d.Tid, Data: slices.Clone(d.Data)})
		}
	})
	return stor, recs
}

// TestDecodeVsBTree decodes every blktab record of the genuine-ZODB
// fixtures (Python 3 and Python 2 pickles) and compares with what neo/go's
// btree package loads through a connection.
func TestDecodeVsBTree(t *testing.T) {
	ctx := context.Background()
	dir := testdb.SharedZODB(t)
	paths, _ := filepath.Glob(filepath.Join(dir, "upstream", "*.fs"))
	paths = append(paths, filepath.Join(dir, "small.fs"))
	ntree, nbucket, ninline, nslow := 0, 0, 0, 0
	for _, path := range paths {
		stor, recs := blktabRecords(ctx, t, path)
		db := zdata.NewDB(stor)
		for _, r := range recs {
			zc, err := zdata.OpenConn(ctx, db, r.Tid)
			if err != nil {
				t.Fatal(err)
			}
			cctx := zc.Ctx(ctx)
			obj, err := zc.Get(cctx, r.Oid)
			if err != nil {
				t.Fatal(err)
			}
			where := fmt.Sprintf("%s: %s @%s", filepath.Base(path), r.Oid, r.Tid)
			switch obj := obj.(type) {
			case *btree.LOBTree:
				ntree++
				if _, ok := fastTree(r.Data); !ok {
					nslow++
				}
				st, err := decodeTree(r.Data)
				if err != nil {
					t.Fatalf("%s: %s", where, err)
				}
				if slow, err := slowDecodeTree(r.Data); err != nil || !reflect.DeepEqual(st, slow) {
					t.Fatalf("%s: %+v; general decoder: %+v, %v", where, st, slow, err)
				}
				if err := obj.PActivate(cctx); err != nil {
					t.Fatal(err)
				}
				ev := obj.Entryv()
				switch {
				case st.isInline:
					ninline++
					b := ev[0].Child().(*btree.LOBucket)
					if len(ev) != 1 || b.POid() != zodb.InvalidOid || !sameEntries(st.inline, b) {
						t.Fatalf("%s: inline bucket %v differs", where, st.inline)
					}
				default:
					if len(ev) != len(st.kids) {
						t.Fatalf("%s: %d kids; btree: %d", where, len(st.kids), len(ev))
					}
					for i, e := range ev {
						_, isBucket := e.Child().(*btree.LOBucket)
						if e.Child().POid() != st.kids[i] || isBucket != (st.kidKind == kindBucket) {
							t.Fatalf("%s: kid %d: %s kind %d; btree: %s %T", where, i, st.kids[i], st.kidKind, e.Child().POid(), e.Child())
						}
					}
				}
				obj.PDeactivate()
			case *btree.LOBucket:
				nbucket++
				if _, ok := fastBucket(r.Data); !ok {
					nslow++
				}
				ev, err := decodeBucket(r.Data)
				if err != nil {
					t.Fatalf("%s: %s", where, err)
				}
				if slow, err := slowDecodeBucket(r.Data); err != nil || !slices.Equal(ev, slow) {
					t.Fatalf("%s: %v; general decoder: %v, %v", where, ev, slow, err)
				}
				if err := obj.PActivate(cctx); err != nil {
					t.Fatal(err)
				}
				if !sameEntries(ev, obj) {
					t.Fatalf("%s: entries %v differ", where, ev)
				}
				obj.PDeactivate()
			default:
				t.Fatalf("%s: %T", where, obj)
			}
			zc.Close()
		}
		db.Close()
	}
	if ntree == 0 || nbucket == 0 || ninline == 0 {
		t.Fatalf("fixtures hold %d trees (%d inline), %d buckets", ntree, ninline, nbucket)
	}
	if nslow > 0 {
		t.Errorf("the fast path gave up on %d of %d genuine records", nslow, ntree+nbucket)
	}
	if os.Getenv("WCFS_HISTORY_WRITE_SEEDS") != "" {
		writeSeeds(ctx, t, paths)
	}
}

func sameEntries(ev []entry, b *btree.LOBucket) bool {
	bev := b.Entryv()
	if len(ev) != len(bev) {
		return false
	}
	for i, e := range bev {
		if e.Key() != ev[i].key || e.Value().(zodb.IPersistent).POid() != ev[i].val {
			return false
		}
	}
	return true
}

// writeSeeds writes blktab records of the fixtures as the fuzz seed corpus.
func writeSeeds(ctx context.Context, t *testing.T, paths []string) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		_, recs := blktabRecords(ctx, t, path)
		seen := make(map[string]bool)
		for _, r := range recs {
			name := fmt.Sprintf("%s-%s-%d", filepath.Base(path), zodb.PyData(r.Data).ClassName(), len(r.Data)/256)
			if seen[name] {
				continue
			}
			seen[name] = true
			data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", r.Data)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// FuzzDecode: decoding never panics, what decodes is a valid node, and the
// fast path agrees with the general decoder whenever it answers.
func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, rec []byte) {
		if st, ok := fastTree(rec); ok {
			slow, err := slowDecodeTree(rec)
			if err != nil || !reflect.DeepEqual(st, slow) {
				t.Fatalf("fast tree %+v; general decoder: %+v, %v", st, slow, err)
			}
		}
		if ev, ok := fastBucket(rec); ok {
			slow, err := slowDecodeBucket(rec)
			if err != nil || !slices.Equal(ev, slow) {
				t.Fatalf("fast bucket %v; general decoder: %v, %v", ev, slow, err)
			}
		}
		if st, err := decodeTree(rec); err == nil {
			if st.isInline && len(st.kids) > 0 || len(st.kids) > 0 && st.kidKind != kindTree && st.kidKind != kindBucket {
				t.Fatalf("invalid tree state %+v", st)
			}
			checkEntries(t, st.inline)
		}
		if ev, err := decodeBucket(rec); err == nil {
			checkEntries(t, ev)
		}
	})
}

func checkEntries(t *testing.T, ev []entry) {
	for i, e := range ev {
		if e.val == 0 || (i > 0 && e.key <= ev[i-1].key) {
			t.Fatalf("invalid entries %v", ev)
		}
	}
}
