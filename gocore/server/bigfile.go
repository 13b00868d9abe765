// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"context"
	"fmt"
	"sync"
	"syscall"

	log "github.com/golang/glog"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sync/errgroup"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/zdata"
)

// ---- {head,@<rev>}/bigfile/ ----

// bigfileDir is head/bigfile/ or @<rev>/bigfile/: a lookup of <oid> gives
// the ZBigFile with that oid as of the view's revision.
type bigfileDir struct {
	node
	head *headView // one of head and rev is set
	rev  *revView
}

var _ fs.NodeLookuper = (*bigfileDir)(nil)

func (d *bigfileDir) path() string {
	if d.head != nil {
		return "head/bigfile"
	}
	return "@" + d.rev.rev.String() + "/bigfile"
}

// Lookup: name must be an oid (EINVAL otherwise); an oid of no object, or of
// an object that is not a ZBigFile, is EINVAL; storage errors are EIO.
func (d *bigfileDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	what := d.path() + ": lookup " + name
	oid, ok := parseOidName(name)
	if !ok {
		return nil, errno(invalidf("not oid"), what)
	}
	reg := fs.StableAttr{Mode: syscall.S_IFREG}
	if h := d.head; h != nil {
		// the inode is set up with viewMu read-held: the commit follower
		// (viewMu.W) uses it for cache retrieve/invalidation
		if err := h.viewMu.RLock(ctx); err != nil {
			return nil, errno(err, what)
		}
		defer h.viewMu.RUnlock()
		f, err := h.lookupFile(ctx, oid, &out.Attr)
		if err != nil {
			return nil, errno(err, what)
		}
		return d.NewInode(ctx, f, reg), 0
	}
	v := d.rev
	f, err := v.lookupFile(ctx, oid, &out.Attr)
	if err != nil {
		return nil, errno(err, what)
	}
	ch := d.NewInode(ctx, f, reg)
	v.mu.Lock() // publish the inode set up to revView.file users (storeOld)
	v.mu.Unlock()
	return ch, 0
}

// OnForget: @<rev>/bigfile/ nodes are dropped when the kernel forgets them.
func (d *bigfileDir) OnForget() {
	if d.rev != nil {
		d.rev.forgetBigfileDir(d)
	}
}

// ---- {head,@<rev>}/bigfile/<oid> ----

// bigFile is head/bigfile/<oid> or @<rev>/bigfile/<oid>: the data of one
// ZBigFile as of its view's revision.
//
// The kernel page cache is the only cache of file data. A FUSE read loads the
// whole blocks it touches (concurrent reads of a block share one load),
// pushes the rest of each loaded block into the page cache (uploadBlk; see
// upload) and returns the requested part. Until that upload is done the
// loaded block stays in f.loads, so that reads of the rest of the block
// arriving meanwhile do not load it again.
type bigFile struct {
	node
	oid  zodb.Oid
	head *headView // one of head and rev is set
	rev  *revView

	// View state. For head/ files it changes only with head.viewMu
	// write-held (commit switch) and is read with viewMu read-held. For
	// @<rev>/ files blksize and size never change; zfile belongs to the
	// view's connection generation zgen (see revView.use).
	zfile     *zdata.ZBigFile
	zgen      uint64
	blksize   int64
	size      int64
	revApprox zodb.Tid // approximate last change of the data (mtime)
	gone      error    // head/: the ZBigFile does not exist any more (reads: size 0)

	loadMu sync.Mutex         // protects loads and zfile/zgen of @<rev>/ files
	loads  map[int64]*blkLoad // block -> load in progress, or loaded and not yet uploaded

	// sequential read detection for prefetch (see readahead)
	seqMu   sync.Mutex
	seqLast int64 // last block a read asked for
	seqNext int64 // first block after what was read or prefetched in the current run
}

// blkLoad is one block load: in progress until ready is closed, then the
// data in buf (blksize bytes, not modified any more) or err. The entry in
// the load table holds a reference to buf, released by whoever removes the
// entry (under loadMu).
type blkLoad struct {
	ready chan struct{}
	buf   *blockBuf
	err   error
}

