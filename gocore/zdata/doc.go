// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

// Package zdata is the ZODB data layer of WCFS: it opens ZODB storages and
// reads wendelin.core ZBigFiles from them, as of any revision.
//
// # Objects
//
// A ZBigFile (class wendelin.bigfile.file_zodb.ZBigFile) is a file made of
// blocks of blksize bytes. Its state is (blksize, blktab) where blktab is an
// LOBTree mapping a block number to the object holding that block's data,
// one of
//
//   - ZBlk0 (legacy name ZBlk): the block data as one bytes object;
//   - ZBlk1: an IOBTree mapping byte offsets to ZData chunks (any chunk
//     size; the gaps between chunks are zeros).
//
// Stored data has its trailing zeros stripped. The file size is
// (max blktab key + 1) * blksize, 0 when blktab is empty; a block absent
// from blktab (a hole) reads as zeros; short block data is zero-padded; block
// data longer than blksize is an error. See spec section 4 for the formats,
// including Python 2 era pickles, which decode too. A blksize above
// MaxBlkSize (1 GiB; wendelin.core uses 2 MiB) is treated as damaged data,
// so that a bad record cannot make a reader allocate without bound.
//
// These classes are registered with zodb.RegisterClass, so that loading any
// object through a zodb.Connection yields *ZBigFile, *ZBlk0, *ZBlk (the
// legacy name, a distinct type reading as ZBlk0), *ZBlk1, *ZData.
//
// # Opening
//
//	z, err := zurl.Parse(s)                // file://, zeo://, neo://, demo:, plain path
//	stor, err := zdata.OpenStorage(ctx, z) // read-only
//	db := zdata.NewDB(stor)                // connections use CacheControl
//	zc, err := zdata.OpenConn(ctx, db, at) // at = 0: head
//	defer zc.Close()
//	f, err := zc.LoadZBigFile(ctx, oid)
//
// # Transactions and contexts
//
// neo/go loads objects through a connection only within the connection's
// transaction, which it finds in the context (and panics when it is
// missing). ZConn bundles a connection with its own read-only transaction:
// every function that loads through a connection takes a context that must
// carry that transaction; get it with zc.Ctx(ctx), which keeps ctx's
// cancellation and values. A ZConn can be moved to another revision with
// Resync (live cache kept), which invalidates contexts taken before. Callers
// managing transactions themselves can use LoadZBigFile with a
// *zodb.Connection and the context it was opened under.
//
// # Loading blocks
//
//	size, path, err := f.Size(zc.Ctx(ctx))
//	data, info, err := f.LoadBlk(zc.Ctx(ctx), blk)      // a new buffer
//	info, err := f.LoadBlkInto(zc.Ctx(ctx), blk, dst)   // the caller's buffer
//	d, info, err := f.LoadBlkShared(zc.Ctx(ctx), blk)   // d.Data pooled or the storage's own; d.Release()
//
// LoadBlk returns the blksize-padded data and a BlkInfo: the block's format,
// the ZBlk oid (0 for a hole) and its serial, the blktab nodes visited with
// the key range each covers (what btree.VGet's visit callback reports; the
// block-history package tracks them), and RevMax, the largest serial over
// those nodes and the ZBlk: an upper bound of the revision that last changed
// the block. Size returns the path to the largest key the same way.
//
// The block path is the hot path of the filesystem, built to avoid copies:
// the ZBigFile and its blktab nodes live in the connection's live cache, but
// ZBlk0/ZBlk1/ZData records and ZBlk1 chunk tables are loaded straight from
// the storage at the connection's revision (never activated as objects, so
// they take no room in the live cache), decoded in place, and each byte of
// block data is copied at most once, from the storage buffer to the
// destination (not at all by LoadBlkShared for a ZBlk0 block that fills the
// whole block).
// For ZBlk1 the chunk-table nodes and then the chunks are loaded in parallel
// and copied to their offsets as they arrive. Records are decoded by
// gocore/internal/zpickle, the decoder of raw ZODB records shared with the
// block-history package (a pickle machine for the opcodes Python's picklers
// write, fuzzed against og-rek). Loading stops when ctx is canceled. LoadBlk and Size are safe for
// concurrent use, also on one connection.
//
// # Robustness
//
// The blktab nodes are decoded by neo/go's btree package, which this package
// shields from damaged data: the record of a node (and of a ZBigFile) is
// checked by zpickle before neo/go first decodes it (neo/go panics on one
// malformed LOBTree state and its pickle decoder can be made to take
// exponential time; zpickle refuses what no valid state holds, dicts
// included), trees deeper than 64 levels (cycles) are refused, and a
// node neo/go cannot decode because a reference names an object ZBlk while
// it is cached as ZBlk0 (or the reverse; real databases have both names for
// one object across revisions) is read straight from the storage instead.
//
// # Memory policy
//
// CacheControl (spec 1.6) pins ZBigFile, LOBTree and LOBucket objects with
// their state in a connection's live cache and lets everything else go.
// NewDB installs it for every connection. (The pinned neo/go revision keeps
// every object it ever created in a connection's cache, as a ghost at
// least: for a file this is its blktab nodes and one ZBlk ghost per block,
// since the block path creates no other objects.)
//
// # Errors
//
// Errors name the ZBigFile oid, the revision and what went wrong, and wrap
// their cause: a missing object (*zodb.NoObjectError / *zodb.NoDataError),
// an object that is not a ZBigFile (ErrNotZBigFile, naming its class), an
// unknown ZBlk class (ErrUnknownZBlk), malformed pickles, states or block
// data (ErrMalformed), a size overflowing int64 (ErrSizeOverflow), storage
// errors, cancellation. Bad data never makes this package panic (the
// decoders are fuzzed).
//
// # Raw decoding
//
// DecodeZBigFile and LoadZBigFileState decode a raw ZBigFile record
// (blksize, blktab oid) without a connection, for tools that compare records
// across revisions (the block-history package).
package zdata
