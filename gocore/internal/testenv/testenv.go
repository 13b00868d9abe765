// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package testenv says where the things Go tests need are, and whether they
// can run here: the repository, ../shared beside it (fixtures written by
// genuine ZODB), the Python interpreter of the project's venv and the
// programs beside it (runzeo), the go command, root and FUSE. Every test
// helper and test package finds them here, so that the rules are written once:
//
//   - the repository root is the directory of the go.mod of module
//     wendelin.dev/wcfs: found from this source file (any package's test
//     binary), else upward from the working directory (a build with
//     -trimpath);
//   - the interpreter is $WCFS_PYTHON, else <repo>/.venv/bin/python; the
//     venv's programs are beside it;
//   - what is absent makes the test skip with a message saying what to do
//     (make deps, ../shared is a checkout's sibling), what is broken fails it.
//
// It starts nothing that outlives a call: processes are testproc's,
// wcfstest's and testdb's.
package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// modulePrefix is how the go.mod of the repository begins.
const modulePrefix = "module wendelin.dev/wcfs\n"

// RepoRoot returns the root of the repository (the directory of go.mod).
func RepoRoot() (string, error) {
	// this source file is <repo>/gocore/internal/testenv/testenv.go
	if _, file, _, ok := runtime.Caller(0); ok {
		root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
		if isRepoRoot(root) {
			return root, nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("testenv: repository root: %w", err)
	}
	for {
		if isRepoRoot(dir) {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("testenv: repository root not found (no go.mod of wendelin.dev/wcfs above the working directory)")
		}
		dir = up
	}
}

func isRepoRoot(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	return err == nil && bytes.HasPrefix(data, []byte(modulePrefix))
}

// Repo returns the root of the repository, or fails t.
func Repo(t testing.TB) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// Shared returns ../shared beside the repository, or skips t when it is
// absent (a user's machine, a worktree without a sibling ../shared).
func Shared(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(Repo(t), "..", "shared")
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Skipf("skipping: %s (../shared beside the repository) is absent", dir)
	}
	return dir
}

// SharedZODB returns ../shared/testdata/zodb (databases written by genuine
// ZODB, see its README.md), or skips t when it is absent.
func SharedZODB(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(Shared(t), "testdata", "zodb")
	if _, err := os.Stat(filepath.Join(dir, "small.json")); err != nil {
		t.Skipf("skipping: fixtures of genuine ZODB databases not found: %v", err)
	}
	return dir
}

// LookPython returns the interpreter with genuine ZODB: $WCFS_PYTHON (looked
// up in $PATH when it is a bare name), else <repo>/.venv/bin/python. The
// error says how to get one.
func LookPython() (string, error) {
	if py := os.Getenv("WCFS_PYTHON"); py != "" {
		path, err := exec.LookPath(py)
		if err != nil {
			return "", fmt.Errorf("$WCFS_PYTHON=%s: %w (run `make deps`, or unset it)", py, err)
		}
		return path, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	py := filepath.Join(root, ".venv", "bin", "python")
	if _, err := os.Stat(py); err != nil {
		return "", fmt.Errorf("no Python with genuine ZODB at %s: run `make deps` in %s (or set $WCFS_PYTHON)", py, root)
	}
	return py, nil
}

// Python returns the interpreter with genuine ZODB (see LookPython), or
// skips t when there is none.
func Python(t testing.TB) string {
	t.Helper()
	py, err := LookPython()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	return py
}

// VenvBin returns the path of program name of the venv (beside Python's
// interpreter: runzeo, ...), or skips t when it is not there.
func VenvBin(t testing.TB, name string) string {
	t.Helper()
	path := filepath.Join(filepath.Dir(Python(t)), name)
	if _, err := os.Stat(path); err != nil {
		t.Skipf("skipping: %s of the venv: %v (create the venv with `make deps-venv`, or set $WCFS_PYTHON)", name, err)
	}
	return path
}

// NeedRoot skips t unless it runs as root; why says what needs it.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("skipping: needs root (%s)", why)
	}
}

// NeedFUSE skips t unless it can mount FUSE filesystems the way servers do
// (as root, with mount(2) on /dev/fuse).
func NeedFUSE(t testing.TB) {
	t.Helper()
	NeedRoot(t, "FUSE mounts with mount(2)")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("skipping: no FUSE: %v", err)
	}
}

// NeedGo skips t when there is no go command on $PATH.
func NeedGo(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("skipping: the go command is needed: %v", err)
	}
}

// GoBuild builds package pkg (an import path, or ./dir relative to the
// repository root) into the executable out with `go build`, run in the
// repository root with extra flags (-race, ...) before the package. The
// Go environment is the caller's (make exports go.env's to the tests it
// runs). The error quotes the command's output.
func GoBuild(out, pkg string, flags ...string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	args := append(append([]string{"build", "-o", out}, flags...), pkg)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if data, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, data)
	}
	return nil
}

// Getenv returns the value of environment variable name, or def when it is
// unset or empty (sizes of benchmarks: $WCFS_BENCH_SIZE, ...).
func Getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
