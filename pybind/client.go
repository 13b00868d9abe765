// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package pybind

// The client (gocore/client): Conn, FileH, Mapping, WatchLink, PinReq.
//
// Conventions beyond the package's: oids and tids cross as 16 hex digits
// ("" for "@head" in pins); mapped memory crosses as its address and length
// (the Python side wraps it, without copy); maps cross as JSON objects.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/client"
	"wendelin.dev/wcfs/gocore/wproto"
)

// clients holds the client of every mount used in this process (shared by
// the WCFS joined for it over time: @<rev> files are shared per mount).
var clients struct {
	mu sync.Mutex
	m  map[string]*client.WCFS // mu; mountpoint -> client
}

func clientOf(mntpt string) *client.WCFS {
	clients.mu.Lock()
	defer clients.mu.Unlock()
	if clients.m == nil {
		clients.m = make(map[string]*client.WCFS)
	}
	wc := clients.m[mntpt]
	if wc == nil {
		wc = client.New(mntpt)
		wc.Log = slog.New(queueHandler{})
		clients.m[mntpt] = wc
	}
	return wc
}

// ClientFds returns, as a JSON list, the descriptors the client has open in
// this process (watch links, head and @<rev> files): the Python package
// takes them before fork and closes them in the child.
func ClientFds() string {
	clients.mu.Lock()
	wcs := make([]*client.WCFS, 0, len(clients.m))
	for _, wc := range clients.m {
		wcs = append(wcs, wc)
	}
	clients.mu.Unlock()
	fds := []int{}
	for _, wc := range wcs {
		fds = append(fds, wc.Fds()...)
	}
	js, _ := json.Marshal(fds)
	return string(js)
}

func parseTid(s string) (zodb.Tid, error) {
	v, err := wproto.ParseHex16(s)
	return zodb.Tid(v), err
}

func parseOid(s string) (zodb.Oid, error) {
	v, err := wproto.ParseHex16(s)
	return zodb.Oid(v), err
}

// ---- Conn ----

// Connect returns a Conn viewing the database as of at (16 hex digits). It
// fails once w is closed (its last join released): the mount may be another
// server's by then, or none.
func (w *WCFS) Connect(at string) (*Conn, error) {
	if w.w.NJoin() == 0 {
		return nil, fmt.Errorf("wcfs: %s: connect: the WCFS is closed (close was called): join again", w.w.Mountpoint())
	}
	tid, err := parseTid(at)
	if err != nil {
		return nil, err
	}
	c, err := clientOf(w.w.Mountpoint()).Connect(context.Background(), tid)
	if err != nil {
		return nil, pyerr(err)
	}
	return &Conn{c}, nil
}

// Conn is a client.Conn.
type Conn struct{ c *client.Conn }

// At returns the revision the Conn views (16 hex digits).
func (c *Conn) At() string { return c.c.At().String() }

// Open opens the ZBigFile foid (16 hex digits).
func (c *Conn) Open(foid string) (*FileH, error) {
	oid, err := parseOid(foid)
	if err != nil {
		return nil, err
	}
	f, err := c.c.Open(context.Background(), oid)
	if err != nil {
		return nil, pyerr(err)
	}
	return &FileH{f}, nil
}

// Resync moves the Conn to at (16 hex digits).
func (c *Conn) Resync(at string) error {
	tid, err := parseTid(at)
	if err != nil {
		return err
	}
	return pyerr(c.c.Resync(context.Background(), tid))
}

// Close closes the Conn.
func (c *Conn) Close() error { return pyerr(c.c.Close()) }

// ---- FileH ----

// FileH is a client.FileH.
type FileH struct{ f *client.FileH }

// BlkSize returns the block size of the file.
func (f *FileH) BlkSize() int { return int(f.f.BlkSize()) }

// Foid returns the oid of the file (16 hex digits).
func (f *FileH) Foid() string { return f.f.Foid().String() }

// Pinned returns the applied pins as a JSON object {"<blk>": "<rev hex>"}.
func (f *FileH) Pinned() string {
	pinned := make(map[string]string)
	for blk, rev := range f.f.Pinned() {
		pinned[strconv.FormatInt(blk, 10)] = rev.String()
	}
	js, _ := json.Marshal(pinned)
	return string(js)
}

