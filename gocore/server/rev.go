// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	log "github.com/golang/glog"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/zdata"
)

// revViews is the set of @<rev>/ views.
//
// A view appears at the first lookup of @<rev> and owns one ZODB connection
// at rev. Views are released when the kernel forgets them: when a view has
// had no open file and no request for Options.RevIdle, the server asks the
// kernel to drop its directory entry (NOTIFY_INVAL_ENTRY); once nothing in
// the kernel references its nodes any more the kernel forgets them (with
// their page cache), and the view closes its connection (spec gap 2).
//
// Views are bounded (revViewsMax): past the bound, views without open
// files are released least recently used first, without waiting for
// Options.RevIdle.
type revViews struct {
	srv *Server

	mu   sync.Mutex
	byAt map[zodb.Tid]*revView

	trim chan struct{} // wakes gcLoop: over revViewsMax views (capacity 1)
}

// revViewsMax bounds the @<rev>/ views kept without need. Each costs the
// server some KB (a ZODB connection, nodes) and the kernel inodes (and
// page cache) until it is released; a client may look up any number of
// revisions, and a commit that keeps old data makes a view per revision of
// its changed blocks (at most preserveMaxRevs). Past the bound, gc releases
// the views without open files, least recently used first, down to 3/4 of
// it. Views with open files (pinned clients map their blocks) stay.
const revViewsMax = 1024

func (rv *revViews) len() int {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return len(rv.byAt)
}

// get returns the view for rev if there is one.
func (rv *revViews) get(rev zodb.Tid) *revView {
	rv.mu.Lock()
	defer rv.mu.Unlock()
	return rv.byAt[rev]
}

// lookup returns the view for rev, creating it and opening its connection
// if needed. For a rev beyond the database head it waits until the database
// reaches rev (or ctx is done: FUSE INTERRUPT).
func (rv *revViews) lookup(ctx context.Context, rev zodb.Tid) (*revView, error) {
	if rev == 0 {
		return nil, invalidf("@%s: no database state at revision 0", rev)
	}
	rv.mu.Lock()
	v := rv.byAt[rev]
	if v == nil {
		v = &revView{srv: rv.srv, rev: rev, files: make(map[zodb.Oid]*bigFile)}
		v.dir = &revDir{v: v}
		rv.byAt[rev] = v
		if len(rv.byAt) > revViewsMax {
			select {
			case rv.trim <- struct{}{}:
			default: // woken already
			}
		}
	}
	rv.mu.Unlock()
	v.touch()

	// open the connection now: a lookup of a future @rev waits here
	_, _, leave, err := v.use(ctx)
	if err != nil {
		// forget a view the kernel never got (e.g. an interrupted wait)
		rv.mu.Lock()
		if rv.byAt[rev] == v && v.dir.StableAttr().Ino == 0 {
			delete(rv.byAt, rev)
		}
		rv.mu.Unlock()
		return nil, err
	}
	leave()
	return v, nil
}

// closeAll releases every view (the server stops).
func (rv *revViews) closeAll() {
	rv.mu.Lock()
	views := rv.byAt
	rv.byAt = make(map[zodb.Tid]*revView)
	rv.mu.Unlock()
	for _, v := range views {
		v.release()
	}
}

// forget removes v (its directory node was forgotten by the kernel).
func (rv *revViews) forget(v *revView) {
	rv.mu.Lock()
	if rv.byAt[v.rev] == v {
		delete(rv.byAt, v.rev)
	}
	rv.mu.Unlock()
	v.release()
}

// gc asks the kernel to forget views idle for longer than idle, and more
// views without open files, least recently used first, while there are
// more than revViewsMax.
func (rv *revViews) gc(idle time.Duration) {
	now := time.Now().UnixNano()
	var expired, spare []*revView
	rv.mu.Lock()
	n := len(rv.byAt)
	for _, v := range rv.byAt {
		if v.handles.Load() != 0 {
			continue
		}
		if now-v.lastUse.Load() > int64(idle) {
			expired = append(expired, v)
		} else {
			spare = append(spare, v)
		}
	}
	rv.mu.Unlock()
	if excess := n - len(expired) - revViewsMax*3/4; n > revViewsMax && excess > 0 {
		slices.SortFunc(spare, func(a, b *revView) int { return cmp.Compare(a.lastUse.Load(), b.lastUse.Load()) })
		spare = spare[:min(excess, len(spare))]
		log.Infof("%d @<rev>/ views (more than %d): releasing %d more, least recently used first", n, revViewsMax, len(spare))
		expired = append(expired, spare...)
	}

	root := rv.srv.root
	for _, v := range expired {
		name := "@" + v.rev.String()
		if log.V(1) {
			log.Infof("%s/: idle for %s: releasing", name, idle)
		}
		// no lock held: the kernel may call us back (FORGET) while we notify
		st := root.NotifyEntry(name)
		if st != 0 && st != syscall.ENOENT {
			log.Warningf("%s/: release: %s", name, st)
		}
		v.lastUse.Store(now) // do not ask again before another idle period
	}
}

