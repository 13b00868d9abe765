// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// Loading ZBigFiles and their blocks.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"

	"lab.nexedi.com/kirr/go123/mem"
	"lab.nexedi.com/kirr/neo/go/zodb"
	"lab.nexedi.com/kirr/neo/go/zodb/btree"

	"wendelin.dev/wcfs/gocore/internal/fs1map"
	"wendelin.dev/wcfs/gocore/internal/zpickle"
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
	at, stor, err := connView(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("zdata: load ZBigFile %s: %w", oid, err)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("zdata: load ZBigFile %s @%s: %w", oid, at, err)
		}
	}()

	// decode the record with this package's decoder first: clear errors for
	// other classes and malformed states, none of neo/go's panics or slow
	// paths on crafted data
	if err := precheckZBigFile(ctx, stor, at, oid); err != nil {
		return nil, err
	}

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
	if err := classifyLoadErr(f.PActivate(ctx)); err != nil {
		return nil, err // the record was checked above
	}
	f.PDeactivate()
	return f, nil
}

// activate is PActivate with errors classified. The record of a ghost is
// checked by this package's decoder first (see activateNode).
func (f *ZBigFile) activate(ctx context.Context, stor zodb.IStorage, at zodb.Tid) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.PSerial() == zodb.InvalidTid {
		if err := precheckZBigFile(ctx, stor, at, f.POid()); err != nil {
			return err
		}
	}
	return classifyLoadErr(f.PActivate(ctx))
}

// precheckZBigFile loads the record of ZBigFile oid and verifies it with
// this package's decoder: clear errors for other classes and malformed
// states, and none of neo/go's panics or slow paths on crafted data.
func precheckZBigFile(ctx context.Context, stor zodb.IStorage, at zodb.Tid, oid zodb.Oid) error {
	buf, _, err := stor.Load(ctx, zodb.Xid{Oid: oid, At: at})
	if err != nil {
		if isMissing(err) {
			return fmt.Errorf("oid missing: %w", err)
		}
		return err
	}
	defer buf.Release()
	_, err = DecodeZBigFile(buf.Data)
	return err
}

// errf prefixes errors of f's methods with the file's oid and revision.
func (f *ZBigFile) errf(at zodb.Tid, format string, argv ...any) error {
	return fmt.Errorf("zdata: ZBigFile %s @%s: "+format, append([]any{f.POid(), at}, argv...)...)
}

// view checks ctx and returns the revision and the storage of f's connection.
func (f *ZBigFile) view(ctx context.Context) (zodb.Tid, zodb.IStorage, error) {
	return connView(ctx, f.PJar())
}

// connView checks that ctx can be used to load through conn and returns
// conn's revision and storage, without panicking when conn is no longer
// live (neo/go panics then).
func connView(ctx context.Context, conn *zodb.Connection) (at zodb.Tid, stor zodb.IStorage, err error) {
	if err := checkCtx(ctx, conn); err != nil {
		return 0, nil, err
	}
	defer func() {
		if recover() != nil {
			err = fmt.Errorf("connection is not live (its transaction has ended)")
		}
	}()
	return conn.At(), conn.DB().Storage(), nil
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
	sink := &blkSink{}
	info, err = f.loadBlk(ctx, blk, sink)
	if err != nil {
		return nil, info, err
	}
	return sink.dst, info, nil
}

// LoadBlkInto is like LoadBlk but puts the data into dst, which must be
// exactly blksize long. All of dst is written (holes and tails with zeros);
// on error dst content is unspecified.
func (f *ZBigFile) LoadBlkInto(ctx context.Context, blk int64, dst []byte) (BlkInfo, error) {
	return f.loadBlk(ctx, blk, &blkSink{dst: dst})
}

// BlkData is the data of a block loaded by LoadBlkShared.
type BlkData struct {
	// Data is the block, blksize long (zero-padded). It may alias a
	// storage buffer and must not be modified; it is valid until Release.
	Data []byte

	buf *mem.Buf      // Data's memory from neo/go's pool, or
	rec fs1map.Record // Data is a FileStorage record in place
}

