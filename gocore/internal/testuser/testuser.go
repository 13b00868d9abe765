// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package testuser gives tests run as root a second, unprivileged user
// ("wcfs-test", created with useradd on first use, idempotently), to play
// another user of a shared directory: a stranger who creates files where
// root works, or a user without root's rights.
//
//	uid, gid := testuser.Get(t) // skips unless root
//	cmd := testuser.Command(t, "mkdir", dir)
//	self := testuser.Self(t)    // the test binary, executable by the user
package testuser

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"wendelin.dev/wcfs/gocore/internal/testenv"
)

// Name is the login of the test user.
const Name = "wcfs-test"

// Get returns the uid and gid of the test user, creating the user if it does
// not exist. It skips the test unless it runs as root.
func Get(t testing.TB) (uid, gid int) {
	t.Helper()
	testenv.NeedRoot(t, "to act as a second user")
	var lastErr error
	for try := 0; try < 20; try++ {
		if u, err := user.Lookup(Name); err == nil {
			uid, err1 := strconv.Atoi(u.Uid)
			gid, err2 := strconv.Atoi(u.Gid)
			if err1 != nil || err2 != nil {
				t.Fatalf("user %s: uid %q gid %q", Name, u.Uid, u.Gid)
			}
			return uid, gid
		}
		// concurrent test binaries may run useradd at once: one creates
		// the user, the others fail to lock /etc/passwd or find it exists
		out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", Name).CombinedOutput()
		if err == nil {
			continue
		}
		lastErr = fmt.Errorf("useradd %s: %w: %s", Name, err, strings.TrimSpace(string(out)))
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("cannot create the test user: %v", lastErr)
	return 0, 0
}

// SysProcAttr returns the attributes that run a process as the test user
// (no supplementary groups).
func SysProcAttr(t testing.TB) *syscall.SysProcAttr {
	t.Helper()
	uid, gid := Get(t)
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
}

// Command returns a command that runs name with args as the test user, with
// cwd "/" (the caller's may not be accessible to the user).
func Command(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = SysProcAttr(t)
	cmd.Dir = "/"
	return cmd
}

// Run runs name with args as the test user and returns its combined
// output and error.
func Run(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	out, err := Command(t, name, args...).CombinedOutput()
	return string(out), err
}

// Self returns a copy of the running test binary that the test user can
// execute (the go command builds it in a directory of mode 0700). It is
// removed when the test ends.
func Self(t testing.TB) string {
	t.Helper()
	Get(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return Copy(t, self)
}

// Copy returns a copy of the executable path that the test user can
// execute, in a directory removed when the test ends.
func Copy(t testing.TB, path string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wcfs-testuser-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(path))
	if err := copyFile(dst, path); err != nil {
		t.Fatal(err)
	}
	return dst
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
