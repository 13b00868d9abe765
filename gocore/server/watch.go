// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

// The isolation protocol (spec section 2), server side: head/watch links,
// watch setup, pins on access (pin.go), faulty clients (kill.go).
//
// Every open of head/watch is a watchLink: a wproto.Link (server role) over
// a wproto.Pipe fed by the FUSE handlers of the open file, the client
// process (a pidfd, kill.go), and the link's watches, one per file. A
// request handler runs per watch request; pins are sent from watch setups
// and from head reads (pin.go).
//
// Locks, in order: watchLink.setups (one setup per link and file; taken
// before waiting for head/at to reach the watch's at) > headView.commitMu
// (R: the rest of the setup, from when head/at is there) > watch.atMu (W
// while a setup changes at and computes its pins, R while a pin to that
// watch is prepared and sent) > watch.pinMu, isolation.fmu, watchLink.mu. A
// read holds headView.viewMu (R) and at most one watch's atMu (R) at a time.
//
// Decisions where the reference is silent or has gaps:
//
//   - A failed watch request changes nothing: a new watch is not left
//     registered, an existing one keeps its at and its pins (the reference
//     leaves a watch registered after "file epoch detected", spec gap 5).
//   - A watch request waiting for a future at, or for another setup of the
//     same file on the link, ends when the link goes down or the server
//     stops; so does waiting for another pin of the same block (gap 19).
//   - A block of a file whose ZBigFile changed (an epoch) after a watch's at
//     is pinned to that at: the history before an epoch is not kept, and
//     @at/bigfile/<oid> has exactly the data the client saw.
//   - Prefetch (bigFile.readahead) is off for files with a watch behind
//     head: a prefetch is a load, and a load sends pins (see noPrefetch).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	log "github.com/golang/glog"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sync/errgroup"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/history"
	"wendelin.dev/wcfs/gocore/internal/keylock"
	"wendelin.dev/wcfs/gocore/wproto"
	"wendelin.dev/wcfs/gocore/zdata"
)

// isolation is the server side of the isolation protocol for head/.
type isolation struct {
	srv *Server
	h   *headView

	links   gate // serve goroutines of links; closed when the server stops
	linksMu sync.Mutex
	linkSet map[*watchLink]struct{} // linksMu
	nextID  atomic.Int64

	// fmu protects files: the watches registered on each head file.
	fmu    sync.RWMutex
	files  map[*bigFile]map[*watch]struct{} // fmu
	nwatch atomic.Int64                     // number of registered watches (fast path of reads)
}

// initIsolation sets up head/watch and the hooks of the protocol on h.
func (h *headView) initIsolation() {
	iso := &isolation{
		srv:     h.srv,
		h:       h,
		linkSet: make(map[*watchLink]struct{}),
		files:   make(map[*bigFile]map[*watch]struct{}),
	}
	h.iso = iso
	h.watch = &watchNode{iso: iso}
	h.OnBlockLoad = iso.onBlockLoad
	h.NoPrefetch = iso.noPrefetch
	h.MinWatchAt = iso.minWatchAt
}

// stop shuts every link down and waits for their teardown (server stop).
func (iso *isolation) stop() {
	iso.linksMu.Lock()
	links := make([]*watchLink, 0, len(iso.linkSet))
	for wl := range iso.linkSet {
		links = append(links, wl)
	}
	iso.linksMu.Unlock()
	for _, wl := range links {
		wl.link.Shutdown("")
	}
	iso.links.close()
}

// noPrefetch is headView.NoPrefetch: no prefetch of f while a watch of it
// is behind head (viewMu is read-held). A prefetch is a load, and a load
// pins the blocks that changed after a watch's at: prefetching would send
// pins for blocks the client may never read. Watches at head (the common
// case) need no pin, so the prefetch stays (a commit meanwhile makes
// the prefetched loads pin, which is correct, only early).
func (iso *isolation) noPrefetch(f *bigFile) bool {
	if iso.nwatch.Load() == 0 {
		return false
	}
	head := iso.h.zconn.At()
	iso.fmu.RLock()
	defer iso.fmu.RUnlock()
	for w := range iso.files[f] {
		if w.atNow() < head {
			return true
		}
	}
	return false
}

