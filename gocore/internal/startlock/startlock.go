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
// mountpoint directory (MakeMountpoint); nobody else touches it (see
// docs/design.md, "Start lock").
//
// # Files of other users
//
// The directory of mountpoints is shared by all users (sticky, like /tmp),
// so anybody can put a file at the lock path of somebody else's mountpoint.
// Such a file (of another uid, or not a regular file: a symlink, a
// directory, a fifo) is never taken for a lock: it is removed, where the
// kernel lets this process remove it (root, or the owner of the
// directory), and replaced by a lock file of ours; the Lock lists what was
// removed (Removed) for the caller to log. Where it may not be removed, the
// error wraps ErrForeign (a stop then goes on without the lock). The removal
// is made only while the file at the path is still the one examined; a
// stranger who deletes its file and one of our processes who creates the
// lock file, both in the instant between that check and the unlink, can
// still make two of our processes believe they hold the lock: the worst
// outcome is a second start that finds the mountpoint busy.
package startlock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
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

	// Removed describes the files of other users found at the path and
	// removed to take the lock (see the package doc).
	Removed []string
}

// ErrBusy is returned by TryAcquire when another process holds the lock.
var ErrBusy = errors.New("start lock busy")

// ErrForeign is wrapped by the error of Acquire and TryAcquire when a file
// that is not a lock of ours is at the lock path and this process may not
// remove it.
var ErrForeign = errors.New("a file of another user is at the start lock's path")

// Acquire takes the lock at path, waiting as long as ctx allows. When the
// lock is busy, waiting (if not nil) is told once which processes hold it
// (pids read from /proc/locks, possibly none).
//
// The lock file must be a regular file of this process's euid, opened
// without following symlinks: anything else at path is removed if this
// process may remove it, else refused (ErrForeign; see the package doc).
func Acquire(ctx context.Context, path string, waiting func(holders []int)) (*Lock, error) {
	return acquire(ctx, path, waiting, true)
}

// TryAcquire takes the lock at path if it is free, else fails with ErrBusy.
func TryAcquire(path string) (*Lock, error) {
	return acquire(context.Background(), path, nil, false)
}

func acquire(ctx context.Context, path string, waiting func([]int), wait bool) (*Lock, error) {
	// a filesystem another user mounted over a file at the path could hang
	// the open: only the mount table is read then
	if infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(path)); err != nil {
		return nil, fmt.Errorf("start lock %s: read mount table: %w", path, err)
	} else if len(infos) > 0 {
		return nil, fmt.Errorf("start lock %s: a %s filesystem is mounted there: %w", path, infos[0].FSType, ErrForeign)
	}
	var removed []string
	for told := false; ; {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			// a symlink (ELOOP), a directory (EISDIR), a socket (ENXIO),
			// a file we may not open (EACCES)...
			var st unix.Stat_t
			if unix.Lstat(path, &st) == nil && !isOurs(&st) {
				what, err := removeForeign(path, &st)
				if err != nil {
					return nil, err
				}
				removed = append(removed, what)
				continue
			}
			return nil, fmt.Errorf("start lock: %w", err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, fmt.Errorf("start lock: %w", err)
		}
		if !isOurs(&st) {
			f.Close()
			what, err := removeForeign(path, &st)
			if err != nil {
				return nil, err
			}
			removed = append(removed, what)
			continue
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
			return &Lock{path: path, f: f, Removed: removed}, nil
		}
		f.Close()
	}
}

// isOurs tells whether st is a lock file of ours: a regular file of our
// euid.
func isOurs(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFREG && int(st.Uid) == os.Geteuid()
}

// removeForeign removes the file st at the lock path, which is not a lock
// of ours, if it is still there and the kernel lets us; it returns what it
// removed, or an error wrapping ErrForeign.
func removeForeign(path string, st *unix.Stat_t) (string, error) {
	what := fmt.Sprintf("%s (uid %d, mode %o)", describeMode(st.Mode), st.Uid, st.Mode&0o7777)
	var cur unix.Stat_t
	if err := unix.Lstat(path, &cur); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return what + ", gone meanwhile", nil
		}
		return "", fmt.Errorf("start lock: %w", &os.PathError{Op: "lstat", Path: path, Err: err})
	}
	if cur.Dev != st.Dev || cur.Ino != st.Ino {
		return what + ", replaced meanwhile", nil // look again
	}
	rm := unix.Unlink
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		rm = unix.Rmdir // only if empty
	}
	if err := rm(path); err != nil && !errors.Is(err, unix.ENOENT) {
		return "", fmt.Errorf("start lock %s: %s is there, not a regular file of uid %d, and cannot be removed (%w): %w",
			path, what, os.Geteuid(), err, ErrForeign)
	}
	return what + " removed", nil
}

func describeMode(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "a regular file"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFIFO:
		return "a fifo"
	case unix.S_IFSOCK:
		return "a socket"
	}
	return "a device"
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

// MakeMountpoint creates the mountpoint directory mntpt (mode 0755), or
// checks that an existing one is an empty directory of ours: not a symlink,
// not another user's. The caller holds the lock of mntpt and made sure that
// nothing is mounted there (so the checks do not touch a FUSE mount).
func MakeMountpoint(mntpt string) error {
	err := os.Mkdir(mntpt, 0o755)
	if err == nil || !errors.Is(err, os.ErrExist) {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(mntpt, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: mntpt, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s exists and is not a directory (mode %o): refusing to mount there", mntpt, st.Mode)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s exists and belongs to uid %d, not to uid %d: refusing to mount there", mntpt, st.Uid, os.Geteuid())
	}
	f, err := os.Open(mntpt)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if len(names) > 0 {
		return fmt.Errorf("%s is not empty (has %q): refusing to mount over it", mntpt, names[0])
	}
	if err != nil && err != io.EOF {
		return err
	}
	return nil
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
