// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"lab.nexedi.com/kirr/neo/go/zodb"
)

// node is embedded by every node of the tree.
type node struct {
	fs.Inode
}

// Statfs: every count is zero (spec 1.2); it exists so that df does not complain.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	*out = fuse.StatfsOut{}
	out.Bsize = 2 << 20
	out.Frsize = 2 << 20
	out.NameLen = 255
	return 0
}

var _ fs.NodeStatfser = (*node)(nil)

// Flush. Nothing is written through WCFS, so a close(2) has nothing to
// flush, and a close must not wait for the server (a client's unpin, a close
// while the server is busy with the caller's own pin or stopped): every file
// opens with FOPEN_NOFLUSH (noFlush), so the kernel sends no FLUSH on its
// close, except .wcfs/zurl. The gateway holds .wcfs/zurl open while joined,
// and its close reports a server that died (ENOTCONN), as the reference's
// does: FLUSH is answered with success (go-fuse's default without a
// NodeFlusher) and not ENOSYS, which would make the kernel stop sending
// FLUSH for the whole connection.
const noFlush = fuse.FOPEN_NOFLUSH

// dir is a plain directory (/, .wcfs/, .wcfs/debug/): mode 0755.
type dir struct {
	node
}

// tidTime is the wall time encoded in a tid.
func tidTime(tid zodb.Tid) time.Time {
	if tid == 0 {
		return time.Unix(0, 0)
	}
	return tid.Time().Time
}

// setTime sets mtime and ctime of attr.
func setTime(attr *fuse.Attr, t time.Time) {
	attr.SetTimes(nil, &t, &t)
}

// lookupStatic answers a lookup of a static child of parent.
func lookupStatic(ctx context.Context, parent *fs.Inode, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	ch := parent.GetChild(name)
	if ch == nil {
		return nil, syscall.ENOENT
	}
	if ga, ok := ch.Operations().(fs.NodeGetattrer); ok {
		var a fuse.AttrOut
		if e := ga.Getattr(ctx, nil, &a); e != 0 {
			return nil, e
		}
		out.Attr = a.Attr
	}
	return ch, 0
}

// ---- root ----

// rootNode is /: head/, .wcfs/ and the @<rev>/ views looked up so far.
type rootNode struct {
	node
	srv *Server
}

var _ fs.NodeLookuper = (*rootNode)(nil)
var _ fs.NodeOnAdder = (*rootNode)(nil)

// OnAdd builds the static part of the tree.
func (r *rootNode) OnAdd(ctx context.Context) {
	s := r.srv
	reg := fs.StableAttr{Mode: syscall.S_IFREG}
	dirAttr := fs.StableAttr{Mode: syscall.S_IFDIR}

	head := r.NewPersistentInode(ctx, s.head.dir, dirAttr)
	r.AddChild("head", head, false)
	head.AddChild("at", head.NewPersistentInode(ctx, &smallFile{
		dynamic: true,
		content: func() []byte { return []byte(s.head.At().String()) },
		mtime:   func() time.Time { return tidTime(s.head.At()) },
	}, reg), false)
	head.AddChild("watch", head.NewPersistentInode(ctx, s.head.watch, reg), false)
	head.AddChild("bigfile", head.NewPersistentInode(ctx, s.head.bfdir, dirAttr), false)

	wcfs := r.NewPersistentInode(ctx, &dir{}, dirAttr)
	r.AddChild(".wcfs", wcfs, false)
	zurl := []byte(s.opt.ZURL.StorageURL())
	wcfs.AddChild("zurl", wcfs.NewPersistentInode(ctx, &smallFile{
		flush:   true,
		content: func() []byte { return zurl },
	}, reg), false)
	pintimeout := []byte(fmt.Sprintf("%.1f", s.opt.PinTimeout.Seconds()))
	wcfs.AddChild("pintimeout", wcfs.NewPersistentInode(ctx, &smallFile{
		content: func() []byte { return pintimeout },
	}, reg), false)
	wcfs.AddChild("stats", wcfs.NewPersistentInode(ctx, &smallFile{
		dynamic: true,
		content: s.statsText,
	}, reg), false)
	wcfs.AddChild("zstor", wcfs.NewPersistentInode(ctx, &smallFile{
		dynamic: true,
		content: s.zstor.stateText, // "up" or "down since ...": storage outages (zstor.go)
	}, reg), false)
	if s.opt.Debug {
		debug := wcfs.NewPersistentInode(ctx, &dir{}, dirAttr)
		wcfs.AddChild("debug", debug, false)
		debug.AddChild("zhead", debug.NewPersistentInode(ctx, s.zhead, reg), false)
	}
}

// Lookup: head and .wcfs are static, anything else must be @<rev> (EINVAL
// otherwise, spec 1.3).
func (r *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	switch name {
	case "head", ".wcfs":
		return lookupStatic(ctx, &r.Inode, name, out)
	}
	rev, ok := parseRevName(name)
	if !ok {
		return nil, errno(invalidf("not @rev"), fmt.Sprintf("/: lookup %q", name))
	}
	v, err := r.srv.revs.lookup(ctx, rev)
	if err != nil {
		return nil, errno(err, "/: lookup "+name)
	}
	v.dir.fillAttr(&out.Attr)
	return r.NewInode(ctx, v.dir, fs.StableAttr{Mode: syscall.S_IFDIR}), 0
}

// parseRevName parses "@<16 hex digits>".
func parseRevName(name string) (zodb.Tid, bool) {
	hex, ok := strings.CutPrefix(name, "@")
	if !ok || len(hex) != 16 {
		return 0, false
	}
	rev, err := zodb.ParseTid(hex)
	return rev, err == nil
}

// parseOidName parses "<16 hex digits>".
func parseOidName(name string) (zodb.Oid, bool) {
	if len(name) != 16 {
		return 0, false
	}
	oid, err := zodb.ParseOid(name)
	return oid, err == nil
}

// nrevs returns the number of @<rev>/ views (RevHead).
func (r *rootNode) nrevs() int { return r.srv.revs.len() }

// ---- small files ----

// smallFile is a small read-only text file: .wcfs/zurl, .wcfs/pintimeout
// (static: kept in the page cache), head/at, .wcfs/stats (dynamic: direct
// I/O, content computed at every read). Reads past the content return
// nothing (spec gap 13).
type smallFile struct {
	node
	dynamic bool
	flush   bool // its close sends FLUSH (.wcfs/zurl: see noFlush)
	content func() []byte
	mtime   func() time.Time // nil: zero
}

var _ fs.NodeGetattrer = (*smallFile)(nil)
var _ fs.NodeOpener = (*smallFile)(nil)
var _ fs.NodeReader = (*smallFile)(nil)

func (f *smallFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0644
	out.Size = uint64(len(f.content()))
	if f.mtime != nil {
		setTime(&out.Attr, f.mtime())
	}
	return 0
}

func (f *smallFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EPERM
	}
	fl := uint32(fuse.FOPEN_KEEP_CACHE)
	if f.dynamic {
		fl = fuse.FOPEN_DIRECT_IO
	}
	if !f.flush {
		fl |= noFlush
	}
	return nil, fl, 0
}

func (f *smallFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return fuse.ReadResultData(sliceAt(f.content(), off, len(dest))), 0
}

// sliceAt returns data[off:off+n] clipped to data; empty past the end.
func sliceAt(data []byte, off int64, n int) []byte {
	if off < 0 || off >= int64(len(data)) {
		return nil
	}
	data = data[off:]
	if n < len(data) {
		data = data[:n]
	}
	return data
}