// watchesOf returns the watches registered on f.
func (iso *isolation) watchesOf(f *bigFile) []*watch {
	iso.fmu.RLock()
	defer iso.fmu.RUnlock()
	ws := iso.files[f]
	if len(ws) == 0 {
		return nil
	}
	v := make([]*watch, 0, len(ws))
	for w := range ws {
		v = append(v, w)
	}
	return v
}

// minWatchAt returns the smallest at of all watches (0: no watch); history
// back to it is kept. It runs under commitMu.W, so no setup is running.
func (iso *isolation) minWatchAt() zodb.Tid {
	iso.fmu.RLock()
	defer iso.fmu.RUnlock()
	var min zodb.Tid
	for _, ws := range iso.files {
		for w := range ws {
			if at := w.atNow(); min == 0 || at < min {
				min = at
			}
		}
	}
	return min
}

func (iso *isolation) register(w *watch) {
	iso.fmu.Lock()
	ws := iso.files[w.file]
	if ws == nil {
		ws = make(map[*watch]struct{})
		iso.files[w.file] = ws
	}
	ws[w] = struct{}{}
	iso.fmu.Unlock()
	iso.nwatch.Add(1)
	iso.srv.stats.Watch.Add(1)
}

func (iso *isolation) unregister(w *watch) {
	iso.fmu.Lock()
	ws := iso.files[w.file]
	_, ok := ws[w]
	delete(ws, w)
	if len(ws) == 0 {
		delete(iso.files, w.file)
	}
	iso.fmu.Unlock()
	if ok {
		iso.nwatch.Add(-1)
		iso.srv.stats.Watch.Add(-1)
	}
}

// gate counts goroutines of one kind and, once closed, lets no new one in.
type gate struct {
	mu     sync.Mutex
	closed bool // mu
	wg     sync.WaitGroup
}

// enter registers a goroutine; false once the gate is closed.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

func (g *gate) leave() { g.wg.Done() }

// close lets nobody in any more and waits for those inside.
func (g *gate) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

// ---- head/watch ----

// watchNode is head/watch: every open is a new watch link.
type watchNode struct {
	node
	iso *isolation
}

var _ fs.NodeGetattrer = (*watchNode)(nil)
var _ fs.NodeOpener = (*watchNode)(nil)
var _ fs.NodeReader = (*watchNode)(nil)
var _ fs.NodeWriter = (*watchNode)(nil)
var _ fs.NodeReleaser = (*watchNode)(nil)

func (n *watchNode) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0644
	return 0
}

// Open creates a link; the opener's process is the client (spec 2.1).
func (n *watchNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	caller, ok := fuse.FromContext(ctx)
	if !ok {
		return nil, 0, syscall.EIO
	}
	wl, err := n.iso.openLink(int(caller.Pid))
	if err != nil {
		return nil, 0, errno(err, "head/watch: open")
	}
	return wl, fuse.FOPEN_STREAM | fuse.FOPEN_NONSEEKABLE | fuse.FOPEN_DIRECT_IO | noFlush, 0
}

// Read returns what the server sends on the link; EOF once it closed it. A
// FUSE INTERRUPT (the reader got a signal, e.g. exits) ends the wait.
func (n *watchNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	wl := fh.(*watchLink)
	k, err := wl.pipe.PeerRead(ctx, dest)
	if err != nil {
		if k == 0 && errors.Is(err, io.EOF) {
			return fuse.ReadResultData(nil), 0
		}
		if k == 0 {
			return nil, errno(err, "head/watch: read")
		}
	}
	return fuse.ReadResultData(dest[:k]), 0
}

