// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// The storage over a neo/go driver: what zodb.Open provides, without its
// defects.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"lab.nexedi.com/kirr/go123/mem"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/fs1map"
)

// ErrStorageClosed is the reason of a storage's shutdown by Close.
var ErrStorageClosed = errors.New("storage closed")

// errWatchEnded is the reason of a shutdown when the driver stops watching
// without having reported an error (a FileStorage whose watcher failed
// closes its watch queue without one).
var errWatchEnded = errors.New("the storage driver stopped watching for commits")

// storage is the zodb.IStorage OpenStorage returns: a neo/go storage driver
// (zodb.OpenDriver) with a commit watch fanned out to every AddWatch, and a
// down state. It replaces neo/go's own wrapper (zodb.Open), which announces
// its shutdown before it sets the reason and reads the reason unsynchronized
// (a load racing with a shutdown is a data race there, and can get an
// OpError without a cause, whose Error method panics), and which gives
// "<nil>" as the reason when the driver's watch ends without an error.
//
// Here the down state and the reason change together under mu; once down,
// every Load, Sync and Iterate fails with an *zodb.OpError whose cause is
// the reason: ErrStorageClosed after Close, else the last error the driver
// reported on its watch, else errWatchEnded.
//
// There is no object cache (neo/go's is disabled too: WCFS keeps data in
// the kernel page cache): Prefetch does nothing.
type storage struct {
	drv       zodb.IStorageDriver
	drvWatchq chan zodb.Event
	mapped    *fs1map.File // a FileStorage's data file mapped (LoadMapped), or nil

	mu       sync.Mutex
	head     zodb.Tid
	headMove chan struct{} // closed and replaced when head moves or the storage goes down
	watches  map[chan<- zodb.Event]*watch
	watchEnd bool  // the fan-out ended: new watches get closed at once
	downErr  error // the reason of the shutdown; nil while up
	down     chan struct{}

	closeOnce sync.Once
	closeErr  error         // of the driver's Close
	fanDone   chan struct{} // the fan-out goroutine ended
}

// watch is one AddWatch registration. del is closed by DelWatch: a delivery
// to the watch in progress gives up.
type watch struct {
	q   chan<- zodb.Event
	del chan struct{}
}

var _ zodb.IStorage = (*storage)(nil)

