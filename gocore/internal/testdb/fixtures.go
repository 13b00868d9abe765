// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package testdb

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"wendelin.dev/wcfs/gocore/internal/testenv"
)

// SmallFixture returns the manifest of ../shared/testdata/zodb/small.fs (a
// database of five files over nine transactions written by genuine ZODB)
// and the path of that database, or skips the test when it is absent.
func SmallFixture(t testing.TB) (*Manifest, string) {
	t.Helper()
	dir := testenv.SharedZODB(t)
	m, err := LoadManifest(filepath.Join(dir, "small.json"))
	if err != nil {
		t.Fatal(err)
	}
	return m, filepath.Join(dir, "small.fs")
}

// CopyFS copies a FileStorage (and its .index, if any) into a new temporary
// directory and returns the copy's path: tests open fixtures through the
// toolkit without touching the originals.
func CopyFS(t testing.TB, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	for _, ext := range []string{"", ".index"} {
		data, err := os.ReadFile(path + ext)
		if err != nil {
			if ext != "" && errors.Is(err, os.ErrNotExist) {
				continue
			}
			t.Fatalf("testdb: copy %s: %v", path, err)
		}
		if err := os.WriteFile(dst+ext, data, 0o644); err != nil {
			t.Fatalf("testdb: copy %s: %v", path, err)
		}
	}
	return dst
}
