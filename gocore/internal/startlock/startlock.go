// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package startlock is the start lock of a WCFS mountpoint, shared by the
// gateway (which starts, cleans and stops servers) and the server (which
// removes its mountpoint directory after unmounting itself).
//
// The lock is an exclusive flock(2) on the file Path(mntpt) = mntpt+".lock",
// beside the mountpoint (outside the mount, so that taking it never touches
// a FUSE filesystem). The file exists only while the lock is held: the holder
// unlinks it before releasing, and a locker checks, once it holds the flock,
// that the file it locked is still the one at the path (else the previous
// holder unlinked it meanwhile, and it starts over). So nothing is left on
// disk and two processes can never both believe they hold the lock.
//
// Whoever holds the lock may create, mount over, unmount and remove the
// mountpoint directory; nobody else touches it (see docs/design.md, "Start
// lock").
package startlock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Path returns the lock file of the mountpoint mntpt.
func Path(mntpt string) string {
	return mntpt + ".lock"
}

// Lock is a held start lock.
type Lock struct {
	path string
	f    *os.File
}

// ErrBusy is returned by TryAcquire when another process holds the lock.
var ErrBusy = errors.New("start lock busy")

// Acquire takes the lock at path, waiting as long as ctx allows. When the
// lock is busy, waiting (if not nil) is told once which processes hold it
// (pids read from /proc/locks, possibly none).
//
// The lock file must be a regular file of this process's euid, opened
// without following symlinks: anything else at path is refused.
func Acquire(ctx context.Context, path string, waiting func(holders []int)) (*Lock, error) {
	return acquire(ctx, path, waiting, true)
}

// TryAcquire takes the lock at path if it is free, else fails with ErrBusy.
func TryAcquire(path string) (*Lock, error) {
	return acquire(context.Background(), path, nil, false)
}

func acquire(ctx context.Context, path string, waiting func([]int), wait bool) (*Lock, error) {
	for told := false; ; {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return nil, fmt.Errorf("start lock: %w", err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, fmt.Errorf("start lock: %w", err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
			f.Close()
			return nil, fmt.Errorf("start lock %s: not a regular file of uid %d (uid %d, mode %o): refusing to use it",
				path, os.Geteuid(), st.Uid, st.Mode)
		}

		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case errors.Is(err, unix.EWOULDBLOCK) && !wait:
			f.Close()
			return nil, fmt.Errorf("%s: %w", path, ErrBusy)
		case errors.Is(err, unix.EWOULDBLOCK):
			if !told && waiting != nil {
				waiting(Holders(st.Dev, st.Ino))
				told = true
			}
			if err := flockCtx(ctx, f); err != nil {
				return nil, err // f is closed by flockCtx
			}
		case err != nil:
			f.Close()
			return nil, fmt.Errorf("start lock %s: %w", path, err)
		}

		// the previous holder may have unlinked the file we locked
		var cur unix.Stat_t
		if err := unix.Lstat(path, &cur); err == nil && cur.Dev == st.Dev && cur.Ino == st.Ino {
			return &Lock{path, f}, nil
		}
		f.Close()
	}
}

// flockCtx waits for LOCK_EX on f until ctx is done. On error f is closed,
// possibly later: a flock call cannot be interrupted, so it is left to
// finish in its goroutine, which then closes f and so releases the lock.
func flockCtx(ctx context.Context, f *os.File) error {
	done := make(chan error, 1)
	go func() { done <- unix.Flock(int(f.Fd()), unix.LOCK_EX) }()
	select {
	case err := <-done:
		if err != nil {
			f.Close()
			return fmt.Errorf("start lock: %w", err)
		}
		return nil
	case <-ctx.Done():
		go func() {
			<-done
			f.Close()
		}()
		return fmt.Errorf("waiting for the start lock: %w", ctx.Err())
	}
}

// Path returns the path of the lock file.
func (l *Lock) Path() string { return l.path }

// Unlock removes the lock file and releases the lock.
func (l *Lock) Unlock() {
	os.Remove(l.path) // while held: see the package doc for why this is safe
	l.f.Close()
}

// Holders returns the pids holding a flock on the file (dev, ino), read
// from /proc/locks.
func Holders(dev uint64, ino uint64) []int {
	f, err := os.Open("/proc/locks")
	if err != nil {
		return nil
	}
	defer f.Close()
	want := fmt.Sprintf("%02x:%02x:%d", unix.Major(dev), unix.Minor(dev), ino)
	var pids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF
		fv := strings.Fields(sc.Text())
		if len(fv) >= 6 && fv[1] == "FLOCK" && fv[5] == want {
			if pid, err := strconv.Atoi(fv[4]); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
