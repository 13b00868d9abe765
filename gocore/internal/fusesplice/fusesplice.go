// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package fusesplice pushes the bytes of a file into the page cache of a
// file of a FUSE mount without the bytes passing through user memory: a
// FUSE NOTIFY_STORE message whose data is spliced from the source file.
//
// The usual store (go-fuse's Inode.WriteCache) is a write(2) of the
// message from memory. For data in memory mapped from a file (the WCFS
// server's blocks in place, see package fs1map), the kernel then pins every
// source page (get_user_pages) and, the first time, fills the map's page
// table entries, before it copies each page into a new page cache page of
// the FUSE file. A splice takes the source file's page cache pages by
// reference instead: the message header is written into a pipe, the
// source range is spliced after it (page references, no copy), and the
// pipe is spliced into /dev/fuse, where the kernel copies each page once
// into the FUSE file's page cache, as a write would, without the pinning.
//
// A message must fit in the pipe: the header takes one pipe slot, and the
// data of n bytes at an offset not aligned to a page takes n/PageSize+1
// slots. A Storer's pipes are as large as the system allows an
// unprivileged process (fs.pipe-max-size, 1 MiB by default: 1016 KiB of
// data per message); larger ranges go in several messages.
//
// go-fuse does not export the descriptor of /dev/fuse: DevConn reads it
// from the server's private fields, checked by type, and reports an error
// when go-fuse's layout differs; callers then use the write path.
package fusesplice

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sync"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// PageSize is the page size the slot accounting assumes.
const PageSize = 4096

// ErrNoSplice wraps the failures of Store that are not the kernel's answer
// to the message (no pipe, a short splice from the source): the caller can
// store the same range by the write path instead.
var ErrNoSplice = errors.New("fusesplice: splice unavailable")

// DevConn returns the connection to /dev/fuse of a mounted go-fuse server.
// Calls through it hold a reference on the descriptor, so that a concurrent
// unmount cannot close it under them (they then fail).
func DevConn(srv *fuse.Server) (syscall.RawConn, error) {
	if srv == nil {
		return nil, errors.New("fusesplice: no server")
	}
	fd := reflect.ValueOf(srv).Elem().FieldByName("fuseFD")
	if !fd.IsValid() || fd.Kind() != reflect.Pointer || fd.IsNil() || fd.Elem().Kind() != reflect.Struct {
		return nil, errors.New("fusesplice: go-fuse Server has no fuseFD: unknown go-fuse layout")
	}
	file := fd.Elem().FieldByName("file")
	if !file.IsValid() || file.Type() != reflect.TypeFor[*os.File]() || file.IsNil() {
		return nil, errors.New("fusesplice: go-fuse fuseFD has no *os.File: unknown go-fuse layout")
	}
	f := (*os.File)(unsafe.Pointer(file.Pointer()))
	return f.SyscallConn()
}

// Storer stores file data into the page cache of the files of one FUSE
// connection. It is safe for concurrent use; each Store uses a pipe of its
// own, from a small pool.
type Storer struct {
	dev   syscall.RawConn
	chunk int64 // data bytes per message

	mu     sync.Mutex
	pipes  []*pipe // idle
	closed bool
}

type pipe struct{ r, w int }

// maxIdle is how many idle pipes a Storer keeps.
const maxIdle = 4

// pipeSize is the size a Storer asks for its pipes; the kernel may give
// less (fs.pipe-max-size, pipe-user-pages-soft).
const pipeSize = 1 << 20

// minSlots is the smallest usable pipe, in slots: smaller pipes would make
// messages too small to be worth it.
const minSlots = 16

// New returns a Storer writing to dev (see DevConn). It fails with
// ErrNoSplice when the system does not give pipes of a useful size.
func New(dev syscall.RawConn) (*Storer, error) {
	s := &Storer{dev: dev}
	p, slots, err := newPipe()
	if err != nil {
		return nil, err
	}
	s.chunk = int64(slots-2) * PageSize
	s.pipes = append(s.pipes, p)
	return s, nil
}

// Chunk returns the largest number of data bytes a Storer sends in one
// message.
func (s *Storer) Chunk() int64 { return s.chunk }

// newPipe returns a pipe grown towards pipeSize and its size in slots.
func newPipe() (*pipe, int, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		return nil, 0, fmt.Errorf("%w: pipe: %w", ErrNoSplice, err)
	}
	p := &pipe{r: fds[0], w: fds[1]}
	size, err := unix.FcntlInt(uintptr(p.w), unix.F_SETPIPE_SZ, pipeSize)
	if err != nil { // above the system's limits: keep what it gives
		size, err = unix.FcntlInt(uintptr(p.w), unix.F_GETPIPE_SZ, 0)
	}
	if err != nil {
		p.close()
		return nil, 0, fmt.Errorf("%w: pipe size: %w", ErrNoSplice, err)
	}
	slots := size / PageSize
	if slots < minSlots {
		p.close()
		return nil, 0, fmt.Errorf("%w: pipes of %d bytes only", ErrNoSplice, size)
	}
	return p, slots, nil
}

// empty tells whether nothing is left in the pipe.
func (p *pipe) empty() bool {
	n, err := unix.IoctlGetInt(p.r, unix.TIOCINQ) // FIONREAD
	return err == nil && n == 0
}

