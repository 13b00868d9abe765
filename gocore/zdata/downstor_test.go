// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

import (
	"context"
	"errors"
	"strings"
	"testing"

	"lab.nexedi.com/kirr/go123/mem"
	"lab.nexedi.com/kirr/neo/go/zodb"
)

// causelessStorage answers like neo/go's storage that a load caught between
// announcing its shutdown and setting the reason: an OpError without cause.
type causelessStorage struct {
	zodb.IStorage // nil: only Load and Sync are used
}

func (causelessStorage) Load(ctx context.Context, xid zodb.Xid) (*mem.Buf, zodb.Tid, error) {
	return nil, zodb.InvalidTid, &zodb.OpError{URL: "file:///x.fs", Op: "load", Args: xid}
}

func (causelessStorage) Sync(ctx context.Context) error {
	return &zodb.OpError{URL: "file:///x.fs", Op: "sync"}
}

// Errors without cause get one: their Error method no longer panics.
func TestDownStorageMendsCauselessErrors(t *testing.T) {
	stor := &downStorage{causelessStorage{}}
	ctx := context.Background()
	_, _, err := stor.Load(ctx, zodb.Xid{At: 1, Oid: 2})
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, errStorageDown) {
			t.Errorf("%s: %v, want cause %v", what, err, errStorageDown)
		}
		if msg := err.Error(); !strings.Contains(msg, "not operational") || !strings.Contains(msg, "file:///x.fs") {
			t.Errorf("%s: error %q does not say what happened", what, msg)
		}
	}
	check("load", err)
	check("sync", stor.Sync(ctx))
}