// Write hands what the client writes to the link; writes after the server
// closed the link fail with ECONNRESET.
func (n *watchNode) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	wl := fh.(*watchLink)
	k, err := wl.pipe.PeerWrite(ctx, data)
	if err != nil && k == 0 {
		return 0, errno(err, "head/watch: write")
	}
	return uint32(k), 0
}

// Release: the client closed the link (or exited).
func (n *watchNode) Release(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	fh.(*watchLink).pipe.PeerClose()
	return 0
}

// unknownFile is the error of a watch of a file head/ does not serve: the
// reference's text (its tests see it), followed, when the file is not a
// ZBigFile as of head, by why (the reason a lookup of head/bigfile/<oid>
// logs: no such object, the object's class, a storage error). A client
// whose open of head/bigfile/<oid> failed with EINVAL asks this way, so
// that its user learns more than "invalid argument".
func unknownFile(ctx context.Context, stor zodb.IStorage, foid zodb.Oid, head zodb.Tid) error {
	err := errors.New("file not yet known to wcfs or is not a ZBigFile")
	_, _, lerr := zdata.LoadZBigFileState(ctx, stor, foid, head)
	var noObj *zodb.NoObjectError
	var noData *zodb.NoDataError
	msg := ""
	switch {
	case lerr == nil:
		return err // a ZBigFile not looked up yet
	case errors.As(lerr, &noObj):
		msg = fmt.Sprintf("no such object as of @%s", head)
	case errors.As(lerr, &noData):
		msg = fmt.Sprintf("the object has no data as of @%s (deleted, or created later)", head)
	case errors.Is(lerr, zdata.ErrNotZBigFile):
		msg = lerr.Error() // "...: not a ZBigFile: class <class>"
		msg = msg[strings.LastIndex(msg, zdata.ErrNotZBigFile.Error()):]
	default:
		msg = lerr.Error() // malformed, storage error
	}
	return fmt.Errorf("%w: %s", err, msg)
}

// ---- links ----

// watchLink is one open of head/watch.
type watchLink struct {
	iso    *isolation
	id     int64
	pipe   *wproto.Pipe
	link   *wproto.Link
	client *clientProc

	// ctx is the link's serve context: canceled at teardown and when the
	// server stops. Pins run under it (plus the pin timeout), never under
	// the context of the read that triggered them.
	ctx    context.Context
	cancel context.CancelFunc

	handlers gate // watch request handlers
	pins     gate // pins in progress (setups and reads)
	killOnce sync.Once

	setups keylock.Map[zodb.Oid] // one setup per file at a time

	mu     sync.Mutex
	byfile map[zodb.Oid]*watch // mu
}

// openLink creates the link of a client whose (thread) id is tid.
func (iso *isolation) openLink(tid int) (*watchLink, error) {
	client, err := openClient(tid)
	if err != nil {
		return nil, err
	}
	if !iso.links.enter() {
		client.close()
		return nil, syscall.ENOTCONN // the server is stopping
	}
	pipe := wproto.NewPipe()
	wl := &watchLink{
		iso:    iso,
		id:     iso.nextID.Add(1),
		pipe:   pipe,
		link:   wproto.NewLink(wproto.RoleServer, pipe),
		client: client,
		byfile: make(map[zodb.Oid]*watch),
	}
	wl.ctx, wl.cancel = context.WithCancel(iso.srv.ctx)
	iso.linksMu.Lock()
	iso.linkSet[wl] = struct{}{}
	iso.linksMu.Unlock()
	iso.srv.stats.WatchLink.Add(1)
	go func() {
		defer iso.links.leave()
		wl.serve()
	}()
	return wl, nil
}

func (wl *watchLink) String() string {
	return fmt.Sprintf("wlink%d (pid %d)", wl.id, wl.client.pid)
}

// serve handles the client's requests until the link goes down, then tears
// the link down (spec 2.9).
func (wl *watchLink) serve() {
	for {
		req, err := wl.link.RecvReq(wl.ctx)
		if err != nil {
			break
		}
		if !wl.handlers.enter() {
			break
		}
		go func() {
			defer wl.handlers.leave()
			wl.handle(req)
		}()
	}
	wl.teardown()
}

