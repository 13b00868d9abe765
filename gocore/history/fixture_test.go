// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

// Replay of the genuine-ZODB fixture ../shared/testdata/zodb/small.fs.

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/zdata"
)

// smallFixture opens ../shared/testdata/zodb/small.fs (relative to the
// repository root) and returns it with the oids of its files, or skips.
func smallFixture(ctx context.Context, t *testing.T) (zodb.IStorage, []zodb.Oid) {
	t.Helper()
	dir := testdb.SharedZODB(t)
	data, err := os.ReadFile(filepath.Join(dir, "small.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Files map[string]struct {
			Oid string `json:"oid"`
		} `json:"files"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var foidv []zodb.Oid
	for _, f := range m.Files {
		oid, err := strconv.ParseUint(f.Oid, 16, 64)
		if err != nil {
			t.Fatal(err)
		}
		foidv = append(foidv, zodb.Oid(oid))
	}
	sort.Slice(foidv, func(i, j int) bool { return foidv[i] < foidv[j] })
	stor, err := zdata.OpenStorage(ctx, filepath.Join(dir, "small.fs"))
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
