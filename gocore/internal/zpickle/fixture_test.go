// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zpickle

// The records of the databases written by genuine Python ZODB in
// ../shared/testdata/zodb: small.fs (Python 3) and the reference
// implementation's decoder fixtures upstream/*.fs (Python 2 pickle protocols
// 1, 2, 3 and Python 3 protocol 3).

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"lab.nexedi.com/kirr/neo/go/transaction"
	"lab.nexedi.com/kirr/neo/go/zodb"
	"lab.nexedi.com/kirr/neo/go/zodb/btree"
	_ "lab.nexedi.com/kirr/neo/go/zodb/storage/fs1"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/testenv"
)

// fixtures returns the paths of the fixture databases, or skips.
func fixtures(t *testing.T) []string {
	dir := testenv.SharedZODB(t)
	paths, _ := filepath.Glob(filepath.Join(dir, "upstream", "*.fs"))
	return append(paths, filepath.Join(dir, "small.fs"))
}

func openFS(ctx context.Context, t *testing.T, path string) zodb.IStorage {
	stor, err := zodb.Open(ctx, "file://"+path, &zodb.OpenOptions{ReadOnly: true, NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stor.Close() })
	return stor
}

// TestFixtures decodes every record of the fixtures of a class WCFS reads,
// checks it against og-rek, and BTrees nodes against neo/go's btree package
// (which loads them through a connection).
func TestFixtures(t *testing.T) {
	ctx := context.Background()
	nnode := map[string]int{}
	for _, path := range fixtures(t) {
		stor := openFS(ctx, t, path)
		db := zodb.NewDB(stor, &zodb.DBOptions{})
		t.Cleanup(func() { db.Close() })
		n := map[string]int{}
		testdb.EachRecord(ctx, t, stor, func(_ *zodb.TxnInfo, d *zodb.DataInfo) {
			if d == nil || d.Data == nil {
				return
			}
			where := fmt.Sprintf("%s: %s @%s", filepath.Base(path), d.Oid, d.Tid)
			class, err := Class(d.Data)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			switch class {
			case ClassZBigFile:
				_, _, err = DecodeZBigFile(d.Data)
			case ClassZBlk0, ClassZBlk, ClassZData:
				_, _, err = DecodeBytes(d.Data)
			case ClassZBlk1:
				_, _, err = DecodeRef(d.Data)
			case ClassLOBTree, ClassLOBucket, ClassIOBTree, ClassIOBucket:
				f := LO
				if strings.HasPrefix(class, "BTrees.IOBTree.") {
					f = IO
				}
				var node Node
				if node, err = DecodeNode(d.Data, f); err == nil {
					sameAsBTree(ctx, t, where, db, d, node)
					nnode[nodeLayout(node)]++
				}
			default:
				return
			}
			if err != nil {
				t.Fatalf("%s: %s: %v", where, class, err)
			}
			checkRecord(t, d.Data)
			n[Short(class)]++
		})
		t.Logf("%s: %v", filepath.Base(path), n)
	}
	t.Logf("BTrees nodes: %v", nnode)
	for _, l := range []string{"tree of buckets", "inline bucket", "bucket", "bucket with next", "empty tree"} {
		if nnode[l] == 0 {
			t.Errorf("the fixtures hold no %s", l)
		}
	}
	if os.Getenv("ZPICKLE_GEN_SEEDS") != "" {
		genSeeds(ctx, t)
	}
}

func nodeLayout(n Node) string {
	switch {
	case n.Kind == Bucket && n.Next != zodb.InvalidOid:
		return "bucket with next"
	case n.Kind == Bucket:
		return "bucket"
	case n.Inline:
		return "inline bucket"
	case len(n.Kids) == 0:
		return "empty tree"
	case n.KidKind == Tree:
		return "tree of trees"
	}
	return "tree of buckets"
}