// teardown ends the link: handlers and pins are canceled (after "bye"
// nobody is killed; after an error, failing pins decide about killing the
// client, pin.go), then the watches are removed, and the link closed
// (the client reads EOF, its writes fail with ECONNRESET).
func (wl *watchLink) teardown() {
	if wl.link.Err() == nil { // the server stops
		wl.link.Shutdown("")
	}
	if err := wl.link.Err(); log.V(1) {
		log.Infof("%s: down: %s", wl, err)
	}
	wl.cancel()
	wl.handlers.close()
	wl.pins.close()

	wl.mu.Lock()
	watches := wl.byfile
	wl.byfile = nil
	wl.mu.Unlock()
	for _, w := range watches {
		w.remove()
	}

	iso := wl.iso
	iso.linksMu.Lock()
	delete(iso.linkSet, wl)
	iso.linksMu.Unlock()
	iso.srv.stats.WatchLink.Add(-1)
	wl.link.Close()
	wl.client.close()
}

// handle serves one watch request and replies "ok" or "error ...".
func (wl *watchLink) handle(req *wproto.Request) {
	reply := wproto.ReplyOK
	w, err := wproto.ParseWatch(req.Payload)
	if err != nil {
		err = fmt.Errorf("bad watch: %w", err)
	} else {
		err = wl.setupWatch(wl.ctx, w)
	}
	if err != nil {
		reply = wproto.ReplyError(err)
	}
	if err := wl.link.Reply(wl.ctx, req, reply); err != nil && wl.link.Err() == nil && wl.ctx.Err() == nil {
		log.Errorf("%s: reply %q: %s", wl, reply, err)
	}
}

// ---- watches ----

// watch is a client's watch of one file on one link.
type watch struct {
	link *watchLink
	file *bigFile

	// atMu: W while a setup changes at and computes pins; R while a pin
	// to this watch is prepared and sent (at stays put). at also lives in
	// atA, readable without the lock (fast checks, history bound).
	atMu sync.RWMutex
	at   zodb.Tid // atMu
	atA  atomic.Uint64
	gone bool // atMu; removed: pins to it are not sent any more

	pinMu    sync.Mutex
	pinned   map[int64]zodb.Tid      // pinMu; blocks pinned (acked) to a revision
	inflight map[int64]chan struct{} // pinMu; blocks with a pin being sent
}

func (w *watch) atNow() zodb.Tid { return zodb.Tid(w.atA.Load()) }

func (w *watch) setAt(at zodb.Tid) {
	w.at = at
	w.atA.Store(uint64(at))
}

// remove unregisters w from its file (the link's table is the caller's).
func (w *watch) remove() {
	w.atMu.Lock()
	if w.gone {
		w.atMu.Unlock()
		return
	}
	w.gone = true
	w.atMu.Unlock()
	w.link.iso.unregister(w)
	w.pinMu.Lock()
	w.link.iso.srv.stats.PinnedBlk.Add(-int64(len(w.pinned)))
	w.pinned = nil
	w.pinMu.Unlock()
}

// invalidTid is the at of "watch <foid> -" in error messages (the
// reference's zodb.InvalidTid).
const invalidTid = zodb.Tid(1<<64 - 1)

