// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"context"
	"sync"
	"syscall"

	log "github.com/golang/glog"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"lab.nexedi.com/kirr/neo/go/zodb"
)

// zheadFile is .wcfs/debug/zhead (only with -debug): every open gets the
// stream of tids the server processes after the open, one "<tid>\n" line per
// transaction, once head/at shows it.
//
// Unlike the reference (spec gap 14) a reader that does not read cannot
// block the server: every handle has a bounded queue, and a handle whose
// queue overflows is detached (its reader gets EOF after the queued lines).
type zheadFile struct {
	node
	srv *Server

	mu    sync.Mutex
	links map[*zheadLink]struct{}
}

// zheadQueueLen bounds the lines queued for one .wcfs/debug/zhead reader.
const zheadQueueLen = 4096

// zheadLink is one open of .wcfs/debug/zhead.
type zheadLink struct {
	q chan zodb.Tid // closed when detached

	readMu sync.Mutex // serialises reads of the handle
	rest   []byte     // part of a line not yet read
}

var _ fs.NodeOpener = (*zheadFile)(nil)
var _ fs.NodeReader = (*zheadFile)(nil)
var _ fs.NodeWriter = (*zheadFile)(nil)
var _ fs.NodeReleaser = (*zheadFile)(nil)

func (z *zheadFile) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0644
	return 0
}

func (z *zheadFile) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	l := &zheadLink{q: make(chan zodb.Tid, zheadQueueLen)}
	z.mu.Lock()
	if z.links == nil {
		z.links = make(map[*zheadLink]struct{})
	}
	z.links[l] = struct{}{}
	z.mu.Unlock()
	z.srv.stats.zheadLink.Add(1)
	return l, fuse.FOPEN_STREAM | fuse.FOPEN_NONSEEKABLE | fuse.FOPEN_DIRECT_IO | noFlush, 0
}

func (z *zheadFile) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	l := fh.(*zheadLink)
	l.readMu.Lock()
	defer l.readMu.Unlock()
	if len(l.rest) == 0 {
		var tid zodb.Tid
		var ok bool
		select {
		case tid, ok = <-l.q: // what is there first: a non-blocking read (nonblock.go) comes interrupted
		default:
			select {
			case <-ctx.Done():
				return nil, syscall.EINTR
			case tid, ok = <-l.q:
			}
		}
		if !ok {
			return fuse.ReadResultData(nil), 0 // detached: EOF
		}
		l.rest = []byte(tid.String() + "\n")
	}
	n := copy(dest, l.rest)
	data := l.rest[:n]
	l.rest = l.rest[n:]
	return fuse.ReadResultData(data), 0
}

// Write: the stream is server -> client only.
func (z *zheadFile) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	return 0, syscall.ECONNRESET
}

func (z *zheadFile) Release(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	l := fh.(*zheadLink)
	z.mu.Lock()
	if _, ok := z.links[l]; ok {
		delete(z.links, l)
		close(l.q)
	}
	z.mu.Unlock()
	z.srv.stats.zheadLink.Add(-1)
	return 0
}

// detachAll ends every reader's stream (EOF after the queued lines).
func (z *zheadFile) detachAll() {
	z.mu.Lock()
	defer z.mu.Unlock()
	for l := range z.links {
		delete(z.links, l)
		close(l.q)
	}
}

// publish queues tid to every reader; readers whose queue is full are detached.
func (z *zheadFile) publish(tid zodb.Tid) {
	z.mu.Lock()
	defer z.mu.Unlock()
	for l := range z.links {
		select {
		case l.q <- tid:
		default:
			log.Errorf(".wcfs/debug/zhead: a reader does not keep up (%d lines queued): detaching it", zheadQueueLen)
			delete(z.links, l)
			close(l.q)
		}
	}
}
