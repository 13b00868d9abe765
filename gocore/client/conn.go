// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/wproto"
)

// Conn is a view of the database as of one revision (its at), shared by the
// files it opens; it mirrors a ZODB connection. Resync moves it forward.
// Its watch link carries the pins that keep the files' mappings at at; a
// goroutine per Conn (the pinner) applies them. Safe for concurrent use.
type Conn struct {
	wc   *WCFS
	id   uint64
	link watchLink // nil only in package tests (pins applied by hand)

	// atMu serializes Open and FileH.Close against Resync (they hold it
	// shared for their whole duration: an open's watch request must carry
	// the at it read, a resync must not watch a file being closed). The
	// pinner never takes it, so pins flow while they wait for the server.
	atMu sync.RWMutex
	at   atomic.Uint64 // zodb.Tid; written with atMu held exclusively

	mu      sync.Mutex // protects the fields below
	files   map[zodb.Oid]*FileH
	closed  bool
	downErr error // why the Conn went down by itself (pinner failure), or nil

	pinnerDone chan struct{}  // closed when the pinner has returned
	unwatching sync.WaitGroup // unwatches after failed opens (FileH.openFailed); Add with mu held, not closed
}

// Connect returns a Conn at revision at: a new watch link and its pinner.
//
// Unlike the reference it does not wait for head/at >= at: the server makes
// every watch request wait for that, so Open and Resync wait there, without
// polling, and only when they need to.
func (wc *WCFS) Connect(ctx context.Context, at zodb.Tid) (*Conn, error) {
	link, err := wc.openWatchLink(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: connect @%s: %w", wc, at, err)
	}
	return wc.newConn(at, link), nil
}

// newConn returns a Conn at at over link (nil: no watch link; package tests
// apply pins by hand).
func (wc *WCFS) newConn(at zodb.Tid, link watchLink) *Conn {
	wc.mu.Lock()
	wc.nconn++
	c := &Conn{wc: wc, id: wc.nconn, link: link, files: make(map[zodb.Oid]*FileH),
		pinnerDone: make(chan struct{})}
	wc.conns[c] = struct{}{}
	wc.mu.Unlock()
	c.at.Store(uint64(at))
	if link != nil {
		go c.pinner()
	} else {
		close(c.pinnerDone)
	}
	return c
}

// At returns the revision the Conn views.
func (c *Conn) At() zodb.Tid { return zodb.Tid(c.at.Load()) }

func (c *Conn) String() string {
	return fmt.Sprintf("%s: conn%d @%s", c.wc, c.id, c.At())
}

// errf returns an error prefixed with the Conn and op.
func (c *Conn) errf(op string, err error) error {
	return fmt.Errorf("%s: %s: %w", c, op, err)
}

// fds returns the descriptors of the Conn's head files.
func (c *Conn) fds() []int {
	var fds []int
	c.mu.Lock()
	for _, f := range c.files {
		if fd := f.fd(); fd >= 0 {
			fds = append(fds, fd)
		}
	}
	c.mu.Unlock()
	return fds
}

// isClosed reports whether the Conn was closed (or went down).
func (c *Conn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// closedErr returns ErrConnClosed, with the reason if the Conn went down by
// itself.
func (c *Conn) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.downErr != nil {
		return fmt.Errorf("%w (%v)", ErrConnClosed, c.downErr)
	}
	return ErrConnClosed
}

// watch sends "watch <foid> @<at>" (stop: "watch <foid> -") and requires ok.
// refused reports an error reply ("error ..."): the server did not set the
// watch up.
func (c *Conn) watch(ctx context.Context, foid zodb.Oid, at zodb.Tid, stop bool) (refused bool, err error) {
	if c.link == nil {
		return false, nil
	}
	req := wproto.Watch{Foid: foid, At: at, Stop: stop}
	reply, err := c.link.SendReq(ctx, req.String())
	if err != nil {
		return false, err
	}
	if err := wproto.ParseWatchReply(reply); err != nil {
		what := "watch"
		if stop {
			what = "unwatch"
		}
		return strings.HasPrefix(reply, "error "), fmt.Errorf("%s: %w", what, err)
	}
	return false, nil
}

// ---- Open ----

// Open returns the FileH of the ZBigFile foid as of the Conn's at. Opening a
// file that is open (or being opened) in the Conn returns the same FileH,
// with one more open to close.
func (c *Conn) Open(ctx context.Context, foid zodb.Oid) (*FileH, error) {
	f, err := c.open(ctx, foid)
	if err != nil {
		return nil, c.errf(fmt.Sprintf("open f%s", foid), err)
	}
	return f, nil
}

func (c *Conn) open(ctx context.Context, foid zodb.Oid) (*FileH, error) {
	c.atMu.RLock()
	defer c.atMu.RUnlock()
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, c.closedErr()
		}
		f := c.files[foid]
		if f == nil {
			f = newFileH(c, foid)
			c.files[foid] = f
			c.mu.Unlock()
			watched, err := f.open(ctx)
			if err != nil {
				f.openFailed(watched)
				return nil, err
			}
			return f, nil
		}
		c.mu.Unlock()

		// another open, a close or the unwatch of a failed open is in
		// progress: wait for it
		ok, err := f.reopen(ctx)
		if err != nil {
			return nil, err
		}
		if ok {
			return f, nil
		}
		// it was closed (or its open failed): retry with a new FileH
	}
}

// ---- Resync ----