// newBlkLoad returns a load entry for a block of f.
func (f *bigFile) newBlkLoad() *blkLoad {
	return &blkLoad{ready: make(chan struct{}), buf: newBlockBuf()}
}

var _ fs.NodeGetattrer = (*bigFile)(nil)
var _ fs.NodeOpener = (*bigFile)(nil)
var _ fs.NodeReader = (*bigFile)(nil)
var _ fs.NodeReleaser = (*bigFile)(nil)

func newBigFile(oid zodb.Oid) *bigFile {
	return &bigFile{oid: oid, loads: make(map[int64]*blkLoad), seqLast: -1}
}

func (f *bigFile) path() string {
	if f.head != nil {
		return "head/bigfile/" + f.oid.String()
	}
	return "@" + f.rev.rev.String() + "/bigfile/" + f.oid.String()
}

// initState loads the ZBigFile's parameters through zc (view entered).
func (f *bigFile) initState(ctx context.Context, zc *zdata.ZConn) error {
	zfile, err := zc.LoadZBigFile(ctx, f.oid)
	if err != nil {
		return err
	}
	zctx := zc.Ctx(ctx)
	blksize, _, err := zfile.Params(zctx)
	if err != nil {
		return err
	}
	size, _, err := zfile.Size(zctx)
	if err != nil {
		return err
	}
	f.zfile = zfile
	f.blksize = blksize
	f.size = size
	f.revApprox = zfile.PSerial()
	f.gone = nil
	return nil
}

// fillAttr fills the attributes of f; the view must be entered.
func (f *bigFile) fillAttr(attr *fuse.Attr) {
	attr.Mode = syscall.S_IFREG | 0444
	attr.Size = uint64(f.size)
	attr.Blksize = uint32(f.blksize)
	setTime(attr, tidTime(f.revApprox))
}

// enter makes f's view state stable and returns the connection to load
// through; leave must be called when done. For head/ files it read-locks the
// head view (the wait can be interrupted).
func (f *bigFile) enter(ctx context.Context) (zc *zdata.ZConn, leave func(), err error) {
	if f.head != nil {
		h := f.head
		if err := h.viewMu.RLock(ctx); err != nil {
			return nil, nil, err
		}
		return h.zconn, h.viewMu.RUnlock, nil
	}
	zc, gen, leave, err := f.rev.use(ctx)
	if err != nil {
		return nil, nil, err
	}
	f.loadMu.Lock()
	if f.zgen != gen {
		// the view's connection was reopened: reload the ZBigFile through it
		zfile, err2 := zc.LoadZBigFile(ctx, f.oid)
		if err2 != nil {
			f.loadMu.Unlock()
			leave()
			return nil, nil, err2
		}
		f.zfile, f.zgen = zfile, gen
	}
	f.loadMu.Unlock()
	return zc, leave, nil
}

// zfileFor returns the ZBigFile object to load through (view entered).
func (f *bigFile) zfileFor() *zdata.ZBigFile {
	if f.head != nil {
		return f.zfile
	}
	f.loadMu.Lock()
	defer f.loadMu.Unlock()
	return f.zfile
}

func (f *bigFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	_, leave, err := f.enter(ctx)
	if err != nil {
		return errno(err, f.path()+": getattr")
	}
	defer leave()
	f.fillAttr(&out.Attr)
	return 0
}

// fileHandle is an open of a bigFile (counted for @<rev>/ idle detection).
type fileHandle struct {
	f *bigFile
}

// Open: read-only; the page cache is kept across opens.
func (f *bigFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EPERM
	}
	if f.rev != nil {
		f.rev.opened(+1)
	}
	return &fileHandle{f}, fuse.FOPEN_KEEP_CACHE | noFlush, 0
}

func (f *bigFile) Release(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	if f.rev != nil {
		f.rev.opened(-1)
	}
	return 0
}

