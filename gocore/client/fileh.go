// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"
)

// FileH is a ZBigFile opened in a Conn: a view of it as of the Conn's at,
// from which Mmap makes memory mappings. Safe for concurrent use.
type FileH struct {
	conn *Conn
	foid zodb.Oid

	ready chan struct{} // closed when the open finished (opened, or closing/closed)

	mu        sync.Mutex // protects the fields below and those of its Mappings
	state     fileState
	nopen     int
	headf     *os.File // head/bigfile/<foid>
	blksize   int64
	headfsize int64                 // size of the head file as last seen (>= size as of at)
	pinned    map[int64]*revFile    // blk -> the @<rev> file it is pinned to
	mmaps     map[*Mapping]struct{} // live (not unmapped, not efaulted) mappings
	gone      chan struct{}         // closed once closed
}

type fileState int

const (
	fileOpening fileState = iota
	fileOpened
	fileClosing // unwatch in progress (last Close, failed open); pins are acked without effect
	fileClosed
)

func newFileH(c *Conn, foid zodb.Oid) *FileH {
	return &FileH{conn: c, foid: foid, ready: make(chan struct{}), nopen: 1,
		pinned: make(map[int64]*revFile), mmaps: make(map[*Mapping]struct{}), gone: make(chan struct{})}
}

// Foid returns the oid of the file.
func (f *FileH) Foid() zodb.Oid { return f.foid }

// BlkSize returns the block size of the file.
func (f *FileH) BlkSize() int64 { return f.blksize } // set before the FileH is returned

func (f *FileH) String() string { return fmt.Sprintf("%s: f%s", f.conn, f.foid) }

// Pinned returns the pins currently applied: block -> revision of the
// @<rev> file the block maps (for tests and diagnostics).
func (f *FileH) Pinned() map[int64]zodb.Tid {
	f.mu.Lock()
	defer f.mu.Unlock()
	pinned := make(map[int64]zodb.Tid, len(f.pinned))
	for blk, rf := range f.pinned {
		pinned[blk] = rf.key.rev
	}
	return pinned
}

// fd returns the descriptor of the head file, -1 if none.
func (f *FileH) fd() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.headf == nil {
		return -1
	}
	return int(f.headf.Fd())
}

// open opens the head file and sets the watch up (the FileH is in the
// Conn's table, so that the pinner takes the pins of the setup). On failure
// it reports whether the server may hold a watch of the file for the link
// (the request went and was not refused: a request whose ctx ended is still
// served, and the server answers a watch only once head/at >= at).
func (f *FileH) open(ctx context.Context) (watched bool, err error) {
	c := f.conn
	at := c.At()
	headf, err := f.openHead(ctx, at)
	if err != nil {
		if errors.Is(err, unix.EINVAL) {
			return f.whyInvalid(ctx, at, err)
		}
		return false, err
	}
	if refused, err := c.watch(ctx, f.foid, at, false); err != nil {
		headf.Close()
		if c.isClosed() {
			return false, c.closedErr()
		}
		return !refused, err
	}
	// head/at >= at now: the size is at least the size as of at
	blksize, size, err := fstat(headf)
	if err == nil && blksize <= 0 {
		err = fmt.Errorf("wcfs bug: head/bigfile/%s: blksize %d", f.foid, blksize)
	}
	if err == nil && size%blksize != 0 {
		err = fmt.Errorf("wcfs bug: head/bigfile/%s: size %d is not a multiple of blksize %d", f.foid, size, blksize)
	}
	if err != nil {
		headf.Close()
		return true, err
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state != fileOpening { // the Conn was closed meanwhile
		headf.Close()
		return false, c.closedErr()
	}
	f.state = fileOpened
	f.headf, f.blksize, f.headfsize = headf, blksize, size
	close(f.ready)
	return false, nil
}

// whyInvalid completes openErr, the EINVAL of an open of head/bigfile/<foid>
// (no such object, not a ZBigFile), with the server's reason: a lookup logs
// it on the server only, and the error reply to a watch of a file head/
// does not serve says it. It returns whether the server may hold a watch
// of the file (it became a ZBigFile meanwhile, or the link failed): the
// caller's openFailed unwatches it.
func (f *FileH) whyInvalid(ctx context.Context, at zodb.Tid, openErr error) (watched bool, err error) {
	c := f.conn
	refused, werr := c.watch(ctx, f.foid, at, false)
	switch {
	case werr == nil:
		return true, openErr
	case !refused:
		if c.isClosed() {
			return false, c.closedErr()
		}
		return true, openErr
	}
	if _, reason, ok := strings.Cut(werr.Error(), errUnknownFile+": "); ok {
		return false, fmt.Errorf("%w: %s", openErr, reason)
	}
	return false, openErr
}

// errUnknownFile is the server's error for a watch of a file it does not
// serve (the reference's text); the reason follows it after ": ".
const errUnknownFile = "file not yet known to wcfs or is not a ZBigFile"

// openHead opens head/bigfile/<foid>. If head/ does not show the file, it
// waits for head/at >= at (if it is behind) and looks again.
func (f *FileH) openHead(ctx context.Context, at zodb.Tid) (*os.File, error) {
	wc := f.conn.wc
	path := wc.path("head/bigfile/" + f.foid.String())
	headf, err := os.Open(path)
	if err == nil || !(errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL)) {
		return headf, err
	}
	head, herr := wc.HeadAt()
	if herr != nil {
		return nil, err
	}
	if head < at {
		if err := wc.waitHead(ctx, at); err != nil {
			return nil, err
		}
	}
	// head/ is at at now; it may have been when the open failed, or it may
	// have got there in between (the server processed the commit that
	// created the file right after the lookup): look again
	return os.Open(path)
}