func (p *pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

func (s *Storer) get() (*pipe, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: closed", ErrNoSplice)
	}
	if n := len(s.pipes); n > 0 {
		p := s.pipes[n-1]
		s.pipes = s.pipes[:n-1]
		s.mu.Unlock()
		return p, nil
	}
	s.mu.Unlock()
	p, slots, err := newPipe()
	if err != nil {
		return nil, err
	}
	if int64(slots-2)*PageSize < s.chunk { // the limits changed meanwhile
		p.close()
		return nil, fmt.Errorf("%w: pipes of %d slots only", ErrNoSplice, slots)
	}
	return p, nil
}

// put gives back an empty pipe.
func (s *Storer) put(p *pipe) {
	s.mu.Lock()
	if !s.closed && len(s.pipes) < maxIdle {
		s.pipes = append(s.pipes, p)
		p = nil
	}
	s.mu.Unlock()
	if p != nil {
		p.close()
	}
}

// Close releases the idle pipes; Stores running meanwhile release theirs
// when done, later ones fail with ErrNoSplice.
func (s *Storer) Close() {
	s.mu.Lock()
	pipes := s.pipes
	s.pipes, s.closed = nil, true
	s.mu.Unlock()
	for _, p := range pipes {
		p.close()
	}
}

// Store puts n bytes of src at srcOff into the page cache of the FUSE file
// with the given node id, at offset off, as Inode.WriteCache would put
// them from memory. It returns how many bytes were stored and, on error,
// either the kernel's answer (a syscall.Errno: ENOENT when the kernel does
// not know the node) or an error wrapping ErrNoSplice, after which the rest
// can be stored by the write path. src must not change in that range.
func (s *Storer) Store(node uint64, off int64, src *os.File, srcOff, n int64) (stored int64, err error) {
	if n < 0 || off < 0 || srcOff < 0 {
		return 0, fmt.Errorf("fusesplice: store [%d, +%d) from %d: negative range", off, n, srcOff)
	}
	p, err := s.get()
	if err != nil {
		return 0, err
	}
	for stored < n {
		k := min(n-stored, s.chunk)
		if err := s.store1(p, node, off+stored, src, srcOff+stored, k); err != nil {
			if !errors.Is(err, ErrNoSplice) && p.empty() {
				s.put(p) // the kernel took the message out of the pipe
			} else {
				p.close() // the pipe may hold part of a message
			}
			return stored, err
		}
		stored += k
	}
	s.put(p)
	return stored, nil
}

// hdrSize: fuse_out_header (len, error = notify code, unique = 0) and
// fuse_notify_store_out (nodeid, offset, size, padding).
const hdrSize = 16 + 24

// notifyStore is FUSE_NOTIFY_STORE.
const notifyStore = 4

// store1 sends one message of n <= s.chunk bytes through the empty pipe p.
func (s *Storer) store1(p *pipe, node uint64, off int64, src *os.File, srcOff, n int64) error {
	var hdr [hdrSize]byte
	binary.LittleEndian.PutUint32(hdr[0:], uint32(hdrSize+n))
	binary.LittleEndian.PutUint32(hdr[4:], notifyStore)
	binary.LittleEndian.PutUint64(hdr[8:], 0) // unique 0: a notification
	binary.LittleEndian.PutUint64(hdr[16:], node)
	binary.LittleEndian.PutUint64(hdr[24:], uint64(off))
	binary.LittleEndian.PutUint32(hdr[32:], uint32(n))
	if w, err := unix.Write(p.w, hdr[:]); err != nil || w != hdrSize {
		return fmt.Errorf("%w: write header into pipe: %d bytes, %v", ErrNoSplice, w, err)
	}

	// the pipe has room for all of it; NONBLOCK: never hang if it has not
	sc, err := src.SyscallConn()
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrNoSplice, src.Name(), err)
	}
	var serr error
	cerr := sc.Control(func(fd uintptr) {
		pos := srcOff
		for rem := n; rem > 0; {
			k, err := unix.Splice(int(fd), &pos, p.w, nil, int(rem), unix.SPLICE_F_NONBLOCK)
			if err == unix.EINTR {
				continue
			}
			if err != nil || k <= 0 {
				serr = fmt.Errorf("splice from %s at %d: %d bytes of %d, %v", src.Name(), pos, k, rem, err)
				return
			}
			rem -= k
		}
	})
	if cerr != nil || serr != nil {
		return fmt.Errorf("%w: %w", ErrNoSplice, errors.Join(cerr, serr))
	}

	var w int
	var werr error
	cerr = s.dev.Control(func(fd uintptr) {
		for {
			var k int64
			k, werr = unix.Splice(p.r, nil, int(fd), nil, int(hdrSize+n), 0)
			if werr != unix.EINTR {
				w = int(k)
				return
			}
		}
	})
	switch {
	case cerr != nil:
		return fmt.Errorf("%w: /dev/fuse: %w", ErrNoSplice, cerr)
	case werr != nil:
		var errno syscall.Errno
		if errors.As(werr, &errno) && errno != unix.EINVAL && errno != unix.EBADF {
			return errno // the kernel's answer to the message (consumed)
		}
		return fmt.Errorf("%w: splice to /dev/fuse: %w", ErrNoSplice, werr)
	case w != hdrSize+int(n):
		return fmt.Errorf("%w: splice to /dev/fuse: %d bytes of %d", ErrNoSplice, w, hdrSize+n)
	}
	return nil
}
