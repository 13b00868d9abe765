// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

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

// startLock is a held exclusive flock on a lock file (see the package doc).
type startLock struct {
	path string
	f    *os.File
}

// lockStart takes the start lock of mntpt, creating the root if needed.
func (g *Gateway) lockStart(ctx context.Context, mntpt string) (*startLock, error) {
	if err := ensureRoot(g.root()); err != nil {
		return nil, err
	}
	return lockStart(ctx, lockPath(mntpt), g.infof)
}

// lockStart takes the start lock at path, waiting as long as ctx allows.
// log is told once who holds the lock when it is busy.
func lockStart(ctx context.Context, path string, logf func(string, ...any)) (*startLock, error) {
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
		if errors.Is(err, unix.EWOULDBLOCK) {
			if !told && logf != nil {
				logf("waiting for the start lock %s (held by %s)", path, describePids(lockHolders(st.Dev, st.Ino)))
				told = true
			}
			err = flockCtx(ctx, f)
			if err != nil {
				return nil, err // f is closed by flockCtx
			}
		} else if err != nil {
			f.Close()
			return nil, fmt.Errorf("start lock %s: %w", path, err)
		}

		// the previous holder may have unlinked the file we locked
		var cur unix.Stat_t
		if err := unix.Lstat(path, &cur); err == nil && cur.Dev == st.Dev && cur.Ino == st.Ino {
			return &startLock{path, f}, nil
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

// Unlock removes the lock file and releases the lock.
func (l *startLock) Unlock() {
	os.Remove(l.path) // while held: see lockStart for why this is safe
	l.f.Close()
}

// lockHolders returns the pids holding a flock on the file (dev, ino), read
// from /proc/locks.
func lockHolders(dev uint64, ino uint64) []int {
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
