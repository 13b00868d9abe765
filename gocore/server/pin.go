// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	log "github.com/golang/glog"
	"golang.org/x/sync/errgroup"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/history"
	"wendelin.dev/wcfs/gocore/wproto"
	"wendelin.dev/wcfs/gocore/zdata"
)

// onBlockLoad is headView.OnBlockLoad: pins on access (spec 2.5). Block blk
// of head file f was just loaded (and tracked by the history); before its
// data reaches the kernel, every watch of f whose at is before the block's
// last change gets "pin <foid> #<blk> @<rev>", rev = the block's revision as
// of the watch's at, and acknowledges it. viewMu is read-held.
//
// Cost: with no watch at all, one atomic load. With watches, the cheap upper
// bound RevMax (max serial of the blktab path and the ZBlk, and of the
// ZBigFile object: an epoch) settles every watch whose at is not older; the
// exact revision (history.BlkRevAt) is computed once if some watch is older.
// Pins to several watches run in parallel, at most pinFanout at once. Pin
// failures do not fail the read: the faulty client is dealt with
// (pinFailed).
func (iso *isolation) onBlockLoad(ctx context.Context, f *bigFile, blk int64, info zdata.BlkInfo) error {
	if iso.nwatch.Load() == 0 {
		return nil
	}
	watches := iso.watchesOf(f)
	if len(watches) == 0 {
		return nil
	}
	rough := max(info.RevMax, f.zfile.PSerial())
	var behind []*watch
	for _, w := range watches {
		if rough > w.atNow() {
			behind = append(behind, w)
		}
	}
	if len(behind) == 0 {
		return nil
	}
	hist := iso.h.hist
	blkrev, err := hist.BlkRevAt(f.oid, blk, iso.h.zconn.At())
	if err != nil {
		return err
	}
	pin1 := func(w *watch) {
		// at only moves forward: recheck under atMu.R, which keeps it
		// put until the pin is acknowledged
		w.atMu.RLock()
		defer w.atMu.RUnlock()
		if w.gone || blkrev <= w.at {
			return
		}
		w.pin(blk, pinRev(hist, f.oid, blk, w.at))
	}
	if len(behind) == 1 {
		pin1(behind[0])
		return nil
	}
	var g errgroup.Group
	g.SetLimit(pinFanout)
	for _, w := range behind {
		g.Go(func() error {
			pin1(w)
			return nil
		})
	}
	g.Wait()
	return nil
}

// pinFanout bounds the pins sent at once by one load (one per watch of the
// file behind the block's revision) or one watch setup (one per block that
// changed since the watch's at: a setup behind a big commit pins all the
// blocks of it that the server tracked, 100,000 and more). A pin in flight
// waits for the client's ack (not in a syscall: no OS thread), but it is a
// goroutine with its stack; the rest wait for a slot. The cost: more than
// pinFanout clients failing at once to answer pins of one load are dealt
// with pinFanout at a time (a pin timeout for each round).
const pinFanout = 128

// pinRev is the revision to pin block blk of file foid to for a watch at
// at: the block's last change as of at, so that watches at different at
// share @<rev>/ page cache (spec 2.4). Across an epoch of the file (or
// outside the history, which is kept back to every watch's at) it is at
// itself: @<at>/ has exactly the data the client saw.
func pinRev(hist *history.History, foid zodb.Oid, blk int64, at zodb.Tid) zodb.Tid {
	rev, err := hist.BlkRevAt(foid, blk, at)
	if err != nil {
		return at
	}
	return rev
}

// asEpoch tells whether err is a history.EpochError.
func asEpoch(err error) (*history.EpochError, bool) {
	var ee *history.EpochError
	ok := errors.As(err, &ee)
	return ee, ok
}

// errLinkGone: the watch's link is being torn down.
var errLinkGone = errors.New("watch link is down")

// pin makes the client map block blk of w's file to @rev (wproto.TidHead:
// back to head/): it sends the pin and waits for the acknowledgement, unless
// the block is already pinned so. A pin of the same block in flight is
// waited for first. w.atMu is read-held (rev ≤ w.at or rev = @head).
func (w *watch) pin(blk int64, rev zodb.Tid) error {
	wl := w.link
	if !wl.pins.enter() {
		return errLinkGone
	}
	defer wl.pins.leave()
	for {
		w.pinMu.Lock()
		if w.pinned == nil { // removed
			w.pinMu.Unlock()
			return errLinkGone
		}
		if busy := w.inflight[blk]; busy != nil {
			w.pinMu.Unlock()
			select {
			case <-busy:
				continue
			case <-wl.ctx.Done():
				return wl.ctx.Err()
			}
		}
		cur, pinned := w.pinned[blk]
		if (pinned && cur == rev) || (!pinned && rev == wproto.TidHead) {
			w.pinMu.Unlock()
			return nil // never the same pin twice
		}
		done := make(chan struct{})
		w.inflight[blk] = done
		w.pinMu.Unlock()

		err := wl.sendPin(w.file.oid, blk, rev)

		w.pinMu.Lock()
		delete(w.inflight, blk)
		close(done)
		if err == nil && w.pinned != nil {
			stats := &wl.iso.srv.stats.PinnedBlk
			_, had := w.pinned[blk]
			if rev == wproto.TidHead {
				delete(w.pinned, blk)
				if had {
					stats.Add(-1)
				}
			} else {
				w.pinned[blk] = rev
				if !had {
					stats.Add(1)
				}
			}
		}
		w.pinMu.Unlock()
		return err
	}
}

