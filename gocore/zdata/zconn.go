// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// Opening storages, databases and read-only connections.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"lab.nexedi.com/kirr/neo/go/transaction"
	"lab.nexedi.com/kirr/neo/go/zodb"
	_ "lab.nexedi.com/kirr/neo/go/zodb/wks" // file:// zeo:// neo:// neos:// demo:

	"wendelin.dev/wcfs/gocore/zurl"
)

// OpenStorage opens the ZODB storage z read-only (file://, zeo://,
// neo://, neos://, demo:; a plain path was made a file:// zurl by
// zurl.Parse). Errors name the zurl.
//
// The storage is neo/go's driver for z.StorageURL() under zdata's own
// wrapper (see storage): no RAM cache (WCFS keeps block data in the kernel
// page cache), and a down state whose reason every later error carries.
//
// Loads from network storages (z.IsNetwork(): zeo://, neo://, neos://)
// honour their context: they return ctx's error as soon as it is done, even
// when the storage does not answer (see ctxStorage).
func OpenStorage(ctx context.Context, z zurl.ZURL) (zodb.IStorage, error) {
	s, err := openStorage(ctx, z.StorageURL(), z.FilePath())
	if err != nil {
		return nil, fmt.Errorf("zdata: open storage %q: %w", z, err)
	}
	var stor zodb.IStorage = s
	if z.IsNetwork() {
		stor = &ctxStorage{stor}
	}
	return stor, nil
}

// NewDB returns a zodb.DB over stor whose connections use CacheControl.
func NewDB(stor zodb.IStorage) *zodb.DB {
	return zodb.NewDB(stor, &zodb.DBOptions{CacheControl: CacheControl{}})
}

// ZConn is a read-only ZODB connection together with the transaction it
// lives in.
//
// neo/go requires every load through a zodb.Connection (activation of
// ZBigFile and BTree objects) to happen with the connection's transaction in
// the context, and panics otherwise. ZConn owns that transaction: give loading
// functions zc.Ctx(ctx), which keeps ctx's cancellation, deadline and values
// and adds the transaction. A context taken before a Resync or Close is
// refused by the loading functions with an error.
//
// A ZConn is never returned to the DB pool, so its live cache survives
// Resync (the server's head connection moves from revision to revision and
// keeps ZBigFile/BTree objects cached; see CacheControl).
//
// ZConn is safe for concurrent use, except that Resync and Close must not run
// concurrently with loads through the connection (the caller's lock, e.g. the
// server's head lock, orders them).
type ZConn struct {
	*zodb.Connection

	mu     sync.RWMutex
	txn    transaction.Transaction
	txnCtx context.Context // context.Background() + txn
	at     zodb.Tid
	gen    uint64 // incremented by every Resync and Close
	err    error  // !nil: the connection is unusable (closed, failed resync)
}

// OpenConn opens a read-only connection to db viewing the database as of at
// (at = 0: the storage head, synced).
func OpenConn(ctx context.Context, db *zodb.DB, at zodb.Tid) (*ZConn, error) {
	txn, txnCtx := transaction.New(context.Background())
	conn, err := db.Open(&mergedCtx{Context: ctx, txn: txnCtx}, &zodb.ConnOptions{At: at, NoPool: true})
	if err != nil {
		txn.Abort()
		return nil, fmt.Errorf("zdata: open connection @%s: %w", tidStr(at), err)
	}
	return &ZConn{Connection: conn, txn: txn, txnCtx: txnCtx, at: conn.At()}, nil
}

// At returns the revision the connection views.
func (zc *ZConn) At() zodb.Tid {
	zc.mu.RLock()
	defer zc.mu.RUnlock()
	return zc.at
}

// Ctx returns a context with ctx's cancellation, deadline and values, plus
// the connection's transaction. Use it for LoadZBigFile, ZBigFile.LoadBlk, ...
// It stays valid until the next Resync or Close.
func (zc *ZConn) Ctx(ctx context.Context) context.Context {
	zc.mu.RLock()
	defer zc.mu.RUnlock()
	return &mergedCtx{Context: ctx, txn: zc.txnCtx, zc: zc, gen: zc.gen}
}