// Read serves [off, off+len(dest)) clipped to the file size. A read at or
// past EOF returns nothing.
func (f *bigFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	zc, leave, err := f.enter(ctx)
	if err != nil {
		return nil, errno(err, f.path()+": read")
	}
	left := false
	defer func() {
		if !left {
			leave()
		}
	}()
	if f.rev != nil {
		f.rev.touch()
	}

	size, bs := f.size, f.blksize
	if off < 0 {
		return nil, syscall.EINVAL
	}
	if off >= size || len(dest) == 0 {
		return fuse.ReadResultData(nil), 0
	}
	end := size
	if int64(len(dest)) < size-off {
		end = off + int64(len(dest))
	}
	b0, b1 := off/bs, (end-1)/bs
	f.readahead(b0, b1)
	what := func() string { return fmt.Sprintf("%s: read [%d, %d)", f.path(), off, end) }

	if b0 == b1 {
		// within one block: reply straight from the block buffer, no copy
		lo, hi := off-b0*bs, end-b0*bs
		buf, up, err := f.block(ctx, zc, b0, lo, hi)
		if err != nil {
			return nil, errno(err, what())
		}
		leave()
		left = true
		up.do()
		return &blockResult{buf: buf, data: buf.data[lo:hi]}, 0
	}

	// several blocks: load them in parallel into dest
	dest = dest[:end-off]
	var upmu sync.Mutex
	var ups []*upload
	g, gctx := errgroup.WithContext(ctx)
	for blk := b0; blk <= b1; blk++ {
		g.Go(func() error {
			blo, bhi := max(off, blk*bs), min(end, (blk+1)*bs) // part of [off, end) in blk
			buf, up, err := f.block(gctx, zc, blk, blo-blk*bs, bhi-blk*bs)
			if err != nil {
				return err
			}
			copy(dest[blo-off:bhi-off], buf.data[blo-blk*bs:])
			buf.unref()
			upmu.Lock()
			ups = append(ups, up)
			upmu.Unlock()
			return nil
		})
	}
	err = g.Wait()
	leave()
	left = true
	for _, up := range ups {
		up.do() // even after a failure: uploads release their loads
	}
	if err != nil {
		return nil, errno(err, what())
	}
	return fuse.ReadResultData(dest), 0
}

// block returns the data of block blk as of f's view, with a reference
// the caller must release, loading it unless a load is in progress or done
// and not yet uploaded. [lo, hi) is the part of the block the caller
// returns to the kernel. The caller that loaded the block gets the upload of
// the rest of it into the page cache to do (see upload; nil for others):
// once it left the view, before it replies.
//
// The view must be entered. A caller waiting for another caller's load can
// be interrupted (ctx); the load itself is not canceled by an interrupt,
// since others may wait for it, only by the server's shutdown.
func (f *bigFile) block(ctx context.Context, zc *zdata.ZConn, blk, lo, hi int64) (*blockBuf, *upload, error) {
	f.loadMu.Lock()
	l := f.loads[blk]
	owner := l == nil
	if owner {
		l = f.newBlkLoad()
		f.loads[blk] = l
	}
	buf := l.buf
	buf.ref() // the table's reference keeps it alive here
	f.loadMu.Unlock()

	var up *upload
	if owner {
		up = f.load(zc, blk, l, lo, hi)
	} else {
		select {
		case <-l.ready:
		case <-ctx.Done():
			buf.unref()
			return nil, nil, ctx.Err()
		}
	}
	if l.err != nil {
		buf.unref()
		return nil, nil, l.err
	}
	return buf, up, nil
}

// upload is the upload of the rest of a block a read loaded: the parts of
// the block outside what the read returns, stored into the page cache
// before the read is answered. So a read of block N returns once block N
// is in the page cache, and a sequential reader woken by the answer finds
// the rest of the block there: it sends no more reads for it, which would
// race with the store (the store waits for the pages the kernel locked for
// them, and copies them again). Loading and storing only the block a read
// touches is what the reference does (its tests check the page cache block
// by block); other blocks are stored ahead only with -prefetch.
//
// It runs once the read left the view: the store waits for page locks,
// which reads of the same block hold until they are answered, and those
// reads need the view (see uploadBlk).
type upload struct {
	f      *bigFile
	blk    int64
	l      *blkLoad
	ranges [][2]int64
}