// pinFailure classifies a failed pin (spec 2.8).
type pinFailure int

const (
	pinNak     pinFailure = iota // the client replied something else than "ack": kill
	pinTimeout                   // no ack in time: kill unless the client is dead
	pinIO                        // the link went down: kill if the client does not exit
)

// sendPin sends one pin request and waits for "ack", within the pin timeout
// and the link's serve context. A failure is handled (pinFailed) before it
// returns.
func (wl *watchLink) sendPin(foid zodb.Oid, blk int64, rev zodb.Tid) error {
	timeout := wl.iso.srv.opt.PinTimeout
	ctx, cancel := context.WithTimeout(wl.ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	wl.iso.srv.stats.Pin.Add(1)
	reply, err := wl.link.SendReq(ctx, wproto.Pin{Foid: foid, Blk: blk, Rev: rev}.String())
	if err == nil && reply == wproto.ReplyAck {
		return nil
	}
	kind := pinIO
	switch {
	case err == nil:
		kind = pinNak
		err = fmt.Errorf("expected %q; got %q", wproto.ReplyAck, reply)
	case errors.Is(err, context.DeadlineExceeded) && wl.ctx.Err() == nil:
		kind = pinTimeout
	}
	err = fmt.Errorf("pin #%d @%s: %w", blk, wproto.FormatRev(rev), err)
	wl.pinFailed(err, kind, deadline)
	return err
}

// pinFailed deals with a client that mishandled a pin (spec 2.8): the link
// is shut down with "0 fatal: <err>" and the client killed, unless the link
// went down because of "bye" (graceful: pins are canceled, nobody is
// killed) or the server is stopping.
//
// Every failed pin returns once the client was dealt with (the first one
// runs the kill procedure). A prompt failure (the client closed the link or
// broke the protocol) kills only if the client does not exit by itself
// within min(3s, the pin deadline); a timeout kills unless the client is
// already dead.
func (wl *watchLink) pinFailed(err error, kind pinFailure, deadline time.Time) {
	srvCtx := wl.iso.srv.ctx
	if srvCtx.Err() != nil {
		return
	}
	if kind == pinIO {
		// let the receiver see why the link is going down (bye or EOF)
		select {
		case <-wl.link.Down():
		case <-time.After(time.Second):
		}
	}
	// graceful: "bye"
	if errors.Is(wl.link.Err(), wproto.ErrBye) {
		return
	}
	if !wl.link.Shutdown("fatal: "+err.Error()) && errors.Is(wl.link.Err(), wproto.ErrBye) {
		return
	}
	// the first failed pin runs the kill procedure; others wait for it
	wl.killOnce.Do(func() { wl.killClient(err, kind, deadline) })
}

// killClient runs the kill procedure for a client that mishandled a pin.
func (wl *watchLink) killClient(reason error, kind pinFailure, deadline time.Time) {
	c := wl.client
	timeout := wl.iso.srv.opt.PinTimeout
	switch kind {
	case pinTimeout:
		if !c.alive() {
			log.Warningf("%s: %s; the client is already dead", wl, reason)
			return
		}
	case pinIO:
		if c.waitExit(min(3*time.Second, time.Until(deadline))) {
			log.Infof("%s: %s; the client exited", wl, reason)
			return
		}
	}
	logf := func(format string, argv ...any) {
		log.ErrorDepth(1, fmt.Sprintf("pid%d: ", c.pid)+fmt.Sprintf(format, argv...))
	}
	logf("client failed to handle pin notification correctly and timely in %s: %s", timeout, reason)
	logf("-> killing it because else 1) all other clients will remain stuck, and 2) we no longer can provide correct data to the faulty client.")
	if err := c.kill(timeout); err != nil {
		logf("failed to kill it: %s", err)
		logf("this is major unexpected event: switching filesystem to EIO mode")
		wl.iso.srv.fail(fmt.Errorf("%s: could not kill a faulty client: %w", wl, err))
		return
	}
	logf("terminated")
	wl.iso.srv.stats.PinKill.Add(1)
}
