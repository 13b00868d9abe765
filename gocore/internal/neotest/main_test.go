// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package neotest

import (
	"flag"
	"path/filepath"
	"testing"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// Server-level tests run real wcfs servers (built once per test binary).
func TestMain(m *testing.M) {
	// neo/go logs through glog, which otherwise writes files into $TMPDIR
	flag.Set("logtostderr", "true")
	wcfstest.Main(m)
}

// smallFixture returns the shared genuine-ZODB fixture small.fs (read-only:
// NEO's storage backend and file:// only read it) and its manifest.
func smallFixture(t testing.TB) (string, *testdb.Manifest) {
	t.Helper()
	dir := testdb.SharedZODB(t)
	m, err := testdb.LoadManifest(filepath.Join(dir, "small.json"))
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "small.fs"), m
}
