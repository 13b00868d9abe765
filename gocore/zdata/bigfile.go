// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// Loading ZBigFiles and their blocks.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"

	"lab.nexedi.com/kirr/neo/go/zodb"
	"lab.nexedi.com/kirr/neo/go/zodb/btree"
)

// BlkFormat says how a block is stored.
type BlkFormat int

const (
	Hole        BlkFormat = iota // no entry in blktab: reads as zeros
	FormatZBlk0                  // ZBlk0 (or its legacy name ZBlk): one bytes object
	FormatZBlk1                  // ZBlk1: IOBTree of ZData chunks
)

func (f BlkFormat) String() string {
	switch f {
	case Hole:
		return "hole"
	case FormatZBlk0:
		return "ZBlk0"
	case FormatZBlk1:
		return "ZBlk1"
	}
	return fmt.Sprintf("BlkFormat(%d)", int(f))
}

// PathNode is one blktab node visited on the way to a key, as btree's
// VGet/VMaxKey visit callbacks report it.
type PathNode struct {
	Node btree.LONode // *btree.LOBTree or *btree.LOBucket (live-cache object)

	// Oid of the node; zodb.InvalidOid for a bucket embedded in the
	// record of its parent tree (a small tree with one bucket).
	Oid zodb.Oid

	// Serial is the revision of the node's record as of the connection's
	// view (for an embedded bucket: its parent tree's).
	Serial zodb.Tid

	// Keys is the key range the node covers on this path: the
	// intersection of the ranges its ancestors assign to it.
	Keys btree.LKeyRange
}

// BlkInfo describes where a block's data came from.
type BlkInfo struct {
	Format BlkFormat
	ZBlk   zodb.Oid // oid of the ZBlk object; 0 for a hole
	ZRev   zodb.Tid // serial of the ZBlk record; 0 for a hole

	// Path is the blktab path to the block, root first. For a hole the
	// path ends at the bucket whose key range holds the block, or at an
	// empty root tree.
	Path []PathNode

	// RevMax = max(Serial over Path, ZRev): an upper bound of the
	// revision that last changed the block (wendelin.core writers mark
	// the ZBlk itself changed whenever its data changes, spec 4.3).
	RevMax zodb.Tid
}

// maxBlkTabDepth bounds blktab walks: a real LOBTree over int64 keys is far
// shallower; a cycle in damaged data is reported instead of looping.
const maxBlkTabDepth = 64

// LoadZBigFile returns the ZBigFile with the given oid as seen by conn, its
// state loaded and verified.
//
// ctx must carry conn's transaction: use ZConn.Ctx, or a context made with
// neo/go's transaction package under which conn was opened.
//
// Errors say what went wrong: the object does not exist at conn's revision
// (errors.As *zodb.NoObjectError or *zodb.NoDataError), it is not a ZBigFile
// (ErrNotZBigFile, with its class), its state is malformed (ErrMalformed), or
// a storage error.
func LoadZBigFile(ctx context.Context, conn *zodb.Connection, oid zodb.Oid) (_ *ZBigFile, err error) {
	if err := checkCtx(ctx, conn); err != nil {
		return nil, fmt.Errorf("zdata: load ZBigFile %s: %w", oid, err)
	}
	at := conn.At()
	defer func() {
		if err != nil {
			err = fmt.Errorf("zdata: load ZBigFile %s @%s: %w", oid, at, err)
		}
	}()

	obj, err := conn.Get(ctx, oid)
	if err != nil {
		if isMissing(err) {
			return nil, fmt.Errorf("oid missing: %w", err)
		}
		return nil, classifyLoadErr(err)
	}
	f, ok := obj.(*ZBigFile)
	if !ok {
		return nil, classErrorf(ErrNotZBigFile, "not a ZBigFile: class %s", className(obj))
	}
	if err := f.activate(ctx); err != nil {
		return nil, err
	}
	f.PDeactivate()
	return f, nil
}

// activate is PActivate with errors classified.
func (f *ZBigFile) activate(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return classifyLoadErr(f.PActivate(ctx))
}

// errf prefixes errors of f's methods with the file's oid and revision.
func (f *ZBigFile) errf(at zodb.Tid, format string, argv ...any) error {
	return fmt.Errorf("zdata: ZBigFile %s @%s: "+format, append([]any{f.POid(), at}, argv...)...)
}

// connAt returns the revision of f's connection without panicking when the
// connection is no longer live.
func (f *ZBigFile) connAt(ctx context.Context) (at zodb.Tid, err error) {
	conn := f.PJar()
	if err := checkCtx(ctx, conn); err != nil {
		return 0, err
	}
	defer func() {
		if recover() != nil {
			err = fmt.Errorf("connection is not live (its transaction has ended)")
		}
	}()
	return conn.At(), nil
}

