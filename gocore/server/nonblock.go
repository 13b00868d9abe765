// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"sync"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// streamFS wraps the raw filesystem so that reads of the stream files
// (head/watch, .wcfs/debug/zhead: the opens answered FOPEN_STREAM) honour
// O_NONBLOCK: a read with nothing to return fails with EAGAIN instead of
// waiting, as a read of a pipe or a socket does. The kernel gives the
// file's current flags with every READ (O_NONBLOCK given at open or set
// later with fcntl); go-fuse's fs API does not pass them to the nodes.
//
// A non-blocking read is the node's read with its wait interrupted from
// the start: the nodes return what is there, EOF once the stream is
// closed, and EINTR only when they would wait (wproto.Pipe.PeerRead,
// zheadFile.Read). Writes stay synchronous: a write of head/watch returns
// once the server's end of the link took it, which does not wait for the
// client.
//
// The kernel never asks WCFS to poll a file (go-fuse has no POLL), so
// select/poll report the streams always ready: a non-blocking reader
// retries on EAGAIN.
type streamFS struct {
	fuse.RawFileSystem

	mu      sync.Mutex
	streams map[uint64]uint64 // file handle -> node id, of open streams
}

func newStreamFS(fs fuse.RawFileSystem) *streamFS {
	return &streamFS{RawFileSystem: fs, streams: make(map[uint64]uint64)}
}

// interrupted is a FUSE request's cancel channel that is closed already.
var interrupted = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

func (s *streamFS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	st := s.RawFileSystem.Open(cancel, in, out)
	if st.Ok() && out.OpenFlags&fuse.FOPEN_STREAM != 0 {
		s.mu.Lock()
		s.streams[out.Fh] = in.NodeId
		s.mu.Unlock()
	}
	return st
}

func (s *streamFS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	if in.Flags&syscall.O_NONBLOCK != 0 {
		s.mu.Lock()
		node, stream := s.streams[in.Fh]
		s.mu.Unlock()
		if stream && node == in.NodeId {
			res, st := s.RawFileSystem.Read(interrupted, in, buf)
			if st == fuse.Status(syscall.EINTR) {
				return nil, fuse.Status(syscall.EAGAIN)
			}
			return res, st
		}
	}
	return s.RawFileSystem.Read(cancel, in, buf)
}

func (s *streamFS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	// forget the handle first: go-fuse reuses its number once released
	s.mu.Lock()
	if s.streams[in.Fh] == in.NodeId {
		delete(s.streams, in.Fh)
	}
	s.mu.Unlock()
	s.RawFileSystem.Release(cancel, in)
}
