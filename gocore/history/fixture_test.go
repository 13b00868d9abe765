// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

// Replay of the genuine-ZODB fixture ../shared/testdata/zodb/small.fs.

import (
	"context"
	"slices"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/zdata"
	"wendelin.dev/wcfs/gocore/zurl"
)

// smallFixture opens ../shared/testdata/zodb/small.fs (relative to the
// repository root) and returns it with the oids of its files, or skips.
func smallFixture(ctx context.Context, t *testing.T) (zodb.IStorage, []zodb.Oid) {
	t.Helper()
	m, path := testdb.SmallFixture(t)
	var foidv []zodb.Oid
	for _, f := range m.Files {
		foidv = append(foidv, f.Oid)
	}
	slices.Sort(foidv)
	stor, err := zdata.OpenStorage(ctx, zurl.MustParse(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stor.Close() })
	return stor, foidv
}

// TestFixtureReplay replays small.fs from every possible starting revision,
// with and without forgetting, and checks every answer with the oracle.
func TestFixtureReplay(t *testing.T) {
	ctx := context.Background()
	stor, foidv := smallFixture(ctx, t)
	cv := readCommits(ctx, t, stor)
	if len(cv) != 9 {
		t.Fatalf("small.fs: %d transactions; want 9", len(cv))
	}
	o := newOracle(ctx, t, stor, cv, foidv)
	for at0 := range cv {
		for _, keep := range []int{0, 1, 3} {
			for seed := int64(0); seed < 4; seed++ {
				replay(ctx, t, stor, o, cv, foidv, at0, keep, seed)
			}
		}
	}
}
