// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The root is the repository's from any working directory.
func TestRepoRoot(t *testing.T) {
	t.Chdir(t.TempDir())
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "gocore", "internal", "testenv", "testenv.go")); err != nil {
		t.Errorf("root %s: %v", root, err)
	}
	if !isRepoRoot(root) {
		t.Errorf("root %s: no go.mod of %q", root, modulePrefix)
	}
	if isRepoRoot(filepath.Join(root, "gocore")) {
		t.Errorf("gocore/ taken for the root")
	}
}

// $WCFS_PYTHON wins, looked up in $PATH; one that does not exist is an error
// naming it, not a silent fallback to the venv.
func TestLookPython(t *testing.T) {
	t.Setenv("WCFS_PYTHON", "sh")
	py, err := LookPython()
	if err != nil || !filepath.IsAbs(py) || filepath.Base(py) != "sh" {
		t.Errorf("WCFS_PYTHON=sh: %q, %v; want the absolute path of sh", py, err)
	}
	missing := filepath.Join(t.TempDir(), "python")
	t.Setenv("WCFS_PYTHON", missing)
	if _, err := LookPython(); err == nil || !strings.Contains(err.Error(), "$WCFS_PYTHON="+missing) {
		t.Errorf("WCFS_PYTHON=%s: %v; want an error naming it", missing, err)
	}
}

// A failed build says which command failed and why.
func TestGoBuildError(t *testing.T) {
	NeedGo(t)
	err := GoBuild(filepath.Join(t.TempDir(), "x"), "./gocore/internal/testenv/nonexistent")
	if err == nil || !strings.Contains(err.Error(), "go build -o ") || !strings.Contains(err.Error(), "nonexistent") {
		t.Errorf("build of a missing package: %v", err)
	}
}

func TestGetenv(t *testing.T) {
	t.Setenv("WCFS_TESTENV_X", "")
	if got := Getenv("WCFS_TESTENV_X", "def"); got != "def" {
		t.Errorf("empty: %q", got)
	}
	t.Setenv("WCFS_TESTENV_X", "v")
	if got := Getenv("WCFS_TESTENV_X", "def"); got != "v" {
		t.Errorf("set: %q", got)
	}
}