// Mmap maps blocks [blkStart, blkStart+blkLen).
func (f *FileH) Mmap(blkStart, blkLen int) (*Mapping, error) {
	m, err := f.f.Mmap(int64(blkStart), int64(blkLen))
	if err != nil {
		return nil, pyerr(err)
	}
	return &Mapping{m}, nil
}

// Close closes one open of the file.
func (f *FileH) Close() error { return pyerr(f.f.Close()) }

// ---- Mapping ----

// Mapping is a client.Mapping.
type Mapping struct{ m *client.Mapping }

// Addr returns the address of the mapped memory.
func (m *Mapping) Addr() int { return int(m.m.Addr()) }

// Len returns the length of the mapped memory in bytes.
func (m *Mapping) Len() int { return m.m.Len() }

func (m *Mapping) BlkStart() int { return int(m.m.BlkStart()) }
func (m *Mapping) BlkStop() int  { return int(m.m.BlkStop()) }

// Unmap detaches the mapping from its file and leaves its address range
// reserved (PROT_NONE): Python buffers over it may still exist and must
// fault, not see other memory. Release frees the range.
func (m *Mapping) Unmap() error { return pyerr(m.m.UnmapKeepReserved()) }

// Release unmaps the mapping entirely, reservation included (the Python
// side calls it when the last buffer over the memory is gone).
func (m *Mapping) Release() error { return pyerr(m.m.Unmap()) }

// ---- WatchLink ----

// OpenWatchLink opens a new watch link on the mount.
func (w *WCFS) OpenWatchLink() (*WatchLink, error) {
	wl, err := clientOf(w.w.Mountpoint()).OpenWatchLink(context.Background())
	if err != nil {
		return nil, pyerr(err)
	}
	return &WatchLink{wl}, nil
}

// WatchLink is a client.WatchLink. Its blocking calls take a Ctx.
type WatchLink struct{ wl *client.WatchLink }

// Fd returns the link's descriptor.
func (wl *WatchLink) Fd() int { return wl.wl.Fd() }

// SendReq sends a request and returns the reply.
func (wl *WatchLink) SendReq(req string, ctx *Ctx) (string, error) {
	reply, err := wl.wl.SendReq(ctx.context(), req)
	return reply, pyerr(err)
}

// RecvReq returns the next request of the server; its EOF() is true when
// the server closed the link.
func (wl *WatchLink) RecvReq(ctx *Ctx) (*PinReq, error) {
	req, err := wl.wl.RecvReq(ctx.context())
	if err != nil {
		return nil, pyerr(err)
	}
	return &PinReq{req}, nil
}

// ReplyReq replies to the server's request req.
func (wl *WatchLink) ReplyReq(req *PinReq, reply string, ctx *Ctx) error {
	return pyerr(wl.wl.ReplyReq(ctx.context(), req.r, reply))
}

// CloseWrite sends "bye".
func (wl *WatchLink) CloseWrite() error { return pyerr(wl.wl.CloseWrite()) }

// Close closes the link.
func (wl *WatchLink) Close() error { return pyerr(wl.wl.Close()) }

// Fatalv returns the stream-0 notices received, as a JSON list.
func (wl *WatchLink) Fatalv() string {
	v := wl.wl.Fatalv()
	if v == nil {
		v = []string{}
	}
	js, _ := json.Marshal(v)
	return string(js)
}

// PinReq is a client.PinReq, or the end of the link (EOF).
type PinReq struct{ r *client.PinReq }

// EOF reports whether the server closed the link (no request).
func (r *PinReq) EOF() bool { return r.r == nil }

// Foid returns the file of the pin (16 hex digits).
func (r *PinReq) Foid() string { return r.r.Foid.String() }

// Blk returns the block of the pin.
func (r *PinReq) Blk() int { return int(r.r.Blk) }

// At returns the revision of the pin (16 hex digits), "" for "@head".
func (r *PinReq) At() string {
	if r.r.At == wproto.TidHead {
		return ""
	}
	return r.r.At.String()
}

// Msg returns the request as received.
func (r *PinReq) Msg() string { return r.r.Msg }