// openStorage opens the storage driver for url read-only and starts the
// fan-out of its commit events. fsPath is the data file of a FileStorage
// ("" for other storages), mapped for LoadMapped.
func openStorage(ctx context.Context, url, fsPath string) (*storage, error) {
	drvWatchq := make(chan zodb.Event)
	drv, at0, err := zodb.OpenDriver(ctx, url, &zodb.DriverOptions{ReadOnly: true, Watchq: drvWatchq})
	if err != nil {
		return nil, err
	}
	s := &storage{
		drv:       drv,
		drvWatchq: drvWatchq,
		head:      at0,
		headMove:  make(chan struct{}),
		watches:   make(map[chan<- zodb.Event]*watch),
		down:      make(chan struct{}),
		fanDone:   make(chan struct{}),
	}
	s.mapped = openMapped(url, fsPath)
	go s.fanOut()
	if fsPath != "" {
		if err := s.checkEnd(ctx, fsPath); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

// openMapped maps the data file fsPath of the FileStorage at url for
// LoadMapped; nil for other storages (fsPath ""), for a url with options,
// or when the map cannot be made (loads then all go through the driver, as
// they would without it).
func openMapped(url, fsPath string) *fs1map.File {
	if fsPath == "" || strings.Contains(url, "?") || os.Getenv("WCFS_NO_MMAP") != "" {
		return nil
	}
	m, err := fs1map.Open(fsPath, fs1map.MinSize)
	if err != nil {
		return nil
	}
	return m
}

// RecordMapper is implemented by storages that can give the data of large
// records without copying them: zdata's storage over a FileStorage (see
// package fs1map), and wrappers forwarding to it.
type RecordMapper interface {
	// LoadMapped is Load without the copy for the records it knows,
	// which it returns with ok; ok false: use Load. The record must be
	// released.
	LoadMapped(xid zodb.Xid) (rec fs1map.Record, serial zodb.Tid, ok bool)
}

var _ RecordMapper = (*storage)(nil)

func (s *storage) LoadMapped(xid zodb.Xid) (fs1map.Record, zodb.Tid, bool) {
	if s.mapped == nil || s.isDown() != nil {
		return fs1map.Record{}, 0, false
	}
	return s.mapped.Load(xid)
}

func (s *storage) URL() string { return s.drv.URL() }

// zerr is the error of operation op on s.
func (s *storage) zerr(op string, args any, err error) error {
	return &zodb.OpError{URL: s.URL(), Op: op, Args: args, Err: err}
}

// isDown returns the reason of the shutdown, or nil while s is up.
func (s *storage) isDown() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.downErr
}

// shutdown takes s down with reason (the first reason stays) and closes
// the driver, which ends its watch and the fan-out.
func (s *storage) shutdown(reason error) {
	s.mu.Lock()
	if s.downErr == nil {
		s.downErr = reason
		close(s.down)
		close(s.headMove)
		s.headMove = make(chan struct{})
	}
	s.mu.Unlock()
	s.closeOnce.Do(func() {
		s.closeErr = s.drv.Close()
		if s.mapped != nil {
			s.mapped.Close()
		}
	})
}

// closeWait bounds how long Close waits for the driver to close its watch
// queue (neo/go's drivers do once their link or watcher is down).
const closeWait = 10 * time.Second

// Close shuts s down (ErrStorageClosed, unless it is down already) and
// waits for the fan-out to end: all watches are closed when it returns
// (unless the driver keeps its watch queue open for more than closeWait).
func (s *storage) Close() error {
	s.shutdown(ErrStorageClosed)
	select {
	case <-s.fanDone:
	case <-time.After(closeWait):
	}
	return s.closeErr
}

func (s *storage) Load(ctx context.Context, xid zodb.Xid) (*mem.Buf, zodb.Tid, error) {
	if err := s.isDown(); err != nil {
		return nil, zodb.InvalidTid, s.zerr("load", xid, err)
	}
	return s.drv.Load(ctx, xid)
}

func (s *storage) Prefetch(ctx context.Context, xid zodb.Xid) {}

func (s *storage) Iterate(ctx context.Context, tidMin, tidMax zodb.Tid) zodb.ITxnIterator {
	return s.drv.Iterate(ctx, tidMin, tidMax)
}

func (s *storage) Head() zodb.Tid {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.head
}

// Sync asks the driver for the storage's head and waits until the commits
// up to it have been announced to the watches (Head shows it then). A head
// going back is a storage error: s goes down.
func (s *storage) Sync(ctx context.Context) error {
	if err := s.isDown(); err != nil {
		return s.zerr("sync", nil, err)
	}
	head, err := s.drv.Sync(ctx)
	if err != nil {
		return s.zerr("sync", nil, err)
	}
	if at := s.Head(); head < at {
		err := fmt.Errorf("storage error: sync gave head %s, before the last commit seen (%s)", head, at)
		s.shutdown(err)
		return s.zerr("sync", nil, err)
	}
	for {
		s.mu.Lock()
		at, moved, down := s.head, s.headMove, s.downErr
		s.mu.Unlock()
		if down != nil {
			return s.zerr("sync", nil, down)
		}
		if at >= head {
			return nil
		}
		select {
		case <-moved:
		case <-ctx.Done():
			return s.zerr("sync", nil, ctx.Err())
		}
	}
}

// AddWatch registers watchq: it gets every event after at0, the head at
// the time of the call, until the storage goes down (watchq is then
// closed) or DelWatch. On a storage that is down already watchq gets the
// reason (an EventError) and is closed.
func (s *storage) AddWatch(watchq chan<- zodb.Event) (at0 zodb.Tid) {
	w := &watch{q: watchq, del: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, dup := s.watches[watchq]; dup {
		panic("zdata: AddWatch twice with one channel")
	}
	s.watches[watchq] = w
	if s.watchEnd {
		reason := s.downErr
		go func() {
			select {
			case watchq <- &zodb.EventError{Err: reason}:
			case <-w.del:
				return
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.watches[watchq] == w {
				delete(s.watches, watchq)
				close(watchq)
			}
		}()
	}
	return s.head
}

// DelWatch unregisters watchq: nothing is sent to it once DelWatch returns
// (unless the caller reads it meanwhile, a delivery in progress may still
// complete), and it is not closed.
func (s *storage) DelWatch(watchq chan<- zodb.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.watches[watchq]; w != nil {
		delete(s.watches, watchq)
		close(w.del)
	}
}

// fanOut delivers the driver's events to the watches, in order, each event
// to all watches before the next (a watch that does not read holds up all:
// the contract of zodb.Watcher). It ends when the driver closes its watch
// queue (Close, or the driver gave up), or on a commit whose tid does not
// go up: the storage then goes down and the watches are closed.
func (s *storage) fanOut() {
	defer close(s.fanDone)
	var lastErr error // the last error the driver reported
	reason := errWatchEnded
	for ev := range s.drvWatchq {
		switch e := ev.(type) {
		case *zodb.EventError:
			lastErr = e.Err
		case *zodb.EventCommit:
			s.mu.Lock()
			if e.Tid <= s.head {
				s.mu.Unlock()
				reason = fmt.Errorf("storage error: commit notified with tid not going up (%s -> %s)", s.head, e.Tid)
				ev = &zodb.EventError{Err: reason}
				s.deliver(ev)
				go func() { // the driver may send more until its Close
					for range s.drvWatchq {
					}
				}()
				s.endWatch(reason)
				return
			}
			s.head = e.Tid
			close(s.headMove)
			s.headMove = make(chan struct{})
			s.mu.Unlock()
		default:
			lastErr = fmt.Errorf("unexpected storage event %T", ev)
			continue
		}
		s.deliver(ev)
	}
	if lastErr != nil {
		reason = lastErr
	}
	s.endWatch(reason)
}

// deliver sends ev to every watch registered now, unless it is deleted
// meanwhile.
func (s *storage) deliver(ev zodb.Event) {
	s.mu.Lock()
	ws := make([]*watch, 0, len(s.watches))
	for _, w := range s.watches {
		ws = append(ws, w)
	}
	s.mu.Unlock()
	for _, w := range ws {
		select {
		case w.q <- ev:
		case <-w.del:
		}
	}
}

// endWatch takes s down with reason (if it is not yet: Close goes first)
// and closes every watch.
func (s *storage) endWatch(reason error) {
	s.shutdown(reason)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.watchEnd = true
	for q, w := range s.watches {
		delete(s.watches, q)
		close(w.del)
		close(q)
	}
}
