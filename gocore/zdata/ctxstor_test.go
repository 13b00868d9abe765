// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package zdata

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"lab.nexedi.com/kirr/go123/mem"
	"lab.nexedi.com/kirr/neo/go/zodb"
)

// hungStorage is a storage client that ignores ctx once a load is sent and
// answers only when released (what neo/go's NEO client does with a storage
// node that does not answer).
type hungStorage struct {
	zodb.IStorage // nil: only URL and Load are used
	release       chan struct{}
	answered      chan struct{}
}

func (s *hungStorage) URL() string { return "neo://hung@127.0.0.1:1" }

func (s *hungStorage) Load(ctx context.Context, xid zodb.Xid) (*mem.Buf, zodb.Tid, error) {
	<-s.release
	defer close(s.answered)
	return mem.BufAlloc(64), 1, nil
}

// A load abandoned by its context returns at once with ctx's error; the
// request finishes in the background and leaves no goroutine behind.
func TestCtxStorageAbandonsLoad(t *testing.T) {
	hung := &hungStorage{release: make(chan struct{}), answered: make(chan struct{})}
	stor := &ctxStorage{hung}
	base := runtime.NumGoroutine()

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	buf, _, err := stor.Load(ctx, zodb.Xid{Oid: 1, At: 1})
	if !errors.Is(err, context.DeadlineExceeded) || buf != nil {
		t.Fatalf("load from a hung storage: %v, %v; want DeadlineExceeded", buf, err)
	}
	var opErr *zodb.OpError
	if !errors.As(err, &opErr) || opErr.URL != hung.URL() {
		t.Errorf("error %q does not name the storage", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("load returned %s after its deadline", d)
	}

	close(hung.release) // the storage answers at last
	<-hung.answered
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > base; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after the abandoned load finished, %d before", runtime.NumGoroutine(), base)
		}
	}

	// an answered load is returned as is; a context without Done is not wrapped
	hung.answered = make(chan struct{})
	buf, serial, err := stor.Load(context.Background(), zodb.Xid{Oid: 1, At: 1})
	if err != nil || serial != 1 || buf == nil {
		t.Fatalf("load: %v %v %v", buf, serial, err)
	}
	buf.Release()
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	hung.answered = make(chan struct{})
	if buf, _, err = stor.Load(ctx, zodb.Xid{Oid: 1, At: 1}); err != nil {
		t.Fatal(err)
	}
	buf.Release()
}
