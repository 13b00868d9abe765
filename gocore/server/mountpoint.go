// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package server

// The mountpoint: never mount over a mount, and leave no directory behind
// after an -autoexit, or, for a server that made its directory
// (-mntpt.create), after any end.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	log "github.com/golang/glog"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/startlock"
)

// checkNotMounted fails if the mount table shows a mount at mnt (an
// absolute path): two servers must never stack on one mountpoint, and
// nothing else may be hidden under a wcfs mount. Only the mount table is
// read (a hung FUSE mount there must not hang the server's start); the path
// is also checked with the symlinks of its parent directories resolved.
func checkNotMounted(mnt string) error {
	paths := []string{mnt}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(mnt)); err == nil {
		if p := filepath.Join(dir, filepath.Base(mnt)); p != mnt {
			paths = append(paths, p)
		}
	}
	for _, p := range paths {
		infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(p))
		if err != nil {
			return fmt.Errorf("mountpoint %s: read mount table: %w", mnt, err)
		}
		if len(infos) > 0 {
			top := infos[len(infos)-1]
			return fmt.Errorf("mountpoint %s: already mounted (%s, source %q, mount %d): refusing to mount over it",
				mnt, top.FSType, top.Source, top.ID)
		}
	}
	return nil
}

// startLockWait bounds the wait for the start lock before removing the
// mountpoint directory.
const startLockWait = time.Second

// cleanupSelfUnmounted runs when a server started with -autoexit (by the
// gateway, on a directory the gateway made) unmounted itself: idle, or
// because serving failed. It removes the empty mountpoint directory and,
// when the server's stderr is the gateway's log of it (<mountpoint>.log)
// and removeLog is set (an exit without error), that log too: the log of an
// error exit stays, it explains the error.
//
// Starters create and reuse the directory under the start lock of the
// mountpoint (gocore/internal/startlock), so this happens under it too:
// if the lock stays busy for startLockWait, a starter or a stopper holds it
// and takes care of the directory; it is left alone. Under the lock the
// directory is removed only if nothing is mounted there (rmdir fails on a
// non-empty directory anyway).
func (s *Server) cleanupSelfUnmounted(removeLog bool) {
	removeMountpoint(s.opt.Mountpoint, removeLog)
}

// removeMountpoint is cleanupSelfUnmounted of the mountpoint mnt.
func removeMountpoint(mnt string, removeLog bool) {
	if _, err := os.Lstat(mnt); errors.Is(err, os.ErrNotExist) {
		return // removed already (-autoexit and -mntpt.create)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startLockWait)
	defer cancel()
	lk, err := startlock.Acquire(ctx, startlock.Path(mnt), nil)
	if err != nil {
		log.Infof("%s: mountpoint directory left in place: %s (a starter or stopper takes care of it)", mnt, err)
		return
	}
	defer lk.Unlock()
	if removeLog {
		removeOwnLog(mnt + ".log")
	}
	if err := checkNotMounted(mnt); err != nil {
		log.Infof("%s: mountpoint directory left in place: %s", mnt, err)
		return
	}
	if err := unix.Rmdir(mnt); err != nil && !errors.Is(err, unix.ENOENT) {
		log.Infof("%s: mountpoint directory left in place: rmdir: %s", mnt, err)
		return
	}
	log.Infof("%s: mountpoint directory removed", mnt)
}

// OwnMountpoint is the mountpoint directory of a server that creates it
// and removes it when it ends (wcfs -mntpt.create, as `python -m wcfs serve`
// runs it: whatever ends the server, a bad zurl, a missing database,
// Ctrl-C, leaves no directory behind).
type OwnMountpoint struct {
	path string
	lk   *startlock.Lock // held from the creation until the mount serves
}

// CreateMountpoint creates the directory mnt (absolute) under its start
// lock, or takes an empty one of ours, and keeps the lock until Serving or
// Remove: the directory is created, mounted over or removed by the lock's
// holder only (gocore/internal/startlock).
func CreateMountpoint(ctx context.Context, mnt string) (*OwnMountpoint, error) {
	lk, err := startlock.Acquire(ctx, startlock.Path(mnt), nil)
	if err != nil {
		return nil, fmt.Errorf("mountpoint %s: %w", mnt, err)
	}
	for _, what := range lk.Removed {
		log.Warningf("start lock %s: not a lock of ours: %s", lk.Path(), what)
	}
	if err := checkNotMounted(mnt); err != nil {
		lk.Unlock()
		return nil, err
	}
	if err := startlock.MakeMountpoint(mnt); err != nil {
		lk.Unlock()
		return nil, fmt.Errorf("mountpoint: %w", err)
	}
	return &OwnMountpoint{path: mnt, lk: lk}, nil
}

// Serving releases the start lock once the mount serves.
func (m *OwnMountpoint) Serving() {
	if m.lk != nil {
		m.lk.Unlock()
		m.lk = nil
	}
}

// Remove removes the directory when the server ends (under the start lock,
// as after an -autoexit), unless something is mounted there.
func (m *OwnMountpoint) Remove() {
	if m.lk == nil {
		removeMountpoint(m.path, false)
		return
	}
	defer m.Serving()
	if err := checkNotMounted(m.path); err != nil {
		log.Infof("%s: mountpoint directory left in place: %s", m.path, err)
		return
	}
	if err := unix.Rmdir(m.path); err != nil && !errors.Is(err, unix.ENOENT) {
		log.Infof("%s: mountpoint directory left in place: rmdir: %s", m.path, err)
	}
}

// removeOwnLog removes path if it is the file this process's stderr writes to.
func removeOwnLog(path string) {
	var self, st unix.Stat_t
	if unix.Fstat(int(os.Stderr.Fd()), &self) != nil || unix.Lstat(path, &st) != nil {
		return
	}
	if self.Dev == st.Dev && self.Ino == st.Ino {
		os.Remove(path)
	}
}