// LoadBlk loads block blk of f as of f's connection revision and returns
// its data padded with zeros to blksize, and where the data came from.
//
// A hole reads as zeros. Block data longer than blksize, ZBlk1 chunks that
// overlap, and any malformed record are errors (ErrMalformed); a blktab value
// of an unknown class is ErrUnknownZBlk. Loading stops early when ctx is
// canceled.
//
// ctx must carry the transaction of f's connection (ZConn.Ctx). LoadBlk is
// safe to call from several goroutines at once, for the same or different
// blocks.
func (f *ZBigFile) LoadBlk(ctx context.Context, blk int64) (data []byte, info BlkInfo, err error) {
	info, err = f.loadBlk(ctx, blk, func(blksize int64) ([]byte, error) {
		data = make([]byte, blksize)
		return data, nil
	})
	if err != nil {
		return nil, info, err
	}
	return data, info, nil
}

// LoadBlkInto is like LoadBlk but puts the data into dst, which must be
// exactly blksize long. All of dst is written (holes and tails with zeros);
// on error dst content is unspecified.
func (f *ZBigFile) LoadBlkInto(ctx context.Context, blk int64, dst []byte) (BlkInfo, error) {
	return f.loadBlk(ctx, blk, func(blksize int64) ([]byte, error) {
		if int64(len(dst)) != blksize {
			return nil, fmt.Errorf("destination is %d bytes, blksize is %d", len(dst), blksize)
		}
		return dst, nil
	})
}

// loadBlk serves LoadBlk and LoadBlkInto; getDst provides the destination
// once blksize is known.
func (f *ZBigFile) loadBlk(ctx context.Context, blk int64, getDst func(blksize int64) ([]byte, error)) (info BlkInfo, err error) {
	at, err := f.connAt(ctx)
	if err == nil {
		err = f.activate(ctx)
	}
	if err != nil {
		return BlkInfo{}, f.errf(at, "load blk %d: %w", blk, err)
	}
	defer f.PDeactivate()
	defer func() {
		if err != nil {
			err = f.errf(at, "load blk %d: %w", blk, err)
		}
	}()

	if blk < 0 {
		return BlkInfo{}, fmt.Errorf("negative block number")
	}
	dst, err := getDst(f.blksize)
	if err != nil {
		return BlkInfo{}, err
	}

	value, ok, _, path, err := walkBlkTab(ctx, f.blktab, blk, false)
	info.Path = path
	info.RevMax = pathRevMax(path)
	if err != nil {
		return info, err
	}
	if !ok {
		clear(dst)
		return info, nil
	}

	zblk, ok := value.(zodb.IPersistent)
	if !ok {
		return info, malformedf("blktab value is %s, not a persistent ZBlk", pyTypeName(value))
	}
	info.ZBlk = zblk.POid()
	stor := f.PJar().DB().Storage()
	info.Format, info.ZRev, err = loadZBlk(ctx, stor, at, zblk.POid(), dst)
	if info.ZRev > info.RevMax {
		info.RevMax = info.ZRev
	}
	return info, err
}

// Size returns the file size, (max blktab key + 1) * blksize or 0 for an
// empty blktab, and the blktab path to the largest key (for tracking: the
// size changes only if a node on this path changes).
//
// A size beyond int64 is ErrSizeOverflow; a negative largest key is
// ErrMalformed. ctx must carry the transaction of f's connection.
func (f *ZBigFile) Size(ctx context.Context) (size int64, path []PathNode, err error) {
	at, err := f.connAt(ctx)
	if err == nil {
		err = f.activate(ctx)
	}
	if err != nil {
		return 0, nil, f.errf(at, "size: %w", err)
	}
	defer f.PDeactivate()

	_, ok, maxKey, path, err := walkBlkTab(ctx, f.blktab, 0, true)
	if err != nil {
		return 0, path, f.errf(at, "size: %w", err)
	}
	if !ok {
		return 0, path, nil
	}
	if maxKey < 0 {
		return 0, path, f.errf(at, "size: %w", malformedf("largest block number %d is negative", maxKey))
	}
	if maxKey >= math.MaxInt64/f.blksize {
		return 0, path, f.errf(at, "size: largest block %d, blksize %d: %w", maxKey, f.blksize, ErrSizeOverflow)
	}
	return (maxKey + 1) * f.blksize, path, nil
}

// pathRevMax returns the largest serial on path.
func pathRevMax(path []PathNode) zodb.Tid {
	var rev zodb.Tid
	for _, n := range path {
		if n.Serial > rev {
			rev = n.Serial
		}
	}
	return rev
}

