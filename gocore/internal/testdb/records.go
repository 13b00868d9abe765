// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package testdb

import (
	"context"
	"io"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// EachRecord calls fn for every transaction of stor, in order: first with
// the transaction alone (d = nil), then with each of its data records (the
// record of a deletion has no Data).
func EachRecord(ctx context.Context, t testing.TB, stor zodb.IStorage, fn func(txn *zodb.TxnInfo, d *zodb.DataInfo)) {
	t.Helper()
	it := stor.Iterate(ctx, 0, zodb.TidMax)
	for {
		txn, dit, err := it.NextTxn(ctx)
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		fn(txn, nil)
		for {
			d, err := dit.NextData(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			fn(txn, d)
		}
	}
}