// Release gives the memory of d back to neo/go's buffer pool; d.Data must
// not be used afterwards. Call it once per loaded block (calling it again on
// the same variable does nothing; releasing a copy of the value as well
// would free the memory twice).
func (d *BlkData) Release() {
	if d.buf != nil {
		d.buf.Release()
		d.buf = nil
	}
	d.rec.Release()
	d.Data = nil
}

// Source returns the file holding d.Data and its offset there, when d.Data
// is a FileStorage record in place (see LoadBlkShared): the data can then be
// spliced from the file's page cache. The file is valid until Release and
// must not be closed.
func (d *BlkData) Source() (f *os.File, off int64, ok bool) {
	return d.rec.Locate(d.Data)
}

// LoadBlkShared is like LoadBlk, without copying the data of a ZBlk0 block
// that fills the whole block (the common case for dense data): its Data then
// aliases the buffer the storage read the record into, or, from a storage
// that maps its records (RecordMapper: a FileStorage), the record in the
// data file's map, read by nobody yet. Other blocks are
// assembled into a buffer from neo/go's pool (one copy, as LoadBlkInto).
// The caller must Release the returned BlkData when done with it.
func (f *ZBigFile) LoadBlkShared(ctx context.Context, blk int64) (BlkData, BlkInfo, error) {
	sink := &blkSink{shared: true}
	info, err := f.loadBlk(ctx, blk, sink)
	if err != nil {
		sink.release()
		return BlkData{}, info, err
	}
	if sink.data == nil {
		sink.data = sink.dst
	}
	return BlkData{Data: sink.data, buf: sink.buf, rec: sink.rec}, info, nil
}

// blkSink receives the data of a block: LoadBlk allocates the destination,
// LoadBlkInto gives it, LoadBlkShared takes a pooled buffer or adopts the
// storage's buffer of a full ZBlk0 block.
type blkSink struct {
	blksize int64
	dst     []byte        // the destination (LoadBlkShared: allocated on demand)
	shared  bool          // LoadBlkShared
	buf     *mem.Buf      // LoadBlkShared: the buffer holding the data
	rec     fs1map.Record // LoadBlkShared: the mapped record holding the data
	data    []byte        // LoadBlkShared: adopted data (aliases buf or rec)
}

// init checks or allocates the destination once blksize is known.
func (s *blkSink) init(blksize int64) error {
	s.blksize = blksize
	switch {
	case s.shared:
		// on demand
	case s.dst == nil:
		s.dst = make([]byte, blksize)
	case int64(len(s.dst)) != blksize:
		return fmt.Errorf("destination is %d bytes, blksize is %d", len(s.dst), blksize)
	}
	return nil
}

// get returns the destination to write the block into.
func (s *blkSink) get() []byte {
	if s.dst == nil {
		s.buf = mem.BufAlloc64(s.blksize)
		s.dst = s.buf.Data
	}
	return s.dst
}

// adoptable tells whether data can be the block without a copy.
func (s *blkSink) adoptable(data []byte) bool {
	return s.shared && int64(len(data)) == s.blksize && s.dst == nil
}

// adopt takes data (aliasing buf) as the block without copying, when it is
// allowed and data is the whole block; it then owns buf.
func (s *blkSink) adopt(data []byte, buf *mem.Buf) bool {
	if !s.adoptable(data) {
		return false
	}
	s.buf, s.data = buf, data
	return true
}

func (s *blkSink) release() {
	if s.buf != nil {
		s.buf.Release()
		s.buf = nil
	}
	s.rec.Release()
}

