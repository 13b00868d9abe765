// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/wproto"
)

// headRev is the revision of "@head" pins (unpin: map head/ again).
const headRev = wproto.TidHead

// ByeTimeout bounds how long WatchLink.Close takes to send "bye" and wait
// for the server to close the link, before closing it from this side.
var ByeTimeout = 10 * time.Second

// watchLink is what a Conn needs of its watch link (WatchLink; package
// tests may give none).
type watchLink interface {
	SendReq(ctx context.Context, req string) (string, error)
	RecvReq(ctx context.Context) (*PinReq, error)
	ReplyReq(ctx context.Context, req *PinReq, reply string) error
	Close() error
}

// PinReq is a request of the server on a watch link: normally a pin
// ("pin <foid> #<blk> @<rev>", At == TidHead for "@head").
type PinReq struct {
	Foid zodb.Oid
	Blk  int64
	At   zodb.Tid
	Msg  string // the payload as received

	req *wproto.Request
}

// WatchLink is one watch link (an open of head/watch): the client side of
// the isolation protocol (spec section 2) over the link machinery of
// gocore/wproto (streams, pending replies, validation of what the server
// sends). Conns use one each; it is exported for low-level use and tests.
// Safe for concurrent use.
type WatchLink struct {
	wc   *WCFS
	fd   int
	link *wproto.Link
}

// OpenWatchLink opens a new watch link. ctx is checked before the open of
// head/watch, which itself does not block (the server only sets the link
// up).
func (wc *WCFS) OpenWatchLink(ctx context.Context) (*WatchLink, error) {
	wl, err := wc.openWatchLink(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", wc, err)
	}
	return wl, nil
}

// openWatchLink is OpenWatchLink with errors not prefixed by the mount
// (Connect adds its own prefix).
func (wc *WCFS) openWatchLink(ctx context.Context) (*WatchLink, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open watch link: %w", err)
	}
	path := wc.path("head/watch")
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open watch link: open %s: %w", path, err)
	}
	wl := &WatchLink{wc: wc, fd: fd, link: wproto.NewLink(wproto.RoleClient, wproto.NewFDTransport(fd))}
	wl.link.OnNotice = func(notice string) {
		wc.log().Error(fmt.Sprintf("%s: watch link fd%d: rx fatal: %s", wc, fd, notice))
	}
	wc.mu.Lock()
	wc.links[wl] = struct{}{}
	wc.mu.Unlock()
	return wl, nil
}

func (wl *WatchLink) String() string { return fmt.Sprintf("%s: wlink%d", wl.wc, wl.fd) }

// Fd returns the descriptor of the link (valid until it is closed).
func (wl *WatchLink) Fd() int { return wl.fd }

// SendReq sends a request (e.g. "watch <foid> @<at>") and returns the
// server's reply.
func (wl *WatchLink) SendReq(ctx context.Context, req string) (string, error) {
	reply, err := wl.link.SendReq(ctx, req)
	if err != nil {
		return "", fmt.Errorf("%s: sendReq %q: %w", wl, req, err)
	}
	return reply, nil
}

// RecvReq returns the next request of the server, or nil (and no error)
// once the server closed the link.
func (wl *WatchLink) RecvReq(ctx context.Context) (*PinReq, error) {
	req, err := wl.link.RecvReq(ctx)
	if err != nil {
		if errors.Is(err, wproto.ErrPeerClosed) {
			return nil, nil
		}
		return nil, fmt.Errorf("%s: recvReq: %w", wl, err)
	}
	pin, perr := wproto.ParsePin(req.Payload)
	r := &PinReq{Foid: pin.Foid, Blk: pin.Blk, At: pin.Rev, Msg: req.Payload, req: req}
	if perr != nil {
		return r, fmt.Errorf("%s: recvReq: %w", wl, perr)
	}
	return r, nil
}

// ReplyReq sends reply (e.g. "ack") to the server's request req.
func (wl *WatchLink) ReplyReq(ctx context.Context, req *PinReq, reply string) error {
	if err := wl.link.Reply(ctx, req.req, reply); err != nil {
		return fmt.Errorf("%s: replyReq: %w", wl, err)
	}
	return nil
}

// CloseWrite tells the server that this side is done ("bye"); the server
// then closes the link. It waits at most ByeTimeout to send it.
func (wl *WatchLink) CloseWrite() error {
	ctx, cancel := context.WithTimeout(context.Background(), ByeTimeout)
	defer cancel()
	return wl.closeWrite(ctx)
}

func (wl *WatchLink) closeWrite(ctx context.Context) error {
	err := wl.link.CloseWrite(ctx)
	if err != nil && !errors.Is(err, wproto.ErrLinkDown) {
		return fmt.Errorf("%s: closeWrite: %w", wl, err)
	}
	return nil
}

// Close says "bye", waits for the server to close the link and closes it:
// sending "bye" and the wait take at most ByeTimeout together, whatever
// the server does.
func (wl *WatchLink) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), ByeTimeout)
	defer cancel()
	err := wl.closeWrite(ctx)
	select {
	case <-wl.link.Down():
	case <-ctx.Done():
	}
	wl.wc.mu.Lock()
	delete(wl.wc.links, wl)
	wl.wc.mu.Unlock()
	wl.link.Close()
	return err
}

// Fatalv returns the notices the server sent on stream 0 ("error: ...",
// "fatal: ...") before closing the link.
func (wl *WatchLink) Fatalv() []string { return wl.link.Notices() }

// Down returns a channel closed when the link is down (after the server
// closed it, or Close).
func (wl *WatchLink) Down() <-chan struct{} { return wl.link.Down() }
