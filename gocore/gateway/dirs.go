// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

// The root of mountpoints and the mountpoint directories: see "Security of
// the mount root" in the package doc.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

const rootMode = 0o777 | unix.S_ISVTX // shared by all users, like /tmp

// ensureRoot makes sure the root of mountpoints is a directory where this
// process can create its mountpoints and where nobody else can rename,
// replace or remove them:
//
//   - every directory above it (the path as given and with its symlinks
//     resolved) is owned by root or by us and, if others may write to it,
//     sticky;
//   - the root itself is created sticky and world-writable (1777, whatever
//     the umask); an existing one must be a directory (not a symlink) owned
//     by root or by us; if we own it its mode is repaired;
//   - one owned by another user is taken over by root (owner root, mode
//     1777: that user keeps its own entries but can no longer rename ours)
//     and refused by everybody else: the owner of a directory may rename
//     any entry in it, sticky bit or not, so it could replace our
//     mountpoint by a symlink between its creation and the mount.
//
// Paths under a root that passes these checks can be used as paths: nobody
// but root and us can change what they name.
func (g *Gateway) ensureRoot() error {
	root := g.root()
	if err := checkAncestors(root); err != nil {
		return err
	}
	euid := os.Geteuid()
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
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		var st unix.Stat_t
		if unix.Lstat(root, &st) == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return fmt.Errorf("%s is not a directory (mode %o): refusing to use it", root, st.Mode)
		}
		return &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: root, Err: err}
	}
	mode := st.Mode & 0o7777
	switch {
	case int(st.Uid) == euid:
		if mode != rootMode {
			if err := unix.Fchmod(fd, rootMode); err != nil {
				return fmt.Errorf("chmod %s: %w", root, err)
			}
		}
		return nil
	case euid == 0:
		// take it over: through the descriptor, then check that it is still
		// the directory at the path (its owner could rename it until now)
		if err := unix.Fchown(fd, 0, 0); err != nil {
			return fmt.Errorf("chown %s: %w", root, err)
		}
		if err := unix.Fchmod(fd, rootMode); err != nil {
			return fmt.Errorf("chmod %s: %w", root, err)
		}
		var cur unix.Stat_t
		if err := unix.Lstat(root, &cur); err != nil || cur.Dev != st.Dev || cur.Ino != st.Ino {
			return fmt.Errorf("%s was replaced while root took it over from uid %d: refusing to use it", root, st.Uid)
		}
		g.warnf("wcfs: %s belonged to uid %d (mode %o): taken over (owner root, mode %o), "+
			"since its owner could rename the mountpoints of others in it", root, st.Uid, mode, rootMode)
		return nil
	case st.Uid != 0:
		return fmt.Errorf("%s belongs to uid %d, not to root or to uid %d: refusing to use it "+
			"(its owner could replace our mountpoints); have it removed, or created by root with mode 1777", root, st.Uid, euid)
	case mode&0o022 != 0 && mode&unix.S_ISVTX == 0:
		return fmt.Errorf("%s (uid %d, mode %o) is writable by others but not sticky: refusing to use it", root, st.Uid, mode)
	}
	if err := unix.Faccessat(fd, ".", unix.W_OK|unix.X_OK, unix.AT_EACCESS); err != nil {
		return fmt.Errorf("%s (uid %d, mode %o): cannot create mountpoints there: %w", root, st.Uid, mode, err)
	}
	return nil
}

// checkAncestors checks the directories above path (as given, and with
// symlinks resolved): each must be owned by root or by us and, if others may
// write to it, sticky, so that nobody else can rename or replace anything on
// the way to path.
func checkAncestors(path string) error {
	dirs := ancestors(filepath.Dir(filepath.Clean(path)))
	if real, err := filepath.EvalSymlinks(filepath.Dir(path)); err == nil {
		dirs = append(dirs, ancestors(real)...)
	}
	euid := uint32(os.Geteuid())
	for _, d := range dirs {
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // the caller's mkdir will say so
			}
			return &os.PathError{Op: "stat", Path: d, Err: err}
		}
		if st.Uid != 0 && st.Uid != euid {
			return fmt.Errorf("%s: %s belongs to uid %d, not to root or to uid %d: refusing to use it "+
				"(its owner could replace what is in it)", path, d, st.Uid, euid)
		}
		if st.Mode&0o022 != 0 && st.Mode&unix.S_ISVTX == 0 {
			return fmt.Errorf("%s: %s (mode %o) is writable by others but not sticky: refusing to use it",
				path, d, st.Mode&0o7777)
		}
	}
	return nil
}

// ancestors returns dir and the directories above it, up to "/".
func ancestors(dir string) []string {
	var v []string
	for {
		v = append(v, dir)
		up := filepath.Dir(dir)
		if up == dir || !strings.HasPrefix(dir, "/") {
			return v
		}
		dir = up
	}
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
