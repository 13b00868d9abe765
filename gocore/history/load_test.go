// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	pickle "github.com/kisielk/og-rek"

	"lab.nexedi.com/kirr/go123/mem"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/zpickle"
)

// recStorage serves records by oid, whatever the revision (Load only).
type recStorage struct {
	zodb.IStorage
	recs map[zodb.Oid][]byte
}

func (s recStorage) Load(_ context.Context, xid zodb.Xid) (*mem.Buf, zodb.Tid, error) {
	rec, ok := s.recs[xid.Oid]
	if !ok {
		return nil, 0, &zodb.NoObjectError{Oid: xid.Oid}
	}
	buf := mem.BufAlloc(len(rec))
	copy(buf.Data, rec)
	return buf, 1, nil
}

// TestLoader checks what the history requires of blktab nodes beyond a
// valid state: the kind asked for, kids that say their class (the index
// needs their kind without loading them), no value referring to oid 0 (a
// hole); and that such records, and records that do not decode, are
// ErrCorrupt while storage errors are not.
func TestLoader(t *testing.T) {
	const (
		tree   = zpickle.ClassLOBTree
		bucket = zpickle.ClassLOBucket
		zblk   = zpickle.ClassZBlk0
	)
	ld := &loader{stor: recStorage{recs: map[zodb.Oid][]byte{
		1: testdb.Record(tree, pickle.Tuple{pickle.Tuple{testdb.Ref(2, bucket), int64(10), testdb.Ref(3, bucket)}, testdb.Ref(2, bucket)}),
		2: testdb.Record(bucket, pickle.Tuple{pickle.Tuple{int64(0), testdb.Ref(7, zblk), int64(1), testdb.Ref(8, "")}, testdb.Ref(3, bucket)}),
		3: testdb.Record(tree, pickle.Tuple{pickle.Tuple{testdb.Ref(2, ""), int64(10), testdb.Ref(3, bucket)}, testdb.Ref(2, bucket)}),
		4: testdb.Record(bucket, pickle.Tuple{pickle.Tuple{int64(0), testdb.Ref(0, zblk)}}),
		5: testdb.Record(tree, pickle.Tuple{pickle.Tuple{pickle.Tuple{pickle.Tuple{int64(5), testdb.Ref(0, zblk)}}}}),
		6: []byte("\x80\x03garbage"),
	}}}
	ctx := context.Background()

	st, err := ld.tree(ctx, 1, 1)
	if err != nil || !slices.Equal(st.kids, []zodb.Oid{2, 3}) || st.kidKind != zpickle.Bucket || st.isInline {
		t.Fatalf("tree 1: %+v %v", st, err)
	}
	ev, err := ld.bucket(ctx, 2, 1)
	if err != nil || len(ev) != 2 || ev[0] != (zpickle.Entry{Key: 0, Value: 7}) || ev[1] != (zpickle.Entry{Key: 1, Value: 8}) {
		t.Fatalf("bucket 2: %v %v", ev, err)
	}

	for _, tc := range []struct {
		oid    zodb.Oid
		bucket bool
		want   string
	}{
		{1, true, "LOBucket 0000000000000001 @0000000000000001: corrupt blktab: a BTrees.LOBTree.LOBTree where a bucket is expected"},
		{2, false, "LOBTree 0000000000000002 @0000000000000001: corrupt blktab: a BTrees.LOBTree.LOBucket where a tree is expected"},
		{3, false, "corrupt blktab: a kid's reference does not say its class"},
		{4, true, "corrupt blktab: the value of key 0 refers to oid 0"},
		{5, false, "corrupt blktab: the value of key 5 refers to oid 0"},
		{6, false, "corrupt blktab: class pickle: offset 2: unsupported opcode 0x67"},
	} {
		var err error
		if tc.bucket {
			_, err = ld.bucket(ctx, tc.oid, 1)
		} else {
			_, err = ld.tree(ctx, tc.oid, 1)
		}
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("oid %d: %v\nwant %q", tc.oid, err, tc.want)
		}
	}

	_, err = ld.tree(ctx, 9, 1)
	var noObj *zodb.NoObjectError
	if !errors.As(err, &noObj) || errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "load LOBTree 0000000000000009 @0000000000000001") {
		t.Errorf("missing node: %v", err)
	}
}