// Resync moves the Conn to revision at, which must not be before its at:
// the files' watches move to at (the server pins and unpins what differs)
// and regions that were beyond the end of a file and are inside it now map
// its data. Any error closes the Conn, as in the reference (going back in
// history is such an error).
func (c *Conn) Resync(ctx context.Context, at zodb.Tid) error {
	err := c.resync(ctx, at)
	if err != nil {
		err = c.errf(fmt.Sprintf("resync -> @%s", at), err)
		if !errors.Is(err, ErrConnClosed) {
			c.close(err)
		}
	}
	return err
}

func (c *Conn) resync(ctx context.Context, at zodb.Tid) error {
	c.atMu.Lock()
	defer c.atMu.Unlock()
	if c.isClosed() {
		return c.closedErr()
	}
	if at < c.At() {
		return fmt.Errorf("going back in history is forbidden")
	}
	c.at.Store(uint64(at))

	c.mu.Lock()
	var files []*FileH
	for _, f := range c.files {
		// none is opening or being closed by Close (they hold atMu
		// shared); the unwatch of a failed open may be in progress
		if f.isOpened() {
			files = append(files, f)
		}
	}
	c.mu.Unlock()
	sort.Slice(files, func(i, j int) bool { return files[i].foid < files[j].foid })

	// the watches first: the server answers once head/at >= at, after the
	// pins; then head/ shows each file at least as of at
	g, gctx := errgroup.WithContext(ctx)
	for _, f := range files {
		g.Go(func() error {
			if _, err := c.watch(gctx, f.foid, at, false); err != nil {
				return fmt.Errorf("f%s: %w", f.foid, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, f := range files {
		if err := f.grow(); err != nil {
			return fmt.Errorf("f%s: %w", f.foid, err)
		}
	}
	return nil
}

// ---- Close ----

// Close closes the Conn: its files are closed (whatever their open count)
// and their mappings fault from now on, then the watch link is closed
// ("bye") and the pinner stops. Later calls fail with "connection closed".
// Close is idempotent.
func (c *Conn) Close() error {
	return c.close(nil)
}

// close closes the Conn; reason (nil for Close) is why it went down by
// itself. Never call it from the pinner: it waits for the pinner to return.
func (c *Conn) close(reason error) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.pinnerDone
		return nil
	}
	c.closed = true
	c.downErr = reason
	files := make([]*FileH, 0, len(c.files))
	for _, f := range c.files {
		files = append(files, f)
	}
	c.mu.Unlock()

	// mappings fault before the link goes: once the server stops pinning
	// for us, head/ data must not be seen through them
	var errs []error
	for _, f := range files {
		if err := f.forceClose(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.link != nil {
		if err := c.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close watch link: %w", err))
		}
	}
	<-c.pinnerDone
	c.unwatching.Wait() // their requests fail now that the link is closed
	c.wc.mu.Lock()
	delete(c.wc.conns, c)
	c.wc.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return c.errf("close", err)
	}
	return nil
}

// ---- pinner ----

// pinner receives the server's requests on the watch link and applies each
// pin before acknowledging it. It never needs anything a caller of the Conn
// may hold while it waits for the server (atMu, the Python GIL).
func (c *Conn) pinner() {
	defer close(c.pinnerDone)
	ctx := context.Background()
	for {
		req, err := c.link.RecvReq(ctx)
		if req == nil {
			if c.isClosed() {
				return // Close closed the link
			}
			if err == nil {
				err = errors.New("the server closed the watch link")
			}
			c.linkLost(err)
			return
		}

		perr := err // a request that is not a pin
		if perr == nil {
			perr = c.applyPin(req)
		}
		reply := wproto.ReplyAck
		if perr != nil {
			reply = "nak: " + perr.Error()
		}
		if err := c.link.ReplyReq(ctx, req, reply); err != nil && !c.isClosed() {
			c.linkLost(fmt.Errorf("replyReq %q: %w", reply, err))
			return
		}
		if perr != nil {
			c.pinnerFailed(perr)
			return
		}
	}
}

// linkLost closes the Conn after its watch link went down without Close
// (the server stopped or broke the protocol): nothing keeps its mappings
// isolated any more.
func (c *Conn) linkLost(err error) {
	err = c.errf("pinner", err)
	c.wc.log().Error(err.Error() + "; the connection is closed, its mappings fault from now on")
	go c.close(err) // not from the pinner: close waits for it
}

// pinnerFailed reports a pin that could not be applied and closes the
// Conn: the server kills a client that does not acknowledge a pin, as it
// got "nak". The reference's two "CRITICAL: " lines go straight to stderr,
// once, where they are seen before the kill (a log handler may buffer:
// the Python bindings emit Go's records only after the next call).
func (c *Conn) pinnerFailed(err error) {
	err = c.errf("pinner", err)
	fmt.Fprintf(os.Stderr, "CRITICAL: %s\nCRITICAL: wcfs server will likely kill us soon.\n", err)
	go c.close(err) // not from the pinner: close waits for it
}

// applyPin remaps the block of every mapping of the pinned file and records
// the pin.
func (c *Conn) applyPin(req *PinReq) error {
	c.mu.Lock()
	f := c.files[req.Foid]
	c.mu.Unlock()
	if f == nil {
		return fmt.Errorf("unexpected pin: f%s not watched", req.Foid)
	}
	if err := f.pin(req.Blk, req.At); err != nil {
		return fmt.Errorf("pin f%s #%d @%s: %w", req.Foid, req.Blk, wproto.FormatRev(req.At), err)
	}
	return nil
}

// ---- fstat ----

// fstat returns blksize and size of an open file.
func fstat(f *os.File) (blksize, size int64, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return 0, 0, fmt.Errorf("stat %s: %w", f.Name(), err)
	}
	return int64(st.Blksize), st.Size, nil
}
