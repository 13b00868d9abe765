// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// An in-memory ZODB storage driver (scheme zdatamem://) for tests and fuzzing
// that need records no genuine ZODB would write: garbage pickles, cycles,
// overlapping chunks. It is opened through OpenStorage like any storage, so the
// whole stack (neo/go DB, Connection, BTree decoding, this package) runs.
//
// Records are built with testdb.Record and testdb.Ref, in the layout ZODB
// uses (a class pickle followed by a state pickle, references as (oid,
// class)).

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	pickle "github.com/kisielk/og-rek"

	"lab.nexedi.com/kirr/go123/mem"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/zpickle"
	"wendelin.dev/wcfs/gocore/zurl"
)

// memDB is the content of one in-memory database: per oid, its revisions.
type memDB struct {
	mu   sync.Mutex
	objs map[zodb.Oid][]memRev // revisions in ↑ tid order
	head zodb.Tid

	// stall, if set, is called by Load for every oid; a load of an oid it
	// returns a channel for waits until that channel is closed or ctx is
	// canceled.
	stall func(oid zodb.Oid) <-chan struct{}
}

type memRev struct {
	tid  zodb.Tid
	data []byte // nil: deleted
}

var (
	memDBs   sync.Map // name -> *memDB
	memDBSeq atomic.Int64
)

func init() {
	zodb.RegisterDriver("zdatamem", func(ctx context.Context, u *url.URL, opt *zodb.DriverOptions) (zodb.IStorageDriver, zodb.Tid, error) {
		x, ok := memDBs.Load(u.Host)
		if !ok {
			return nil, 0, fmt.Errorf("zdatamem: no database %q", u.Host)
		}
		db := x.(*memDB)
		db.mu.Lock()
		head := db.head
		db.mu.Unlock()
		return &memDriver{db: db, url: u.String(), watchq: opt.Watchq}, head, nil
	})
}

// newMemDB registers a new empty in-memory database and returns it with its zurl.
func newMemDB(t testing.TB) (*memDB, string) {
	name := fmt.Sprintf("db%d", memDBSeq.Add(1))
	db := &memDB{objs: make(map[zodb.Oid][]memRev)}
	memDBs.Store(name, db)
	t.Cleanup(func() { memDBs.Delete(name) })
	return db, "zdatamem://" + name
}

// commit stores a transaction: records for the given oids (nil = delete).
// It must be called before the database is opened (the driver sends no
// invalidation events).
func (db *memDB) commit(tid zodb.Tid, recs map[zodb.Oid][]byte) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if tid <= db.head {
		panic("memDB: tid not ↑")
	}
	for oid, data := range recs {
		db.objs[oid] = append(db.objs[oid], memRev{tid, data})
	}
	db.head = tid
}

type memDriver struct {
	db     *memDB
	url    string
	watchq chan<- zodb.Event

	closeOnce sync.Once
}

func (d *memDriver) URL() string { return d.url }

func (d *memDriver) Close() error {
	d.closeOnce.Do(func() {
		if d.watchq != nil {
			close(d.watchq)
		}
	})
	return nil
}

func (d *memDriver) Sync(ctx context.Context) (zodb.Tid, error) {
	d.db.mu.Lock()
	defer d.db.mu.Unlock()
	return d.db.head, nil
}

func (d *memDriver) Load(ctx context.Context, xid zodb.Xid) (*mem.Buf, zodb.Tid, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	d.db.mu.Lock()
	revs := d.db.objs[xid.Oid]
	stall := d.db.stall
	d.db.mu.Unlock()
	if stall != nil {
		if wait := stall(xid.Oid); wait != nil {
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, 0, &zodb.OpError{URL: d.url, Op: "load", Args: xid, Err: ctx.Err()}
			}
		}
	}
	zerr := func(err error) error { return &zodb.OpError{URL: d.url, Op: "load", Args: xid, Err: err} }
	if len(revs) == 0 {
		return nil, 0, zerr(&zodb.NoObjectError{Oid: xid.Oid})
	}
	i := sort.Search(len(revs), func(i int) bool { return revs[i].tid > xid.At }) - 1
	if i < 0 {
		return nil, 0, zerr(&zodb.NoDataError{Oid: xid.Oid})
	}
	r := revs[i]
	if r.data == nil {
		return nil, 0, zerr(&zodb.NoDataError{Oid: xid.Oid, DeletedAt: r.tid})
	}
	buf := mem.BufAlloc(len(r.data))
	copy(buf.Data, r.data)
	return buf, r.tid, nil
}

func (d *memDriver) Iterate(ctx context.Context, tidMin, tidMax zodb.Tid) zodb.ITxnIterator {
	return memIter{}
}

type memIter struct{}

func (memIter) NextTxn(ctx context.Context) (*zodb.TxnInfo, zodb.IDataIterator, error) {
	return nil, nil, io.EOF
}

// ---- building records ----

// pk encodes a record, ref a reference, as ZODB writes them.
var (
	pk  = testdb.Record
	ref = testdb.Ref
)

// bucketState returns the state of a bucket: ((k0, v0, k1, v1, ...),).
func bucketState(kv ...any) pickle.Tuple {
	return pickle.Tuple{pickle.Tuple(kv)}
}

// inlineTree returns the state of a BTree whose only bucket is stored inline.
func inlineTree(kv ...any) pickle.Tuple {
	return pickle.Tuple{pickle.Tuple{bucketState(kv...)}}
}

// zfile returns a ZBigFile record.
func zfile(blksize int64, blktab zodb.Oid) []byte {
	return pk(ClassZBigFile, pickle.Tuple{blksize, ref(blktab, zpickle.ClassLOBTree)})
}

// openMem opens an in-memory database and a connection at its head.
// openTestStorage opens a test database: the in-memory driver's
// (zdatamem://, a scheme package zurl does not know) directly, others
// (paths of FileStorage files) through OpenStorage.
func openTestStorage(ctx context.Context, s string) (zodb.IStorage, error) {
	if strings.HasPrefix(s, "zdatamem://") {
		stor, err := openStorage(ctx, s, "")
		if err != nil {
			return nil, err
		}
		return stor, nil
	}
	z, err := zurl.Parse(s)
	if err != nil {
		return nil, err
	}
	return OpenStorage(ctx, z)
}

func openMem(t testing.TB, zurl string) *ZConn {
	t.Helper()
	_, db := openTestDB(t, zurl)
	return openTestConn(t, db, 0)
}