// walkBlkTab descends blktab to key (wantMax: to the largest key), calling
// nothing but recording every node visited with the key range it covers.
//
// It returns the value for key (wantMax: the largest key), whether it was
// found, and the path.
func walkBlkTab(ctx context.Context, t *btree.LOBTree, key int64, wantMax bool) (value any, found bool, maxKey int64, path []PathNode, err error) {
	if t == nil {
		return nil, false, 0, nil, malformedf("ZBigFile has no blktab")
	}
	if err := classifyLoadErr(t.PActivate(ctx)); err != nil {
		return nil, false, 0, nil, fmt.Errorf("blktab: %w", err)
	}
	keycov := btree.LKeyRange{Lo: math.MinInt64, Hi_: math.MaxInt64}
	path = make([]PathNode, 0, 4)
	path = append(path, PathNode{Node: t, Oid: t.POid(), Serial: t.PSerial(), Keys: keycov})

	var node btree.LONode = t
	for depth := 1; ; depth++ {
		switch n := node.(type) {
		case *btree.LOBucket:
			defer n.PDeactivate()
			if wantMax {
				k, ok := n.MaxKey()
				return nil, ok, k, path, nil
			}
			v, ok := n.Get(key)
			return v, ok, 0, path, nil

		case *btree.LOBTree:
			ev := n.Entryv()
			l := len(ev)
			if l == 0 {
				n.PDeactivate()
				return nil, false, 0, path, nil // empty tree
			}
			// i: ev[i].Key ≤ key < ev[i+1].Key, with ev[0].Key = -∞, ev[l].Key = +∞
			i := l - 1
			if !wantMax {
				i = sort.Search(l, func(i int) bool { return i+1 == l || key < ev[i+1].Key() })
			}
			child := ev[i].Child()
			lo, hi_ := int64(math.MinInt64), int64(math.MaxInt64)
			if i > 0 {
				lo = ev[i].Key()
			}
			if i+1 < l {
				hi_ = ev[i+1].Key() - 1
			}
			keycov.Lo = max(keycov.Lo, lo)
			keycov.Hi_ = min(keycov.Hi_, hi_)
			parentSerial := n.PSerial()
			n.PDeactivate()

			if depth > maxBlkTabDepth {
				return nil, false, 0, path, malformedf("blktab deeper than %d levels (cycle?)", maxBlkTabDepth)
			}
			if err := ctx.Err(); err != nil {
				return nil, false, 0, path, err
			}
			if err := classifyLoadErr(child.PActivate(ctx)); err != nil {
				return nil, false, 0, path, fmt.Errorf("blktab: %w", err)
			}
			serial := child.PSerial()
			if child.POid() == zodb.InvalidOid {
				serial = parentSerial // bucket embedded in the tree's record
			}
			path = append(path, PathNode{Node: child, Oid: child.POid(), Serial: serial, Keys: keycov})
			node = child

		default:
			return nil, false, 0, path, malformedf("blktab node of type %T", node)
		}
	}
}

// loadZBlk loads the ZBlk record oid as of at directly from stor and
// assembles its block data into dst (blksize long, fully written).
func loadZBlk(ctx context.Context, stor zodb.IStorage, at zodb.Tid, oid zodb.Oid, dst []byte) (fmt_ BlkFormat, serial zodb.Tid, err error) {
	buf, serial, err := stor.Load(ctx, zodb.Xid{Oid: oid, At: at})
	if err != nil {
		if isMissing(err) {
			return Hole, 0, fmt.Errorf("ZBlk %s: oid missing: %w", oid, err)
		}
		return Hole, 0, fmt.Errorf("ZBlk %s: %w", oid, err)
	}
	defer buf.Release()

	rec := buf.Data
	class, _, ok := fastClass(rec)
	var state any
	decoded := false
	if !ok {
		class, state, err = decodeRecord(rec)
		if err != nil {
			return Hole, serial, fmt.Errorf("ZBlk %s: %w", oid, err)
		}
		decoded = true
	}
	switch class {
	case ClassZBlk0, ClassZBlk:
		_, data, err := decodeBytesRecord(rec)
		if err != nil {
			return FormatZBlk0, serial, fmt.Errorf("ZBlk0 %s: %w", oid, err)
		}
		if len(data) > len(dst) {
			return FormatZBlk0, serial, fmt.Errorf("ZBlk0 %s: %w", oid,
				malformedf("data is %d bytes, longer than blksize %d", len(data), len(dst)))
		}
		n := copy(dst, data)
		clear(dst[n:])
		return FormatZBlk0, serial, nil

	case ClassZBlk1:
		if !decoded {
			_, state, err = decodeRecord(rec)
		}
		if err == nil {
			err = loadZBlk1(ctx, stor, at, state, dst)
		}
		if err != nil {
			return FormatZBlk1, serial, fmt.Errorf("ZBlk1 %s: %w", oid, err)
		}
		return FormatZBlk1, serial, nil
	}
	return Hole, serial, classErrorf(ErrUnknownZBlk, "ZBlk %s: unknown ZBlk class %s", oid, class)
}

// isCtxErr tells whether err is a context cancellation or deadline.
func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
