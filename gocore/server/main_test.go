// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/testenv"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// Tests run real servers (bin built once per test binary) on real mounts.
func TestMain(m *testing.M) {
	// in-process tests log through glog, which otherwise writes files into $TMPDIR
	flag.Set("logtostderr", "true")
	code := wcfstest.Run(m)
	testdb.RemoveGenerated()
	os.Exit(code)
}

// smallFS returns a private copy of the shared genuine-ZODB fixture
// small.fs and its manifest (skips when ../shared is absent).
func smallFS(t *testing.T) (zurl string, m *testdb.Manifest) {
	t.Helper()
	dir := testenv.SharedZODB(t)
	m, err := testdb.LoadManifest(filepath.Join(dir, "small.json"))
	if err != nil {
		t.Fatal(err)
	}
	return "file://" + testdb.CopyFS(t, filepath.Join(dir, "small.fs")), m
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func stat(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return &st
}

// wantErrno checks that err is the errno want.
func wantErrno(t *testing.T, what string, err error, want syscall.Errno) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v, want %v", what, err, want)
	}
}

// pread reads n bytes at off (short read allowed).
func pread(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, n)
	k, err := f.ReadAt(buf, off)
	if err != nil && k == n {
		t.Fatal(err)
	}
	if err != nil && err.Error() != "EOF" {
		t.Fatalf("pread %s @%d: %v", path, off, err)
	}
	return buf[:k]
}
