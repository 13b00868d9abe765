// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package startlock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
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

func TestRefusesSymlink(t *testing.T) {
	path := Path(filepath.Join(t.TempDir(), "mnt"))
	if err := os.Symlink("/etc/passwd", path); err != nil {
		t.Fatal(err)
	}
	if _, err := TryAcquire(path); err == nil {
		t.Errorf("lock through a symlink succeeded")
	}
}