// setupWatch serves "watch <foid> @<at>" and "watch <foid> -" (spec 2.4):
// the pins and unpins that make the client's view of the file that of at
// are sent and acknowledged before it returns.
func (wl *watchLink) setupWatch(ctx context.Context, req wproto.Watch) (err error) {
	at := req.At
	if req.Stop {
		at = invalidTid
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("setup watch f<%s> @%s: %w", req.Foid, at, err)
		}
	}()
	unlock, err := wl.setups.Lock(ctx, req.Foid)
	if err != nil {
		return err
	}
	defer unlock()

	iso := wl.iso
	h := iso.h
	if !req.Stop {
		if err := h.WaitAt(ctx, at); err != nil {
			return err
		}
	}
	// head/at, the head connection, the history and the page cache stay
	// as of head until the pins are acknowledged
	h.commitMu.RLock()
	defer h.commitMu.RUnlock()
	head := h.At()
	if !req.Stop {
		if tail := h.hist.Tail(); at < tail {
			return fmt.Errorf("too far away back from head/at (@%s); δt = %s",
				head, tidTime(head).Sub(tidTime(at)))
		}
	}

	wl.mu.Lock()
	if wl.byfile == nil { // torn down
		wl.mu.Unlock()
		return wproto.ErrLinkDown
	}
	w := wl.byfile[req.Foid]
	wl.mu.Unlock()
	isNew := w == nil
	if isNew {
		h.filesMu.Lock()
		f := h.files[req.Foid]
		h.filesMu.Unlock()
		if f == nil {
			return unknownFile(ctx, h.srv.stor, req.Foid, head)
		}
		if req.Stop {
			return nil
		}
		w = &watch{
			link:     wl,
			file:     f,
			pinned:   make(map[int64]zodb.Tid),
			inflight: make(map[int64]chan struct{}),
		}
	}
	if req.Stop {
		wl.mu.Lock()
		if wl.byfile != nil {
			delete(wl.byfile, req.Foid)
		}
		wl.mu.Unlock()
		w.remove()
		return nil
	}

	w.atMu.Lock()
	if at < w.at {
		w.atMu.Unlock()
		return fmt.Errorf("going back in history is forbidden")
	}
	// register with the new at before computing the pins: a read of a
	// block not tracked yet, concurrent with this, then pins w itself
	oldAt := w.at
	w.setAt(at)
	if isNew {
		wl.mu.Lock()
		if wl.byfile == nil {
			wl.mu.Unlock()
			w.atMu.Unlock()
			return wproto.ErrLinkDown
		}
		wl.byfile[req.Foid] = w
		wl.mu.Unlock()
		iso.register(w)
	}
	toPin, err := setupPins(h.hist, w, at, head)
	if err != nil {
		// nothing changed: a new watch goes, an old one keeps its at
		if isNew {
			w.gone = true
			iso.unregister(w)
			wl.mu.Lock()
			if wl.byfile != nil && wl.byfile[req.Foid] == w {
				delete(wl.byfile, req.Foid)
			}
			wl.mu.Unlock()
		} else {
			w.setAt(oldAt)
		}
		w.atMu.Unlock()
		return err
	}
	// downgrade: reads pin w concurrently (with the new at); no other
	// setup of w runs (setups)
	w.atMu.Unlock()
	w.atMu.RLock()
	defer w.atMu.RUnlock()
	if w.gone { // the link went down meanwhile
		return wproto.ErrLinkDown
	}

	var g errgroup.Group
	g.SetLimit(pinFanout)
	for blk, rev := range toPin {
		g.Go(func() error { return w.pin(blk, rev) })
	}
	return g.Wait()
}

// setupPins returns what a watch moving to at must pin, head being head:
// every tracked block changed in (at, head] to its revision as of at, and
// every block pinned before and not changed in (at, head] back to @head.
// w.atMu is write-held.
func setupPins(hist *history.History, w *watch, at, head zodb.Tid) (map[int64]zodb.Tid, error) {
	changed, err := hist.ChangedBlocks(w.file.oid, at, head)
	if err != nil {
		if ee, ok := asEpoch(err); ok {
			return nil, fmt.Errorf("file epoch detected @%s in between (at,head=@%s]", ee.Rev, head)
		}
		return nil, err
	}
	toPin := make(map[int64]zodb.Tid, len(changed))
	for _, c := range changed {
		toPin[c.Blk] = c.Rev
	}
	w.pinMu.Lock()
	for blk := range w.pinned {
		if _, ok := toPin[blk]; !ok {
			toPin[blk] = wproto.TidHead
		}
	}
	w.pinMu.Unlock()
	return toPin, nil
}
