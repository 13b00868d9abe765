// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

import (
	"lab.nexedi.com/kirr/neo/go/zodb"
	"lab.nexedi.com/kirr/neo/go/zodb/btree"
)

// CacheControl is the live-cache policy of WCFS (spec 1.6, 9.9), a
// zodb.LiveCacheControl:
//
//   - ZBigFile, LOBTree and LOBucket objects (the file index) are pinned in
//     the connection's live cache with their state kept, so that finding a
//     block needs no storage round-trip except for the block data itself,
//     and they stay across ZConn.Resync (changed ones are invalidated);
//   - ZBlk0, ZBlk1, ZData and the IOBTree/IOBucket chunk tables are not
//     kept: their data lives in the kernel page cache. (LoadBlk does not
//     even activate them: it reads their records straight from the storage,
//     so the only such objects in the cache are ZBlk ghosts referenced by
//     blktab buckets.)
//
// Install it for all connections of a DB with NewDB, or on one connection
// with conn.Cache().SetControl(CacheControl{}).
type CacheControl struct{}

var _ zodb.LiveCacheControl = CacheControl{}

// PCacheClassify implements zodb.LiveCacheControl.
func (CacheControl) PCacheClassify(obj zodb.IPersistent) zodb.PCachePolicy {
	switch obj.(type) {
	case *ZBigFile, *btree.LOBTree, *btree.LOBucket:
		return zodb.PCachePinObject | zodb.PCacheKeepState
	case *ZBlk0, *ZBlk, *ZBlk1, *ZData, *btree.IOBTree, *btree.IOBucket:
		return zodb.PCacheDropObject | zodb.PCacheDropState
	}
	return 0
}
