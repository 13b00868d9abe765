// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

const rootMode = 0o777 | unix.S_ISVTX // shared by all users, like /tmp

// ensureRoot makes sure root is a directory where this process can create
// its mountpoints: created sticky and world-writable (mode 1777, whatever
// the umask); an existing one must not be a symlink, must be writable by us
// and, if another user owns it, be sticky (else that user could replace our
// mountpoints); if we own it its mode is repaired.
func ensureRoot(root string) error {
	err := os.Mkdir(root, 0o700)
	if err == nil {
		if err := os.Chmod(root, os.ModeDir|os.ModeSticky|0o777); err != nil {
			return fmt.Errorf("chmod %s: %w", root, err)
		}
		return nil
	}
	if !errors.Is(err, os.ErrExist) {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(root, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: root, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is not a directory (mode %o): refusing to use it", root, st.Mode)
	}
	if int(st.Uid) == os.Geteuid() {
		if st.Mode&0o7777 != rootMode {
			if err := os.Chmod(root, os.ModeDir|os.ModeSticky|0o777); err != nil {
				return fmt.Errorf("chmod %s: %w", root, err)
			}
		}
		return nil
	}
	if st.Mode&unix.S_ISVTX == 0 && st.Mode&0o022 != 0 {
		return fmt.Errorf("%s (uid %d, mode %o) is writable by others but not sticky: refusing to use it", root, st.Uid, st.Mode&0o7777)
	}
	if err := unix.Access(root, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("%s (uid %d, mode %o): cannot create mountpoints there: %w", root, st.Uid, st.Mode&0o7777, err)
	}
	return nil
}

// prepareMountpoint creates the mountpoint directory (mode 0755), or checks
// that an existing one is an empty directory of ours. The caller made sure
// that nothing is mounted there (so the checks do not touch a FUSE mount).
func prepareMountpoint(mntpt string) error {
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

// removeMountpoint removes the mountpoint directory if it is there, ours and
// empty. The caller made sure nothing is mounted there.
func removeMountpoint(mntpt string) error {
	var st unix.Stat_t
	if err := unix.Lstat(mntpt, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return &os.PathError{Op: "lstat", Path: mntpt, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || int(st.Uid) != os.Geteuid() {
		return nil // not ours to remove
	}
	if err := unix.Rmdir(mntpt); err != nil && !errors.Is(err, unix.ENOENT) {
		return &os.PathError{Op: "rmdir", Path: mntpt, Err: err}
	}
	return nil
}