// openFailed undoes a failed open. If the server may hold a watch of the
// file (watched), the FileH stays in the Conn, closing (the pins of that
// watch are acknowledged without effect: an unexpected pin would be
// "nak", and the server would kill the process), until "watch <foid> -" is
// answered in the background: the server answers it once the pending
// setup is done, maybe only when the link closes (Conn.Close waits for it).
// Meanwhile an Open of the same file waits (reopen).
func (f *FileH) openFailed(watched bool) {
	c := f.conn
	f.mu.Lock()
	unwatch := watched && f.state == fileOpening // else Conn.Close took it over
	f.state = fileClosing
	f.dropPins()
	f.mu.Unlock()
	close(f.ready)

	if unwatch {
		c.mu.Lock()
		if !c.closed {
			c.unwatching.Add(1)
			c.mu.Unlock()
			go func() {
				defer c.unwatching.Done()
				if _, err := c.watch(context.Background(), f.foid, 0, true); err != nil && !c.isClosed() {
					c.wc.log().Warn(fmt.Sprintf("%s: stop watching after a failed open: %v", f, err))
				}
				f.remove()
			}()
			return
		}
		c.mu.Unlock()
	}
	f.remove()
}

// remove takes f out of the Conn and finishes closing it (Close, failed
// open): a later Open makes a new FileH.
func (f *FileH) remove() {
	c := f.conn
	c.mu.Lock()
	if c.files[f.foid] == f {
		delete(c.files, f.foid)
	}
	c.mu.Unlock()
	f.mu.Lock()
	f.release()
	f.mu.Unlock()
}

