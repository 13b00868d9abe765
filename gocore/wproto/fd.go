// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package wproto

import (
	"context"
	"io"
	"sync"

	"golang.org/x/sys/unix"
)

// FDTransport is a Transport over a file descriptor opened O_RDWR: the
// client side of a link on head/watch (a FUSE file: reads and writes are
// blocking system calls, not pollable).
//
// A read blocked in the kernel cannot be woken up from this process except
// by the server (it closes the link: EOF) or by the process exiting; so
// Close does not wait for it: the descriptor is closed by whichever call
// finishes last, never while a read or write is using it (its number could
// otherwise be reused by another open). Send checks ctx before writing but a
// write in progress is not interrupted: a server always reads what its
// clients write.
type FDTransport struct {
	fd int

	mu      sync.Mutex
	users   int  // reads and writes in progress
	closing bool // Close was called
	closed  bool // fd was closed
}

// NewFDTransport returns a transport over fd; it owns fd (Close closes it).
func NewFDTransport(fd int) *FDTransport { return &FDTransport{fd: fd} }

// use enters an operation on the fd; false if the transport is closing.
func (t *FDTransport) use() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.users++
	return true
}

// unuse leaves an operation; the last one after Close closes the fd.
func (t *FDTransport) unuse() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.users--
	t.closeIfIdle()
}

func (t *FDTransport) closeIfIdle() {
	if t.closing && t.users == 0 && !t.closed {
		t.closed = true
		unix.Close(t.fd)
	}
}

// Read implements Transport.
func (t *FDTransport) Read(p []byte) (int, error) {
	if !t.use() {
		return 0, io.ErrClosedPipe
	}
	defer t.unuse()
	for {
		n, err := unix.Read(t.fd, p)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Send implements Transport.
func (t *FDTransport) Send(ctx context.Context, b []byte) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if !t.use() {
		return 0, io.ErrClosedPipe
	}
	defer t.unuse()
	sent := 0
	for sent < len(b) {
		n, err := unix.Write(t.fd, b[sent:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return sent, err
		}
		sent += n
	}
	return sent, nil
}

// CloseWrite implements Transport. A descriptor has no separate sending
// side: the client's end of sending is "bye" (Link.CloseWrite).
func (t *FDTransport) CloseWrite() error { return nil }

// Close implements Transport; the descriptor is closed once no read or
// write uses it any more.
func (t *FDTransport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closing = true
	t.closeIfIdle()
	return nil
}
