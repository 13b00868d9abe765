// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

import (
	"context"
	"errors"

	"lab.nexedi.com/kirr/go123/mem"
	"lab.nexedi.com/kirr/neo/go/zodb"
)

// errStorageDown is the cause given to errors neo/go returns without one.
var errStorageDown = errors.New("storage not operational (shut down)")

// downStorage mends one defect of neo/go's storage (zodb.Open): when it
// shuts down (Close, or its watcher found the storage broken, e.g. a
// FileStorage cut in the middle of a transaction) it closes its "down"
// channel before it sets the reason, and a Load or Sync that sees the
// channel closed in between returns a *zodb.OpError whose Err is nil, and
// whose Error method then panics. Such errors get errStorageDown as their
// cause. (The unsynchronized read of the reason is in neo/go too, and only
// neo/go can fix it; gocore/zdata's TestTruncated keeps out of it.)
type downStorage struct {
	zodb.IStorage
}

func (s *downStorage) Load(ctx context.Context, xid zodb.Xid) (*mem.Buf, zodb.Tid, error) {
	buf, serial, err := s.IStorage.Load(ctx, xid)
	return buf, serial, mendCause(err)
}

func (s *downStorage) Sync(ctx context.Context) error {
	return mendCause(s.IStorage.Sync(ctx))
}

// mendCause gives an OpError without a cause errStorageDown as its cause.
func mendCause(err error) error {
	var e *zodb.OpError
	if errors.As(err, &e) && e.Err == nil {
		e.Err = errStorageDown
	}
	return err
}