// reopen waits for an open in progress and counts one more open of f. It
// returns false (and no error) when f was closed or its open failed: the
// caller retries (an open that failed for another caller, e.g. its ctx
// ended, is no answer for this one).
func (f *FileH) reopen(ctx context.Context) (bool, error) {
	select {
	case <-f.ready:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	f.mu.Lock()
	if f.state == fileOpened {
		f.nopen++
		f.mu.Unlock()
		return true, nil
	}
	f.mu.Unlock()
	select {
	case <-f.gone:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	if f.conn.isClosed() {
		return false, f.conn.closedErr()
	}
	return false, nil
}

// isOpened reports whether f is open (not opening, not closing).
func (f *FileH) isOpened() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state == fileOpened
}

// Close closes one open of f. The last one stops watching the file, makes
// its mappings fault on access from now on and removes it from the Conn (a
// later Open makes a new FileH). Closing a closed FileH does nothing.
func (f *FileH) Close() error {
	if err := f.close(); err != nil {
		return fmt.Errorf("%s: close: %w", f, err)
	}
	return nil
}

func (f *FileH) close() error {
	c := f.conn
	// like Open, excluded by Resync: a resync must not watch the file again
	// between its unwatch and its removal from the Conn
	c.atMu.RLock()
	defer c.atMu.RUnlock()
	f.mu.Lock()
	if f.state != fileOpened {
		f.mu.Unlock()
		return nil
	}
	f.nopen--
	if f.nopen > 0 {
		f.mu.Unlock()
		return nil
	}
	f.state = fileClosing
	err := f.efaultAll()
	f.mu.Unlock()

	// pins that come meanwhile are acknowledged without effect
	var werr error
	if !c.isClosed() {
		_, werr = c.watch(context.Background(), f.foid, 0, true)
		if werr != nil && c.isClosed() {
			werr = nil // the Conn went down meanwhile: nothing to stop watching
		}
	}
	f.remove()
	return errors.Join(err, werr)
}

// forceClose closes f whatever its open count (Conn.Close). An open in
// progress fails when it sees the closing state.
func (f *FileH) forceClose() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch f.state {
	case fileClosed:
		return nil
	case fileOpening:
		f.state = fileClosing // open() fails and cleans up (openFailed)
		f.dropPins()
		return nil
	}
	err := f.efaultAll()
	f.release()
	if err != nil {
		return fmt.Errorf("f%s: %w", f.foid, err)
	}
	return nil
}

// release finishes closing: pins dropped, head file closed. f.mu held.
func (f *FileH) release() {
	if f.state == fileClosed {
		return
	}
	f.state = fileClosed
	f.dropPins()
	if f.headf != nil {
		f.headf.Close()
		f.headf = nil
	}
	close(f.gone)
}

// dropPins forgets every pin (their @<rev> files are released). f.mu held.
func (f *FileH) dropPins() {
	for blk, rf := range f.pinned {
		f.conn.wc.revFilePut(rf)
		delete(f.pinned, blk)
	}
}

// efaultAll makes every mapping of f fault on access. f.mu held.
func (f *FileH) efaultAll() error {
	var errs []error
	for m := range f.mmaps {
		if err := m.efault(); err != nil {
			errs = append(errs, err)
		}
		delete(f.mmaps, m)
	}
	return errors.Join(errs...)
}

// ---- pins ----

// pin remaps block blk of every mapping to @<rev> (rev == TidHead: back to
// head/) and records it.
func (f *FileH) pin(blk int64, rev zodb.Tid) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch f.state {
	case fileClosing, fileClosed:
		return nil // its mappings fault already
	}
	old := f.pinned[blk]
	if rev == headRev {
		if old == nil {
			return nil
		}
		delete(f.pinned, blk)
	} else {
		if old != nil && old.key.rev == rev {
			return nil
		}
		rf, err := f.conn.wc.revFileGet(rev, f.foid)
		if err != nil {
			f.efaultBlk(blk)
			return err
		}
		f.pinned[blk] = rf
	}
	if old != nil {
		f.conn.wc.revFilePut(old)
	}
	for m := range f.mmaps {
		if m.blkStart <= blk && blk < m.blkStop {
			if err := f.remapBlk(m, blk); err != nil {
				f.efaultBlk(blk)
				return err
			}
		}
	}
	return nil
}

// efaultBlk makes blk fault in every mapping (after a failed remap: never
// show data of another revision). f.mu held.
func (f *FileH) efaultBlk(blk int64) {
	for m := range f.mmaps {
		if m.blkStart <= blk && blk < m.blkStop {
			mmapNone(m.blkAddr(blk), int(f.blksize))
		}
	}
}

// remapBlk maps block blk of m as the pins say: the @<rev> file it is
// pinned to, else the head file; zeros where that file ends before the
// block does. f.mu held.
func (f *FileH) remapBlk(m *Mapping, blk int64) error {
	bs := f.blksize
	addr := m.blkAddr(blk)
	if rf := f.pinned[blk]; rf != nil {
		if (blk+1)*bs <= rf.size {
			return mmapFile(addr, int(bs), int(rf.f.Fd()), blk*bs)
		}
		return mmapZero(addr, int(bs))
	}
	if (blk+1)*bs <= f.headfsize {
		return mmapFile(addr, int(bs), int(f.headf.Fd()), blk*bs)
	}
	return mmapZero(addr, int(bs))
}

