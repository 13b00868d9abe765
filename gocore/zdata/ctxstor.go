// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package zdata

import (
	"context"

	"lab.nexedi.com/kirr/go123/mem"
	"lab.nexedi.com/kirr/neo/go/zodb"
)

// ctxStorage makes Load honour its context whatever the storage client
// does. neo/go's NEO client stops looking at the context once a request is
// sent (a hung storage node then hangs the load for as long as it does not
// answer), and its ZEO client waits for the answer the same way.
//
// When ctx is done before the storage answers, Load returns at once with an
// error wrapping ctx.Err(); the abandoned request is left to finish in its
// goroutine, which then releases what it loaded: no goroutine outlives the
// request it waits for.
type ctxStorage struct {
	zodb.IStorage
}

type loadResult struct {
	buf    *mem.Buf
	serial zodb.Tid
	err    error
}

func (s *ctxStorage) Load(ctx context.Context, xid zodb.Xid) (*mem.Buf, zodb.Tid, error) {
	done := ctx.Done()
	if done == nil {
		return s.IStorage.Load(ctx, xid) // nothing to honour
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, s.opError(xid, err)
	}
	answer := make(chan loadResult)
	abandoned := make(chan struct{})
	go func() {
		buf, serial, err := s.IStorage.Load(ctx, xid)
		select {
		case answer <- loadResult{buf, serial, err}:
		case <-abandoned:
			if buf != nil {
				buf.Release()
			}
		}
	}()
	select {
	case r := <-answer:
		return r.buf, r.serial, r.err
	case <-done:
		close(abandoned)
		return nil, 0, s.opError(xid, ctx.Err())
	}
}

func (s *ctxStorage) opError(xid zodb.Xid, err error) error {
	return &zodb.OpError{URL: s.URL(), Op: "load", Args: xid, Err: err}
}

// Sync honours ctx the same way (the abandoned round trip finishes in its
// goroutine).
func (s *ctxStorage) Sync(ctx context.Context) error {
	if ctx.Done() == nil {
		return s.IStorage.Sync(ctx)
	}
	answer := make(chan error, 1)
	go func() { answer <- s.IStorage.Sync(ctx) }()
	select {
	case err := <-answer:
		return err
	case <-ctx.Done():
		return &zodb.OpError{URL: s.URL(), Op: "sync", Err: ctx.Err()}
	}
}