// loadBlk serves LoadBlk, LoadBlkInto and LoadBlkShared.
func (f *ZBigFile) loadBlk(ctx context.Context, blk int64, sink *blkSink) (info BlkInfo, err error) {
	at, stor, err := f.view(ctx)
	if err == nil {
		err = f.activate(ctx, stor, at)
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
	if err := sink.init(f.blksize); err != nil {
		return BlkInfo{}, err
	}

	w, err := walkBlkTab(ctx, stor, at, f.blktab, blk, false)
	info.Path = w.path
	info.RevMax = pathRevMax(w.path)
	if err != nil {
		return info, err
	}
	if !w.found {
		clear(sink.get())
		return info, nil
	}

	info.ZBlk = w.zblk
	info.Format, info.ZRev, err = loadZBlk(ctx, stor, at, w.zblk, sink)
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
	at, stor, err := f.view(ctx)
	if err == nil {
		err = f.activate(ctx, stor, at)
	}
	if err != nil {
		return 0, nil, f.errf(at, "size: %w", err)
	}
	defer f.PDeactivate()

	w, err := walkBlkTab(ctx, stor, at, f.blktab, 0, true)
	path, maxKey := w.path, w.maxKey
	if err != nil {
		return 0, path, f.errf(at, "size: %w", err)
	}
	if !w.found {
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

// blkTabWalk is the result of walking blktab to a key.
type blkTabWalk struct {
	zblk   zodb.Oid // the value for the key (the ZBlk), when found
	found  bool     // key (wantMax: any key) present
	maxKey int64    // wantMax: the largest key
	path   []PathNode
}

// walkBlkTab descends blktab to key (wantMax: to the largest key) and
// records every node visited with the key range it covers.
//
// It goes through neo/go's LOBTree/LOBucket objects, which stay in the live
// cache. A node neo/go cannot decode because a reference names the legacy
// ZBlk class while the object is cached under ZBlk0, or the reverse (real
// databases have both names for one object across revisions), is read
// directly from the storage instead (walkBlkTabRaw).
func walkBlkTab(ctx context.Context, stor zodb.IStorage, at zodb.Tid, t *btree.LOBTree, key int64, wantMax bool) (w blkTabWalk, err error) {
	if t == nil {
		return w, malformedf("ZBigFile has no blktab")
	}
	keycov := btree.LKeyRange{Lo: math.MinInt64, Hi_: math.MaxInt64}
	w.path = make([]PathNode, 0, 4)
	if fallback, err := activateNode(ctx, stor, at, t); err != nil {
		if fallback {
			return walkBlkTabRaw(ctx, stor, at, t.POid(), key, wantMax, keycov, w.path, 0)
		}
		return w, err
	}
	w.path = append(w.path, PathNode{Oid: t.POid(), Serial: t.PSerial(), Keys: keycov})

	var node btree.LONode = t
	for depth := 1; ; depth++ {
		switch n := node.(type) {
		case *btree.LOBucket:
			defer n.PDeactivate()
			if wantMax {
				w.maxKey, w.found = n.MaxKey()
				return w, nil
			}
			v, ok := n.Get(key)
			if !ok {
				return w, nil
			}
			obj, ok := v.(zodb.IPersistent)
			if !ok {
				return w, malformedf("blktab value is %s, not a persistent ZBlk", pyTypeName(v))
			}
			w.zblk = obj.POid()
			w.found = true
			return w, nil

		case *btree.LOBTree:
			ev := n.Entryv()
			l := len(ev)
			if l == 0 {
				n.PDeactivate()
				return w, nil // empty tree
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
				return w, malformedf("blktab deeper than %d levels (cycle?)", maxBlkTabDepth)
			}
			if err := ctx.Err(); err != nil {
				return w, err
			}
			if fallback, err := activateNode(ctx, stor, at, child); err != nil {
				if fallback {
					return walkBlkTabRaw(ctx, stor, at, child.POid(), key, wantMax, keycov, w.path, depth)
				}
				return w, err
			}
			serial := child.PSerial()
			if child.POid() == zodb.InvalidOid {
				serial = parentSerial // bucket embedded in the tree's record
			}
			w.path = append(w.path, PathNode{Oid: child.POid(), Serial: serial, Keys: keycov})
			node = child

		default:
			return w, malformedf("blktab node of type %T", node)
		}
	}
}

// walkBlkTabRaw continues a blktab walk at node oid by reading the nodes
// directly from the storage as of at (no live-cache objects).
func walkBlkTabRaw(ctx context.Context, stor zodb.IStorage, at zodb.Tid, oid zodb.Oid, key int64, wantMax bool, keycov btree.LKeyRange, path []PathNode, depth int) (w blkTabWalk, err error) {
	w.path = path
	lookup := func(entries []zpickle.Entry) (blkTabWalk, error) {
		if wantMax {
			if n := len(entries); n > 0 {
				w.maxKey, w.found = entries[n-1].Key, true
			}
			return w, nil
		}
		i := sort.Search(len(entries), func(i int) bool { return entries[i].Key >= key })
		if i < len(entries) && entries[i].Key == key {
			w.zblk, w.found = entries[i].Value, true
		}
		return w, nil
	}

	for ; ; depth++ {
		if depth > maxBlkTabDepth {
			return w, malformedf("blktab deeper than %d levels (cycle?)", maxBlkTabDepth)
		}
		if err := ctx.Err(); err != nil {
			return w, err
		}
		buf, serial, err := stor.Load(ctx, zodb.Xid{Oid: oid, At: at})
		if err != nil {
			return w, fmt.Errorf("blktab node %s: %w", oid, err)
		}
		n, err := zpickle.DecodeNode(buf.Data, zpickle.LO)
		buf.Release()
		if err != nil {
			return w, fmt.Errorf("blktab node %s: %w", oid, malformed(err))
		}
		w.path = append(w.path, PathNode{Oid: oid, Serial: serial, Keys: keycov})
		switch {
		case n.Kind == zpickle.Bucket:
			return lookup(n.Entries)
		case n.Inline:
			w.path = append(w.path, PathNode{Oid: zodb.InvalidOid, Serial: serial, Keys: keycov})
			return lookup(n.Entries)
		}
		l := len(n.Kids)
		if l == 0 {
			return w, nil // empty tree
		}
		i := l - 1
		if !wantMax {
			i = sort.Search(l, func(i int) bool { return i+1 == l || key < n.Keys[i+1] })
		}
		if i > 0 {
			keycov.Lo = max(keycov.Lo, n.Keys[i])
		}
		if i+1 < l {
			keycov.Hi_ = min(keycov.Hi_, n.Keys[i+1]-1)
		}
		oid = n.Kids[i]
	}
}

// activateNode activates a blktab node. fallback reports a failure that
// walkBlkTabRaw can get around (see walkBlkTab).
//
// The record of a ghost node is first checked by this package's decoder
// (read directly from the storage): neo/go's LOBTree decoder panics on one
// malformed state (a 1-tuple whose item is not a tuple) leaving the object
// locked, and its decoder takes exponential time on some crafted dict keys.
// This costs one more load of a node the first time it is used at a
// revision; CacheControl keeps nodes loaded.
func activateNode(ctx context.Context, stor zodb.IStorage, at zodb.Tid, node btree.LONode) (fallback bool, err error) {
	if oid := node.POid(); oid != zodb.InvalidOid && node.PSerial() == zodb.InvalidTid {
		if err := precheckNode(ctx, stor, at, oid); err != nil {
			return false, fmt.Errorf("blktab node %s: %w", oid, err)
		}
	}
	err = node.PActivate(ctx)
	if err == nil {
		return false, nil
	}
	if IsWrongClass(err) {
		return true, err
	}
	return false, fmt.Errorf("blktab: %w", classifyLoadErr(err))
}

// precheckNode verifies the record of a blktab node: a LOBTree or LOBucket
// with a well-formed state. Storage errors are left for neo/go to report.
func precheckNode(ctx context.Context, stor zodb.IStorage, at zodb.Tid, oid zodb.Oid) error {
	buf, _, err := stor.Load(ctx, zodb.Xid{Oid: oid, At: at})
	if err != nil {
		return nil
	}
	defer buf.Release()
	if _, err := zpickle.DecodeNode(buf.Data, zpickle.LO); err != nil {
		return malformed(err)
	}
	return nil
}

// loadZBlk loads the ZBlk record oid as of at directly from stor and
// assembles its block data into sink.
func loadZBlk(ctx context.Context, stor zodb.IStorage, at zodb.Tid, oid zodb.Oid, sink *blkSink) (fmt_ BlkFormat, serial zodb.Tid, err error) {
	if m, ok := stor.(RecordMapper); ok && sink.shared {
		if rec, serial, ok := m.LoadMapped(zodb.Xid{Oid: oid, At: at}); ok {
			if fmt_, ok := loadZBlk0Mapped(rec, sink); ok {
				return fmt_, serial, nil
			}
			rec.Release()
		}
	}
	buf, serial, err := stor.Load(ctx, zodb.Xid{Oid: oid, At: at})
	if err != nil {
		if isMissing(err) {
			return Hole, 0, fmt.Errorf("ZBlk %s: oid missing: %w", oid, err)
		}
		return Hole, 0, fmt.Errorf("ZBlk %s: %w", oid, err)
	}
	adopted := false
	defer func() {
		if !adopted {
			buf.Release()
		}
	}()

	rec := buf.Data
	class, err := zpickle.Class(rec)
	if err != nil {
		return Hole, serial, fmt.Errorf("ZBlk %s: %w", oid, malformed(err))
	}
	switch class {
	case ClassZBlk0, ClassZBlk:
		_, data, err := zpickle.DecodeBytes(rec)
		if err != nil {
			return FormatZBlk0, serial, fmt.Errorf("ZBlk0 %s: %w", oid, malformed(err))
		}
		if int64(len(data)) > sink.blksize {
			return FormatZBlk0, serial, fmt.Errorf("ZBlk0 %s: %w", oid,
				malformedf("data is %d bytes, longer than blksize %d", len(data), sink.blksize))
		}
		if sink.adopt(data, buf) {
			adopted = true
			return FormatZBlk0, serial, nil
		}
		dst := sink.get()
		n := copy(dst, data)
		clear(dst[n:])
		return FormatZBlk0, serial, nil

	case ClassZBlk1:
		_, root, err := zpickle.DecodeRef(rec)
		if err != nil {
			err = malformed(err)
		} else {
			err = loadZBlk1(ctx, stor, at, root, sink.get())
		}
		if err != nil {
			return FormatZBlk1, serial, fmt.Errorf("ZBlk1 %s: %w", oid, err)
		}
		return FormatZBlk1, serial, nil
	}
	return Hole, serial, classErrorf(ErrUnknownZBlk, "ZBlk %s: unknown ZBlk class %s", oid, class)
}

// loadZBlk0Mapped takes the block from a ZBlk0 record in a FileStorage's
// map (see loadZBlk): adopted when it is the whole block (sink then owns
// rec), else copied (rec released). Anything else (another class, a
// malformed record) is left to the normal path, which reports errors.
func loadZBlk0Mapped(rec fs1map.Record, sink *blkSink) (BlkFormat, bool) {
	var data []byte
	ok := false
	if !fs1map.Safe(func() { data, ok = decodeZBlk0(rec.Data) }) || !ok || int64(len(data)) > sink.blksize {
		return Hole, false
	}
	if sink.adoptable(data) {
		sink.rec, sink.data = rec, data
		return FormatZBlk0, true
	}
	dst := sink.get()
	n := 0
	if !fs1map.Safe(func() { n = copy(dst, data) }) {
		return Hole, false
	}
	clear(dst[n:])
	rec.Release()
	return FormatZBlk0, true
}

// decodeZBlk0 returns the data of a ZBlk0 record, ok false for a record of
// another class or a malformed one.
func decodeZBlk0(rec []byte) ([]byte, bool) {
	class, err := zpickle.Class(rec)
	if err != nil || (class != ClassZBlk0 && class != ClassZBlk) {
		return nil, false
	}
	_, data, err := zpickle.DecodeBytes(rec)
	return data, err == nil
}

// isCtxErr tells whether err is a context cancellation or deadline.
func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
