// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package startlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/testuser"
)

// TryAcquire fails with ErrBusy while the lock is held and succeeds once it
// is released; the lock file exists only while held.
func TestTryAcquire(t *testing.T) {
	path := Path(filepath.Join(t.TempDir(), "mnt"))
	lk, err := Acquire(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TryAcquire(path); !errors.Is(err, ErrBusy) {
		t.Fatalf("TryAcquire of a held lock: %v, want ErrBusy", err)
	}
	var holders []int
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := Acquire(ctx, path, func(h []int) { holders = h }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Acquire of a held lock with a deadline: %v", err)
	}
	if len(holders) != 1 || holders[0] != os.Getpid() {
		t.Errorf("holders of the busy lock: %v, want [%d]", holders, os.Getpid())
	}
	lk.Unlock()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file after Unlock: %v", err)
	}
	lk, err = TryAcquire(path)
	if err != nil {
		t.Fatalf("TryAcquire of a free lock: %v", err)
	}
	lk.Unlock()
}

// A waiter that locked a file its holder unlinked meanwhile starts over on
// the file now at the path: two holders never coexist.
func TestAcquireAfterUnlink(t *testing.T) {
	path := Path(filepath.Join(t.TempDir(), "mnt"))
	lk, err := Acquire(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Lock)
	go func() {
		l, err := Acquire(context.Background(), path, nil)
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	time.Sleep(20 * time.Millisecond) // the waiter blocks in flock on the old file
	lk.Unlock()
	l2 := <-got
	if l2 == nil {
		return
	}
	if _, err := TryAcquire(path); !errors.Is(err, ErrBusy) {
		t.Errorf("lock held by the waiter, TryAcquire: %v, want ErrBusy", err)
	}
	l2.Unlock()
}

// A symlink at the lock path is never followed: it is removed (we own the
// directory) and replaced by a lock file.
func TestReplacesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := Path(filepath.Join(dir, "mnt"))
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	lk, err := TryAcquire(path)
	if err != nil {
		t.Fatalf("lock over a symlink: %v", err)
	}
	if len(lk.Removed) != 1 || !strings.Contains(lk.Removed[0], "a symlink") {
		t.Errorf("Removed: %q", lk.Removed)
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("lock file: %v, mode %o", err, st.Mode)
	}
	lk.Unlock()
	if data, err := os.ReadFile(target); err != nil || string(data) != "keep" {
		t.Errorf("the symlink's target: %q, %v", data, err)
	}
}

// sharedDir returns a new directory like the root of mountpoints: mode 1777,
// owned by uid.
func sharedDir(t *testing.T, uid int) string {
	dir, err := os.MkdirTemp("", "startlock-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, -1); err != nil {
		t.Fatal(err)
	}
	return dir
}

// A file another user put at root's lock path (in a shared directory, as
// /dev/shm/wcfs) does not keep root from taking the lock: it is removed and
// replaced, and Removed says so.
func TestForeignFileRemovedByRoot(t *testing.T) {
	uid, _ := testuser.Get(t)
	dir := sharedDir(t, 0)
	for _, mk := range [][]string{{"touch"}, {"mkdir"}, {"mkfifo"}, {"ln", "-s", "/etc/passwd"}} {
		path := Path(filepath.Join(dir, mk[0]))
		if out, err := testuser.Run(t, mk[0], append(mk[1:], path)...); err != nil {
			t.Fatalf("as %s: %s %s: %v %s", testuser.Name, mk, path, err, out)
		}
		lk, err := Acquire(context.Background(), path, nil)
		if err != nil {
			t.Errorf("%s by uid %d at the lock path: %v", mk[0], uid, err)
			continue
		}
		if len(lk.Removed) != 1 || !strings.Contains(lk.Removed[0], fmt.Sprintf("uid %d", uid)) {
			t.Errorf("%s: Removed %q", mk[0], lk.Removed)
		}
		lk.Unlock()
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: lock path after Unlock: %v", mk[0], err)
		}
	}
}

// A user who may not remove the file of another user at its lock path gets
// ErrForeign; the owner of the directory may remove it.
func TestForeignFileOfRoot(t *testing.T) {
	uid, _ := testuser.Get(t)
	self := testuser.Self(t)
	for _, tc := range []struct {
		dirOwner int
		want     string
	}{{0, "ErrForeign"}, {uid, "locked"}} {
		path := Path(filepath.Join(sharedDir(t, tc.dirOwner), "mnt"))
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := testuser.Command(t, self, path)
		cmd.Env = append(os.Environ(), helperEnv+"=acquire")
		out, _ := cmd.CombinedOutput()
		if got := strings.TrimSpace(string(out)); !strings.HasSuffix(got, tc.want) {
			t.Errorf("directory of uid %d, lock file of root: as uid %d: %q, want %s", tc.dirOwner, uid, got, tc.want)
		}
	}
}

const helperEnv = "STARTLOCK_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "acquire" {
		lk, err := TryAcquire(os.Args[1])
		switch {
		case errors.Is(err, ErrForeign):
			fmt.Println(err, "ErrForeign")
		case err != nil:
			fmt.Println(err)
		default:
			fmt.Println(lk.Removed, "locked")
			lk.Unlock()
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
