// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package zeotest

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// SharedFixture returns the path of a file of the shared genuine-ZODB
// fixtures (<repo>/../shared/testdata/zodb/<name>), or skips t when the
// shared directory is absent (e.g. on a user's machine).
func SharedFixture(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(RepoDir(), "..", "shared", "testdata", "zodb", name)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("shared genuine-ZODB fixture absent: %v", err)
	}
	return path
}

// CopyFS copies a FileStorage (only the data file: servers rebuild the
// index) into dir and returns the copy's path. Servers write next to their
// FileStorage (lock, index, tmp), and the shared fixtures are read-only.
func CopyFS(t testing.TB, src, dir string) string {
	t.Helper()
	dst := filepath.Join(dir, filepath.Base(src))
	if err := copyFile(src, dst); err != nil {
		t.Fatalf("zeotest: %v", err)
	}
	return dst
}

func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy FileStorage: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("copy FileStorage: %w", err)
	}
	defer func() {
		if cerr := out.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("copy FileStorage %s: %w", dst, cerr)
		}
	}()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("copy FileStorage %s -> %s: %w", src, dst, err)
	}
	return nil
}

// Manifest is the part of a shared fixture's manifest (small.json) that the
// distributed-storage tests check against.
type Manifest struct {
	Head  string `json:"head"` // last tid, 16 hex digits
	Files map[string]struct {
		Oid     string `json:"oid"`
		Blksize int64  `json:"blksize"`
	} `json:"files"`
	Transactions []struct {
		Tid   string `json:"tid"`
		Files map[string]struct {
			Size   int64  `json:"size"`
			Sha256 string `json:"sha256"`
		} `json:"files"`
	} `json:"transactions"`
}

// LoadManifest reads a shared fixture's manifest.
func LoadManifest(t testing.TB, path string) *Manifest {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("zeotest: manifest: %v", err)
	}
	m := &Manifest{}
	if err := json.Unmarshal(data, m); err != nil {
		t.Fatalf("zeotest: manifest %s: %v", path, err)
	}
	return m
}