// do stores the upload's ranges into the page cache (nothing if up is nil)
// and releases the load.
func (up *upload) do() {
	if up == nil {
		return
	}
	srv := up.f.server()
	defer srv.uploads.Done()
	defer up.l.buf.unref()
	up.f.uploadBlk(up.blk, up.l, up.ranges)
}

// load loads block blk into l (the view entered) and returns the upload of
// the part of the block outside [lo, hi), which the caller must do (nil if
// there is nothing to upload or the load failed).
func (f *bigFile) load(zc *zdata.ZConn, blk int64, l *blkLoad, lo, hi int64) *upload {
	if !f.loadOnly(zc, blk, l) {
		return nil
	}
	ranges := uploadRanges(lo, hi, f.blksize)
	if len(ranges) == 0 {
		f.dropLoad(blk, l)
		return nil
	}
	srv := f.server()
	l.buf.ref() // the upload's, released when it is done
	srv.uploads.Add(1)
	return &upload{f: f, blk: blk, l: l, ranges: ranges}
}

// loadOnly loads block blk into l (the view entered) and publishes the
// result; on error l leaves the load table.
func (f *bigFile) loadOnly(zc *zdata.ZConn, blk int64, l *blkLoad) bool {
	ctx := f.server().ctx
	data, info, err := f.zfileFor().LoadBlkShared(zc.Ctx(ctx), blk)
	if err == nil {
		l.buf.shared, l.buf.data = data, data.Data
		f.server().stats.Loaded.Add(1)
	}
	if err == nil && f.head != nil {
		err = f.head.blockLoaded(ctx, f, blk, info)
	}
	l.err = err
	close(l.ready)
	if err != nil {
		f.dropLoad(blk, l)
		return false
	}
	return true
}

// dropLoad removes l from the load table (if it is still there).
func (f *bigFile) dropLoad(blk int64, l *blkLoad) {
	f.loadMu.Lock()
	if f.loads[blk] == l {
		delete(f.loads, blk)
		l.buf.unref()
	}
	f.loadMu.Unlock()
}

// dropLoads empties the load table (the file changed entirely).
func (f *bigFile) dropLoads() {
	f.loadMu.Lock()
	for blk, l := range f.loads {
		delete(f.loads, blk)
		l.buf.unref()
	}
	f.loadMu.Unlock()
}

// pageSize is the granularity of the kernel page cache.
const pageSize = 4096

// uploadRanges returns the parts of a block of blksize bytes outside
// [lo, hi), the part a read returns to the kernel (which caches it itself),
// the part after the read first: a sequential reader reads it next.
// Unaligned reads (O_DIRECT) do not fill the page cache: upload everything.
func uploadRanges(lo, hi, blksize int64) [][2]int64 {
	if lo%pageSize != 0 || (hi%pageSize != 0 && hi != blksize) {
		return [][2]int64{{0, blksize}}
	}
	var r [][2]int64
	if hi < blksize {
		r = append(r, [2]int64{hi, blksize})
	}
	if lo > 0 {
		r = append(r, [2]int64{0, lo})
	}
	return r
}

// Prefetch of big blocks (Options.Prefetch, off by default): the kernel
// reads ahead at most 128 KiB (a block of 2 MiB is 16 such reads), and a
// block is loaded only when a read reaches it. With prefetch, for a
// sequential reader the server loads and uploads the next blocks meanwhile,
// in order, a few at a time (Server.prefetchSem), so that the reader finds
// them in the page cache: it then sends no reads, and the run goes on at its
// next read, at the end of what was prefetched.
const prefetchMinBlksize = 512 << 10 // smaller blocks: kernel readahead suffices