// sameAsBTree checks that neo/go loads the node d as n.
func sameAsBTree(ctx context.Context, t *testing.T, where string, db *zodb.DB, d *zodb.DataInfo, n Node) {
	txn, tctx := transaction.New(ctx)
	defer txn.Abort()
	conn, err := db.Open(tctx, &zodb.ConnOptions{At: d.Tid, NoPool: true})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := conn.Get(tctx, d.Oid)
	if err != nil {
		t.Fatal(err)
	}
	if err := obj.PActivate(tctx); err != nil {
		t.Fatalf("%s: neo/go: %v", where, err)
	}
	defer obj.PDeactivate()
	want := Node{FirstBucket: zodb.InvalidOid, Next: zodb.InvalidOid}
	bucket := func(b any) {
		var next zodb.IPersistent
		switch b := b.(type) {
		case *btree.LOBucket:
			for _, e := range b.Entryv() {
				want.Entries = append(want.Entries, Entry{e.Key(), e.Value().(zodb.IPersistent).POid()})
			}
			next = b.Next()
		case *btree.IOBucket:
			for _, e := range b.Entryv() {
				want.Entries = append(want.Entries, Entry{int64(e.Key()), e.Value().(zodb.IPersistent).POid()})
			}
			next = b.Next()
		}
		if want.Entries == nil {
			want.Entries = []Entry{}
		}
		if !reflect.ValueOf(next).IsNil() {
			want.Next = next.POid()
		}
	}
	kid := func(i int, key int64, child zodb.IPersistent, first zodb.IPersistent) {
		if i == 0 && child.POid() == zodb.InvalidOid {
			want.Inline = true
			bucket(child)
			return
		}
		if i > 0 {
			want.Keys = append(want.Keys, key)
		} else {
			want.Keys = append(want.Keys, 0)
		}
		want.Kids = append(want.Kids, child.POid())
		want.KidKind = Bucket
		switch child.(type) {
		case *btree.LOBTree, *btree.IOBTree:
			want.KidKind = Tree
		}
		want.FirstBucket = first.POid()
	}
	switch obj := obj.(type) {
	case *btree.LOBTree:
		want.Kind = Tree
		for i, e := range obj.Entryv() {
			kid(i, e.Key(), e.Child(), obj.FirstBucket())
		}
	case *btree.IOBTree:
		want.Kind = Tree
		for i, e := range obj.Entryv() {
			kid(i, int64(e.Key()), e.Child(), obj.FirstBucket())
		}
	case *btree.LOBucket, *btree.IOBucket:
		want.Kind = Bucket
		bucket(obj)
	default:
		t.Fatalf("%s: neo/go: %T", where, obj)
	}
	if !reflect.DeepEqual(n, want) {
		t.Fatalf("%s:\ndecoded %+v\nneo/go  %+v", where, n, want)
	}
}

// stub stands for a wendelin.core class in neo/go (which refuses to load a
// reference to a class it does not know twice); C tells them apart.
type stub[C any] struct{ zodb.Persistent }
type stubState[C any] stub[C]

func (s *stubState[C]) DropState()           {}
func (s *stubState[C]) PyGetState() any      { return nil }
func (s *stubState[C]) PySetState(any) error { return nil }

type (
	zbigfile struct{}
	zblk0    struct{}
	zblk     struct{}
	zblk1    struct{}
	zdata    struct{}
)

func init() {
	t := reflect.TypeOf
	zodb.RegisterClass(ClassZBigFile, t(stub[zbigfile]{}), t(stubState[zbigfile]{}))
	zodb.RegisterClass(ClassZBlk0, t(stub[zblk0]{}), t(stubState[zblk0]{}))
	zodb.RegisterClass(ClassZBlk, t(stub[zblk]{}), t(stubState[zblk]{}))
	zodb.RegisterClass(ClassZBlk1, t(stub[zblk1]{}), t(stubState[zblk1]{}))
	zodb.RegisterClass(ClassZData, t(stub[zdata]{}), t(stubState[zdata]{}))
}

// genSeeds writes records of the fixtures (one per class and size) as the
// seed corpus of FuzzDecode.
func genSeeds(ctx context.Context, t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, path := range fixtures(t) {
		testdb.EachRecord(ctx, t, openFS(ctx, t, path), func(_ *zodb.TxnInfo, d *zodb.DataInfo) {
			if d == nil || d.Data == nil || len(d.Data) > 8192 {
				return
			}
			class, _ := Class(d.Data)
			key := fmt.Sprintf("%s-%d", class, len(d.Data)/512)
			if class == "" || seen[key] {
				return
			}
			seen[key] = true
			seed := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", d.Data)
			h := sha256.Sum256(seed)
			name := filepath.Join(dir, fmt.Sprintf("fixture-%x", h[:8]))
			if err := os.WriteFile(name, seed, 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
}