// mapRange maps blocks [lo, hi) of m: head/ where the file is, zeros after,
// then the pinned blocks. f.mu held.
func (f *FileH) mapRange(m *Mapping, lo, hi int64) error {
	bs := f.blksize
	inside := min(max(f.headfsize/bs, lo), hi)
	if lo < inside {
		if err := mmapFile(m.blkAddr(lo), int((inside-lo)*bs), int(f.headf.Fd()), lo*bs); err != nil {
			return err
		}
	}
	if inside < hi {
		if err := mmapZero(m.blkAddr(inside), int((hi-inside)*bs)); err != nil {
			return err
		}
	}
	blks := make([]int64, 0, len(f.pinned))
	for blk := range f.pinned {
		if lo <= blk && blk < hi {
			blks = append(blks, blk)
		}
	}
	sort.Slice(blks, func(i, j int) bool { return blks[i] < blks[j] })
	for _, blk := range blks {
		if err := f.remapBlk(m, blk); err != nil {
			return err
		}
	}
	return nil
}

// grow re-reads the size of the head file after the Conn moved forward and
// maps the data of blocks that were beyond its end (Resync).
func (f *FileH) grow() error {
	f.mu.Lock()
	headf := f.headf
	f.mu.Unlock()
	if headf == nil {
		return nil // closed by Conn.Close meanwhile
	}
	blksize, size, err := fstat(headf)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state != fileOpened {
		return nil
	}
	if err != nil {
		return err
	}
	switch {
	case blksize != f.blksize:
		return fmt.Errorf("wcfs bug: head/bigfile/%s: blksize changed %d -> %d", f.foid, f.blksize, blksize)
	case size < f.headfsize:
		return fmt.Errorf("wcfs bug: head/bigfile/%s: size went down %d -> %d", f.foid, f.headfsize, size)
	case size%blksize != 0:
		return fmt.Errorf("wcfs bug: head/bigfile/%s: size %d is not a multiple of blksize %d", f.foid, size, blksize)
	}
	oldBlks := f.headfsize / blksize
	f.headfsize = size
	newBlks := size / blksize
	for m := range f.mmaps {
		lo, hi := max(oldBlks, m.blkStart), min(newBlks, m.blkStop)
		if lo < hi {
			if err := f.mapRange(m, lo, hi); err != nil {
				return err
			}
		}
	}
	return nil
}

// ---- Mmap ----

// Mmap maps blocks [blkStart, blkStart+blkLen) of the file, read-only, as
// of the Conn's at. Blocks beyond the end of the file read as zeros (and
// take no memory) until a Resync past its growth.
func (f *FileH) Mmap(blkStart, blkLen int64) (*Mapping, error) {
	m, err := f.mmap(blkStart, blkLen)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap [#%d +%d): %w", f, blkStart, blkLen, err)
	}
	return m, nil
}

func (f *FileH) mmap(blkStart, blkLen int64) (*Mapping, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.state != fileOpened {
		return nil, ErrFileClosed
	}
	bs := f.blksize
	switch {
	case blkStart < 0 || blkLen <= 0:
		return nil, fmt.Errorf("invalid block range (want blk_start >= 0, blk_len > 0)")
	case blkStart > math.MaxInt64/bs-blkLen || blkLen > math.MaxInt/bs:
		return nil, fmt.Errorf("block range overflows")
	}
	length := int(blkLen * bs)
	addr, err := reserve(length)
	if err != nil {
		return nil, err
	}
	m := &Mapping{f: f, blkStart: blkStart, blkStop: blkStart + blkLen, addr: addr, length: length}
	if err := f.mapRange(m, m.blkStart, m.blkStop); err != nil {
		munmap(addr, length)
		return nil, err
	}
	f.mmaps[m] = struct{}{}
	return m, nil
}