// readahead is called by reads of blocks [b0, b1]: if they continue a
// sequential run, the blocks after it are prefetched.
func (f *bigFile) readahead(b0, b1 int64) {
	bs := f.blksize
	window := f.server().opt.Prefetch
	if window == 0 || bs < prefetchMinBlksize {
		return
	}
	if f.head != nil && f.head.NoPrefetch != nil && f.head.NoPrefetch(f) {
		return
	}
	f.seqMu.Lock()
	from, to := int64(0), int64(-1)
	if b0 >= f.seqLast && b0 <= f.seqNext {
		from, to = max(b1+1, f.seqNext), b1+max(1, window/bs)
		f.seqNext = max(f.seqNext, to+1)
	} else {
		f.seqNext = b1 + 1
	}
	f.seqLast = b1
	f.seqMu.Unlock()

	srv := f.server()
	for blk := from; blk <= to; blk++ {
		srv.uploads.Add(1)
		go func() {
			defer srv.uploads.Done()
			f.prefetch(blk)
		}()
	}
}

// prefetch loads block blk, unless it is being loaded or looks cached, and
// uploads it into the page cache; at most Server.prefetchSem at a time.
func (f *bigFile) prefetch(blk int64) {
	srv := f.server()
	if srv.prefetchSem.Acquire(srv.ctx, 1) != nil {
		return
	}
	defer srv.prefetchSem.Release(1)

	zc, leave, err := f.enter(srv.ctx)
	if err != nil {
		return
	}
	l := f.prefetchEntry(blk)
	if l == nil {
		leave()
		return
	}
	ok := f.loadOnly(zc, blk, l)
	leave() // uploadBlk takes the view lock itself
	if ok {
		l.buf.ref()
		f.uploadBlk(blk, l, [][2]int64{{0, int64(len(l.buf.data))}})
		l.buf.unref()
	}
}

// prefetchEntry returns a new load table entry for blk, or nil if the
// block is out of the file, being loaded, or looks cached (view entered).
func (f *bigFile) prefetchEntry(blk int64) *blkLoad {
	if f.gone != nil || (blk+1)*f.blksize > f.size {
		return nil
	}
	// the first page cached: the block was read or uploaded before
	var page [pageSize]byte
	if n, _ := f.ReadCache(blk*f.blksize, page[:]); n == pageSize {
		return nil
	}
	f.loadMu.Lock()
	defer f.loadMu.Unlock()
	if f.loads[blk] != nil {
		return nil
	}
	l := f.newBlkLoad()
	f.loads[blk] = l
	return l
}

// uploadBlk pushes the given parts of loaded block blk into the kernel page
// cache (FUSE NOTIFY_STORE). The kernel keeps the pages of a read locked
// while the read is served, so it never stores into the pages of the read
// it runs for (that would deadlock): the parts it is given are outside
// them. It runs without the view lock held, since the reads whose pages it
// may wait for need that lock; a commit waits for it (the upload
// generation) only after releasing the lock.
//
// For head/ files the upload must not put data of an older revision into the
// cache after a commit invalidated it: it proceeds only if the block is still
// current in the load table (a commit drops changed blocks from it) and it
// registers with the head's current upload generation, which a commit waits
// for before invalidating the page cache (see headView.commit).
func (f *bigFile) uploadBlk(blk int64, l *blkLoad, ranges [][2]int64) {
	defer f.dropLoad(blk, l)
	srv := f.server()
	if f.head != nil {
		h := f.head
		if h.viewMu.RLock(srv.ctx) != nil {
			return
		}
		f.loadMu.Lock()
		current := f.loads[blk] == l
		f.loadMu.Unlock()
		if !current {
			h.viewMu.RUnlock()
			return
		}
		gen := h.uploadGen
		gen.Add(1)
		h.viewMu.RUnlock()
		defer gen.Done()
	}

	off := blk * int64(len(l.buf.data)) // not f.blksize: no view lock held here
	for _, r := range ranges {
		st := f.storeCache(off, l.buf, r[0], r[1])
		switch st {
		case 0:
		case syscall.ENOENT:
			return // the kernel forgot the inode: nothing to cache
		default:
			log.Errorf("%s: blk %d: upload to page cache: %s", f.path(), blk, st)
			return
		}
	}
}

func (f *bigFile) server() *Server {
	if f.head != nil {
		return f.head.srv
	}
	return f.rev.srv
}

// OnForget: @<rev>/bigfile/<oid> nodes are dropped when the kernel forgets them.
func (f *bigFile) OnForget() {
	if f.rev != nil {
		f.rev.forgetFile(f)
	}
}