// revView is @<rev>/: the database as of rev.
type revView struct {
	srv *Server
	rev zodb.Tid
	dir *revDir

	lastUse atomic.Int64 // unix ns of the last request
	handles atomic.Int64 // open files

	mu        sync.Mutex
	zconn     *zdata.ZConn  // nil: not open
	gen       uint64        // incremented at every (re)open of zconn
	opening   chan struct{} // !nil: zconn being opened
	users     int           // use() calls in progress
	forgotten bool          // the kernel forgot the view: close zconn when unused
	bfdir     *bigfileDir   // @<rev>/bigfile/ node, nil until looked up
	files     map[zodb.Oid]*bigFile
}

func (v *revView) touch() { v.lastUse.Store(time.Now().UnixNano()) }

func (v *revView) opened(δ int64) {
	v.handles.Add(δ)
	v.touch()
}

// use returns the view's connection (opening it if needed) and its
// generation; leave must be called when the caller is done with it.
func (v *revView) use(ctx context.Context) (zc *zdata.ZConn, gen uint64, leave func(), err error) {
	for {
		v.mu.Lock()
		if v.zconn != nil {
			v.users++
			zc, gen = v.zconn, v.gen
			v.mu.Unlock()
			return zc, gen, v.leave, nil
		}
		if opening := v.opening; opening != nil {
			v.mu.Unlock()
			select {
			case <-opening:
				continue
			case <-ctx.Done():
				return nil, 0, nil, ctx.Err()
			}
		}
		opening := make(chan struct{})
		v.opening = opening
		v.forgotten = false
		v.mu.Unlock()

		zc, err := zdata.OpenConn(ctx, v.srv.db, v.rev)

		v.mu.Lock()
		v.opening = nil
		close(opening)
		if err != nil {
			v.mu.Unlock()
			return nil, 0, nil, err
		}
		v.zconn = zc
		v.gen++
		v.mu.Unlock()
	}
}

func (v *revView) leave() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.users--
	v.closeIfUnused()
}

// release closes the view's connection once nobody uses it.
func (v *revView) release() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.forgotten = true
	v.closeIfUnused()
}

func (v *revView) closeIfUnused() {
	if v.forgotten && v.users == 0 && v.zconn != nil {
		v.zconn.Close()
		v.zconn = nil
		if log.V(1) {
			log.Infof("@%s/: released", v.rev)
		}
	}
}

// lookupFile returns @<rev>/bigfile/<oid>, creating it on first lookup, and
// fills its attributes.
func (v *revView) lookupFile(ctx context.Context, oid zodb.Oid, attr *fuse.Attr) (*bigFile, error) {
	v.touch()
	zc, gen, leave, err := v.use(ctx)
	if err != nil {
		return nil, err
	}
	defer leave()

	v.mu.Lock()
	f := v.files[oid]
	v.mu.Unlock()
	if f == nil {
		nf := newBigFile(oid)
		nf.rev = v
		if err := nf.initState(ctx, zc); err != nil {
			return nil, err
		}
		nf.zgen = gen
		v.mu.Lock()
		f = v.files[oid]
		if f == nil {
			f = nf
			v.files[oid] = f
		}
		v.mu.Unlock()
	}
	f.fillAttr(attr)
	return f, nil
}

// file returns the file node for oid if it was looked up.
func (v *revView) file(oid zodb.Oid) *bigFile {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.files[oid]
}

func (v *revView) forgetFile(f *bigFile) {
	v.mu.Lock()
	if v.files[f.oid] == f {
		delete(v.files, f.oid)
	}
	v.mu.Unlock()
}

func (v *revView) forgetBigfileDir(d *bigfileDir) {
	v.mu.Lock()
	if v.bfdir == d {
		v.bfdir = nil
	}
	v.mu.Unlock()
}

// revDir is @<rev>/: mode 0555, mtime = rev; it holds only bigfile/.
type revDir struct {
	node
	v *revView
}

var _ fs.NodeLookuper = (*revDir)(nil)
var _ fs.NodeGetattrer = (*revDir)(nil)
var _ fs.NodeOnForgetter = (*revDir)(nil)

func (d *revDir) fillAttr(attr *fuse.Attr) {
	attr.Mode = syscall.S_IFDIR | 0555
	setTime(attr, tidTime(d.v.rev))
}

func (d *revDir) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fillAttr(&out.Attr)
	return 0
}

func (d *revDir) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	v := d.v
	v.touch()
	if name != "bigfile" {
		return nil, syscall.ENOENT
	}
	v.mu.Lock()
	bf := v.bfdir
	if bf == nil {
		bf = &bigfileDir{rev: v}
		v.bfdir = bf
	}
	v.mu.Unlock()
	out.Attr.Mode = syscall.S_IFDIR | 0755
	return d.NewInode(ctx, bf, fs.StableAttr{Mode: syscall.S_IFDIR}), 0
}

// OnForget: the kernel forgot @<rev>/ (after its children): release the view.
func (d *revDir) OnForget() {
	d.v.srv.revs.forget(d.v)
}
