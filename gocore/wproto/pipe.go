// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package wproto

import (
	"context"
	"io"
	"sync"
)

// Transport carries the bytes of one link. A Link reads incoming bytes with
// Read from one goroutine and sends each frame with one Send call, one at a
// time.
type Transport interface {
	// Read reads incoming bytes; io.EOF when the peer closed its
	// sending side, another error when the transport was closed.
	Read(p []byte) (int, error)

	// Send sends b. It returns once the peer has taken all of b, or with
	// an error. If it returns ctx's error, a transport either sent nothing
	// or (Pipe) keeps the rest of b for the peer: a frame is never cut.
	// n is how many bytes of b the peer has taken: 0 means that nothing of
	// b left (and, with ctx's error, nothing ever will).
	Send(ctx context.Context, b []byte) (n int, err error)

	// CloseWrite closes the sending side: the peer reads EOF once it has
	// taken what was sent. Sends fail afterwards.
	CloseWrite() error

	// Close closes both directions.
	Close() error
}

// Pipe is an in-memory Transport whose other end is driven by calls: the
// server side of a head/watch link, fed by the FUSE handlers of the open
// file (PeerWrite from FUSE WRITE, PeerRead from FUSE READ, PeerClose from
// RELEASE). Like a pipe it has no buffer: a PeerWrite returns once the
// link has read everything written, a Send once the peer has read the whole
// frame, so a client that does not read makes the server's sends wait (and
// time out), and a client cannot queue unbounded data in the server.
//
// PeerTransport returns the peer end as a Transport, to connect a client
// Link to a server Link in one process (tests).
type Pipe struct {
	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change

	in       []byte // written by the peer, not yet read by the link
	inClosed bool   // the peer closed its sending side (EOF after in)
	out      []byte // sent by the link, not yet read by the peer
	outSeq   uint64 // number of frames given to out
	outDone  uint64 // number of frames the peer has read completely
	outClose bool   // the link closed its sending side
	closed   bool   // the link closed the pipe
}

// NewPipe returns an open Pipe.
func NewPipe() *Pipe {
	return &Pipe{changed: make(chan struct{})}
}

// notify wakes every waiter; under mu.
func (p *Pipe) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// wait waits for a state change or ctx (nil: no cancellation); under mu, which
// it releases while waiting.
func (p *Pipe) wait(ctx context.Context) error {
	ch := p.changed
	p.mu.Unlock()
	defer p.mu.Lock()
	if ctx == nil {
		<-ch
		return nil
	}
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Read implements Transport: it returns what the peer wrote.
func (p *Pipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		switch {
		case p.closed:
			return 0, io.ErrClosedPipe
		case len(p.in) > 0:
			n := copy(b, p.in)
			p.in = p.in[n:]
			if len(p.in) == 0 {
				p.in = nil
			}
			p.notify()
			return n, nil
		case p.inClosed:
			return 0, io.EOF
		}
		p.wait(nil)
	}
}

// Send implements Transport: it waits until the peer has read all of b. If
// ctx is done before the peer took anything, b is withdrawn (n == 0); if it
// took a part, the rest stays for the peer (the frame is not cut) and Send
// returns ctx's error anyway.
func (p *Pipe) Send(ctx context.Context, b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.out) > 0 { // the rest of a frame whose Send gave up
		if p.closed || p.outClose {
			return 0, io.ErrClosedPipe
		}
		if err := p.wait(ctx); err != nil {
			return 0, err
		}
	}
	if p.closed || p.outClose {
		return 0, io.ErrClosedPipe
	}
	if len(b) == 0 {
		return 0, nil
	}
	p.out = b
	p.outSeq++
	seq := p.outSeq
	full := len(b)
	p.notify()
	for p.outDone < seq {
		var err error
		if p.closed || p.outClose {
			err = io.ErrClosedPipe
		} else {
			err = p.wait(ctx)
		}
		if err != nil {
			if p.outDone >= seq {
				return full, err // taken meanwhile
			}
			if len(p.out) == full {
				p.out = nil // nothing was taken: withdraw
				p.outSeq--
				p.notify()
				return 0, err
			}
			return full - len(p.out), err
		}
	}
	return full, nil
}

// CloseWrite implements Transport: the peer reads EOF after what was sent.
func (p *Pipe) CloseWrite() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.outClose = true
	p.notify()
	return nil
}

// Close implements Transport: both directions end; the peer reads EOF
// (after the rest of a frame that was being read) and its writes fail with
// io.ErrClosedPipe.
func (p *Pipe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.outClose = true
	p.notify()
	return nil
}

// PeerRead reads what the link sent (FUSE READ of head/watch). It blocks
// until there is something, and returns 0, io.EOF once the link closed its
// sending side and everything sent was read. A canceled ctx (FUSE
// INTERRUPT) ends the wait with ctx's error.
func (p *Pipe) PeerRead(ctx context.Context, b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if len(p.out) > 0 {
			if len(b) == 0 {
				return 0, nil
			}
			n := copy(b, p.out)
			p.out = p.out[n:]
			if len(p.out) == 0 {
				p.out = nil
				p.outDone = p.outSeq
			}
			p.notify()
			return n, nil
		}
		if p.outClose {
			return 0, io.EOF
		}
		if err := p.wait(ctx); err != nil {
			return 0, err
		}
	}
}

// PeerWrite hands b to the link (FUSE WRITE of head/watch) and returns once
// the link has read all of it: n == len(b), or the number of bytes the link
// took before ctx was canceled or the link closed. After the link or the
// peer closed, it fails with io.ErrClosedPipe.
func (p *Pipe) PeerWrite(ctx context.Context, b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.in) > 0 { // another write in progress
		if p.closed || p.inClosed {
			return 0, io.ErrClosedPipe
		}
		if err := p.wait(ctx); err != nil {
			return 0, err
		}
	}
	if p.closed || p.inClosed {
		return 0, io.ErrClosedPipe
	}
	if len(b) == 0 {
		return 0, nil
	}
	p.in = b
	p.notify()
	for {
		if len(p.in) == 0 {
			return len(b), nil
		}
		var err error
		if p.closed {
			err = io.ErrClosedPipe
		} else {
			err = p.wait(ctx)
		}
		if err != nil {
			n := len(b) - len(p.in)
			p.in = nil // the caller's buffer is not ours after returning
			p.notify()
			return n, err
		}
	}
}

// PeerCloseWrite closes the peer's sending side: the link reads EOF after
// what was written.
func (p *Pipe) PeerCloseWrite() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inClosed = true
	p.notify()
}

// PeerClose closes the peer end entirely (RELEASE of the open file): the
// link reads EOF, and its sends fail with io.ErrClosedPipe since nobody will
// read them.
func (p *Pipe) PeerClose() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inClosed = true
	p.outClose = true
	p.out = nil
	p.notify()
}

// PeerTransport returns the peer end of p as a Transport.
func (p *Pipe) PeerTransport() Transport { return pipePeer{p} }

type pipePeer struct{ p *Pipe }

func (pp pipePeer) Read(b []byte) (int, error) { return pp.p.PeerRead(context.Background(), b) }

func (pp pipePeer) Send(ctx context.Context, b []byte) (int, error) {
	n, err := pp.p.PeerWrite(ctx, b)
	if err != nil && n > 0 && n < len(b) {
		// a cut frame cannot be resynchronised: this end is done
		pp.p.PeerClose()
	}
	return n, err
}

func (pp pipePeer) CloseWrite() error { pp.p.PeerCloseWrite(); return nil }
func (pp pipePeer) Close() error      { pp.p.PeerClose(); return nil }