// Resync moves the connection to view the database as of at (at > 0).
//
// Objects changed between the old and the new revision are invalidated;
// objects pinned by CacheControl stay in the live cache. Resync waits for the
// DB to have seen at (bounded by ctx). On error the connection keeps its old
// view, unless the DB is down. No load through the connection may be in
// progress.
func (zc *ZConn) Resync(ctx context.Context, at zodb.Tid) (err error) {
	zc.mu.Lock()
	defer zc.mu.Unlock()
	old := zc.at
	defer func() {
		if err != nil {
			err = fmt.Errorf("zdata: resync connection @%s -> @%s: %w", tidStr(old), tidStr(at), err)
		}
	}()
	if at == 0 {
		return fmt.Errorf("target revision must be given")
	}
	if zc.err != nil {
		return zc.err
	}

	zc.gen++
	zc.txn.Abort()
	zc.txn, zc.txnCtx = transaction.New(context.Background())
	err = zc.Connection.Resync(&mergedCtx{Context: ctx, txn: zc.txnCtx}, at)
	if err == nil {
		zc.at = at
		return nil
	}

	// go back to the old view (the DB has seen it: no wait, unless the DB is down)
	err2 := zc.Connection.Resync(zc.txnCtx, old)
	if err2 != nil {
		zc.err = fmt.Errorf("connection unusable: %w", err2)
	}
	return err
}

// Close ends the connection's transaction. The connection and the objects
// loaded through it must not be used afterwards.
func (zc *ZConn) Close() {
	zc.mu.Lock()
	defer zc.mu.Unlock()
	if zc.txn.Status() == transaction.Active {
		zc.txn.Abort()
	}
	zc.err = fmt.Errorf("connection closed")
	zc.gen++
}

// LoadZBigFile is LoadZBigFile(zc.Ctx(ctx), zc.Connection, oid).
func (zc *ZConn) LoadZBigFile(ctx context.Context, oid zodb.Oid) (*ZBigFile, error) {
	return LoadZBigFile(zc.Ctx(ctx), zc.Connection, oid)
}

// mergedCtx is a context whose Value lookups see the transaction carried by
// txn first, and whose cancellation is that of the embedded context. Unlike
// xcontext.Merge it needs no goroutine: txn is never canceled.
type mergedCtx struct {
	context.Context
	txn context.Context

	zc  *ZConn // ZConn.Ctx: the connection and its generation
	gen uint64
}

type mergedCtxKey struct{}

func (c *mergedCtx) Value(key any) any {
	if key == (mergedCtxKey{}) {
		return c
	}
	if v := c.txn.Value(key); v != nil {
		return v
	}
	return c.Context.Value(key)
}

func (c *mergedCtx) Deadline() (time.Time, bool) { return c.Context.Deadline() }

// checkCtx verifies that ctx can be used to load objects of conn, so that a
// misuse is reported as an error instead of a neo/go panic.
func checkCtx(ctx context.Context, conn *zodb.Connection) error {
	if mc, ok := ctx.Value(mergedCtxKey{}).(*mergedCtx); ok && mc.zc != nil {
		zc := mc.zc
		if zc.Connection != conn {
			return fmt.Errorf("context is for another connection (ZConn.Ctx of a different ZConn)")
		}
		zc.mu.RLock()
		defer zc.mu.RUnlock()
		if zc.err != nil {
			return zc.err
		}
		if mc.gen != zc.gen {
			return fmt.Errorf("context is stale: the connection was resynced since ZConn.Ctx")
		}
		return nil
	}
	return checkTxn(ctx)
}

// checkTxn verifies that ctx carries a transaction.
func checkTxn(ctx context.Context) (err error) {
	defer func() {
		if recover() != nil {
			err = ErrNoTxn
		}
	}()
	transaction.Current(ctx)
	return nil
}

// tidStr formats a revision for messages ("head" for 0).
func tidStr(at zodb.Tid) string {
	if at == 0 {
		return "head"
	}
	return at.String()
}
