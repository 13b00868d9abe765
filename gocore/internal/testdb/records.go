// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package testdb

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"

	pickle "github.com/kisielk/og-rek"

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

// Record encodes a ZODB data record the way ZODB writes it (the class
// pickle, then the state pickle, protocol 3), for tests that need records no
// genuine ZODB would write. class is "module.Name"; a nil state leaves the
// state pickle out. Persistent references in state are Ref values.
func Record(class string, state any) []byte {
	var buf bytes.Buffer
	enc := func(x any) {
		e := pickle.NewEncoderWithConfig(&buf, &pickle.EncoderConfig{Protocol: 3, StrictUnicode: true})
		if err := e.Encode(x); err != nil {
			panic(fmt.Sprintf("testdb.Record: %s", err))
		}
	}
	enc(pyClass(class))
	if state != nil {
		enc(state)
	}
	return buf.Bytes()
}

// Ref is a persistent reference (oid, class) as ZODB writes it; class ""
// gives a reference by oid alone.
func Ref(oid zodb.Oid, class string) pickle.Ref {
	b := pickle.Bytes(binary.BigEndian.AppendUint64(nil, uint64(oid)))
	if class == "" {
		return pickle.Ref{Pid: b}
	}
	return pickle.Ref{Pid: pickle.Tuple{b, pyClass(class)}}
}

// pyClass converts "module.Name" into a pickle class.
func pyClass(class string) pickle.Class {
	i := strings.LastIndexByte(class, '.')
	return pickle.Class{Module: class[:max(i, 0)], Name: class[i+1:]}
}
