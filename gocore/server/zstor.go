// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package server

// Storage outages (docs/operations.md, "Storage outages").

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	log "github.com/golang/glog"
	"lab.nexedi.com/kirr/go123/mem"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/fs1map"
	"wendelin.dev/wcfs/gocore/zdata"
	"wendelin.dev/wcfs/gocore/zurl"
)

// errStorageDown is wrapped by the errors of storage work that failed
// because the storage is unavailable: down, or no answer within
// -zstor.timeout. They are EIO, logged once (when the storage goes down),
// not for every read.
var errStorageDown = errors.New("storage unavailable")

// errZStorTimeout is the cause of the per-load deadline.
var errZStorTimeout = errors.New("no answer within -zstor.timeout")

// zstor is the storage as the server uses it: every load of the database,
// history and views goes through it. It tracks whether the storage is
// available:
//
//   - up: loads go to the storage; from network storages each gets
//     -zstor.timeout to answer (zdata's wrapper returns when the deadline
//     passes even when the storage client does not);
//   - down, entered when the storage watch fails, or a load from a network
//     storage times out or fails on the link: loads fail at once
//     (errStorageDown), the commit follower has stopped, head/ stays at the
//     last revision it processed and cached data stays readable. The state
//     is in .wcfs/zstor, the log and sd_notify's STATUS=.
//
// While down, the storage is opened anew about once a second; once that
// works the server exits non-zero (Server.fail), unmounting: neo/go's
// clients cannot resume the broken session, nor list the commits missed
// meanwhile, so a fresh server (systemd's restart, the next join) follows
// the storage again.
type zstor struct {
	zodb.IStorage // zdata.OpenStorage's

	zurl    zurl.ZURL
	timeout time.Duration
	network bool         // loads are bounded and their link errors count
	status  func(string) // sd_notify STATUS=, or nil

	down     atomic.Pointer[zstorDown] // nil: up
	downOnce sync.Once
	downCh   chan struct{} // closed when the storage goes down
}

// zstorDown describes an outage.
type zstorDown struct {
	since time.Time
	cause error
}

func newZStor(stor zodb.IStorage, opt *Options) *zstor {
	return &zstor{
		IStorage: stor,
		zurl:     opt.ZURL,
		timeout:  opt.ZStorTimeout,
		network:  opt.ZURL.IsNetwork(),
		status:   opt.Status,
		downCh:   make(chan struct{}),
	}
}

// Load loads through the storage unless it is down. See zstor.
func (z *zstor) Load(ctx context.Context, xid zodb.Xid) (*mem.Buf, zodb.Tid, error) {
	if d := z.down.Load(); d != nil {
		return nil, 0, z.downError(d)
	}
	if !z.network {
		return z.IStorage.Load(ctx, xid)
	}
	lctx, cancel := context.WithTimeoutCause(ctx, z.timeout, errZStorTimeout)
	defer cancel()
	buf, serial, err := z.IStorage.Load(lctx, xid)
	switch {
	case err == nil:
		return buf, serial, nil
	case ctx.Err() != nil:
		// the caller gave up (FUSE interrupt, shutdown): not the storage's fault
	case context.Cause(lctx) == errZStorTimeout:
		err = fmt.Errorf("%s: load %s: no answer within %s: %w", z.zurl, xid, z.timeout, errStorageDown)
		z.setDown(err)
	case isLinkError(err):
		z.setDown(err)
		err = fmt.Errorf("%w (%w)", err, errStorageDown)
	}
	return nil, 0, err
}

// LoadMapped forwards zdata's loads of records in place (a FileStorage's
// map) unless the storage is down.
func (z *zstor) LoadMapped(xid zodb.Xid) (fs1map.Record, zodb.Tid, bool) {
	m, ok := z.IStorage.(zdata.RecordMapper)
	if !ok || z.down.Load() != nil {
		return fs1map.Record{}, 0, false
	}
	return m.LoadMapped(xid)
}

var _ zdata.RecordMapper = (*zstor)(nil)

// isLinkError tells whether a load error from a network storage means that
// the storage cannot be used (the connection broke, the client gave up on
// the session), as opposed to an answer about the object: missing object or
// data, corrupt data (which fail that load only).
func isLinkError(err error) bool {
	var noObj *zodb.NoObjectError
	var noData *zodb.NoDataError
	if errors.As(err, &noObj) || errors.As(err, &noData) {
		return false
	}
	return !zdata.IsCorruptData(err)
}

// lost reports whether err, with which following the database stopped, is
// the storage's unavailability (the watch failed or ended, or a load of a
// commit's changes did); the storage is then down (if it was not already)
// and the server keeps serving what does not need the storage.
func (z *zstor) lost(err error) bool {
	if !errors.Is(err, errStorageDown) {
		return false
	}
	z.setDown(err)
	return true
}

// watchError marks an error of the storage watch as the storage's
// unavailability.
func watchError(err error) error {
	return fmt.Errorf("%w (%w)", err, errStorageDown)
}

// setDown enters the down state (once).
func (z *zstor) setDown(cause error) {
	z.downOnce.Do(func() {
		d := &zstorDown{since: time.Now(), cause: cause}
		z.down.Store(d)
		close(z.downCh)
		log.Errorf("%s: storage unavailable: %s", z.zurl, cause)
		log.Errorf("-> reads that need the storage fail with EIO, cached data is served as of head/at; " +
			"the server exits once the storage is back, so that a new server follows it (see .wcfs/zstor)")
		if z.status != nil {
			z.status(fmt.Sprintf("storage %s down since %s: %s", z.zurl, d.since.Format(time.TimeOnly), cause))
		}
	})
}

func (z *zstor) downError(d *zstorDown) error {
	return fmt.Errorf("%s: down since %s: %w", z.zurl, d.since.Format(time.TimeOnly), errStorageDown)
}

// stateText renders .wcfs/zstor: "up", or "down since <time>: <cause>".
func (z *zstor) stateText() []byte {
	d := z.down.Load()
	if d == nil {
		return []byte("up\n")
	}
	cause := strings.NewReplacer("\n", " ").Replace(d.cause.Error())
	return []byte(fmt.Sprintf("down since %s: %s\n", d.since.UTC().Format(time.RFC3339), cause))
}

// zstorRetry is how often a down storage is opened anew.
const zstorRetry = time.Second

// monitor waits for the storage to go down, then opens it anew every
// zstorRetry until that works, and then ends serving with an error naming
// the storage and the outage.
func (z *zstor) monitor(ctx context.Context, fail func(error)) {
	select {
	case <-ctx.Done():
		return
	case <-z.downCh:
	}
	d := z.down.Load()
	every(ctx, zstorRetry, func() bool {
		octx, cancel := context.WithTimeout(ctx, min(z.timeout, 10*time.Second))
		stor, err := zdata.OpenStorage(octx, z.zurl)
		cancel()
		if err != nil {
			if log.V(1) {
				log.Infof("%s: still unavailable: %s", z.zurl, err)
			}
			return true
		}
		stor.Close()
		fail(fmt.Errorf("%s: storage connection lost at %s (%s); it is back: exiting so that a new server follows it",
			z.zurl, d.since.Format(time.TimeOnly), d.cause))
		return false
	})
}
