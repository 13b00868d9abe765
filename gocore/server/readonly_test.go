// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// Every mutating operation on every kind of node of a live mount is refused
// (EPERM: readonly.go), and the mount is unchanged and works afterwards; in
// particular `rm -rf` of the whole mount fails and removes nothing.
func TestReadOnly(t *testing.T) {
	t.Parallel()
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	foid := db.CreateFile("f", 4096, testdb.ZBlk0)
	db.WriteBlock("f", 1, bytes.Repeat([]byte("v1"), 2048))
	at1 := db.Commit("at1")
	db.WriteBlock("f", 1, bytes.Repeat([]byte("v2"), 2048))
	at2 := db.Commit("at2")
	// @<rev>/ views stay while the test runs (their inode numbers are compared)
	srv := wcfstest.Start(t, db.ZURL(), "-debug", "-revgc.idle=1h")
	f0 := "head/bigfile/" + foid.String()
	rev := "@" + at1.String()
	revf0 := rev + "/bigfile/" + foid.String()

	// the nodes, by kind; lookups make the bigfile and @rev nodes appear
	dirs := []string{"", "head", "head/bigfile", ".wcfs", ".wcfs/debug", rev, rev + "/bigfile"}
	files := []string{"head/at", "head/watch", f0, ".wcfs/zurl", ".wcfs/pintimeout",
		".wcfs/stats", ".wcfs/zstor", ".wcfs/debug/zhead", revf0}
	treeState(t, srv, dirs, files) // looks them up: listed from now on
	before := treeState(t, srv, dirs, files)

	// new names: a lookup of a bad name in / (not @<rev>) and in bigfile/
	// (not an oid) fails with EINVAL before the kernel asks to create it
	newName := func(dir string) (string, syscall.Errno) {
		if dir == "." {
			dir = ""
		}
		if dir == "" || strings.HasSuffix(dir, "bigfile") {
			return filepath.Join(dir, "new"), syscall.EINVAL
		}
		return filepath.Join(dir, "new"), syscall.EPERM
	}
	try := func(what string, want syscall.Errno, op func() error) {
		t.Helper()
		err := retryEINTR(op) // a signal (Go's preemption) may interrupt the wait for the server
		// the kernel refuses a link to a node with no link count itself
		if !errors.Is(err, want) && !(strings.HasPrefix(what, "link ") && errors.Is(err, syscall.ENOENT)) {
			t.Errorf("%s: got %v, want %v", what, err, want)
		}
	}
	p := srv.Path

	for _, d := range dirs {
		n, want := newName(d)
		try("mkdir "+n, want, func() error { return unix.Mkdir(p(n), 0o755) })
		try("mknod "+n, want, func() error { return unix.Mknod(p(n), unix.S_IFREG|0o644, 0) })
		try("mkfifo "+n, want, func() error { return unix.Mkfifo(p(n), 0o644) })
		try("create "+n, want, func() error {
			fd, err := unix.Open(p(n), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
			if err == nil {
				unix.Close(fd)
			}
			return err
		})
		try("symlink "+n, want, func() error { return unix.Symlink("head/at", p(n)) })
		try("link head/at to "+n, want, func() error { return unix.Link(p("head/at"), p(n)) })
		// O_TMPFILE needs a dentry of d only: always reaches the server
		try("O_TMPFILE in "+d, syscall.EPERM, func() error {
			fd, err := unix.Open(p(d), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
			if err == nil {
				unix.Close(fd)
			}
			return err
		})
		if d != "" {
			try("rmdir "+d, syscall.EPERM, func() error { return unix.Rmdir(p(d)) })
			try("unlink "+d, syscall.EISDIR, func() error { return unix.Unlink(p(d)) })
			sibling, want := newName(filepath.Dir(d))
			try("rename "+d, want, func() error { return unix.Rename(p(d), p(sibling)) })
		}
		try("chmod "+d, syscall.EPERM, func() error { return unix.Chmod(p(d), 0o777) })
		try("chown "+d, syscall.EPERM, func() error { return unix.Chown(p(d), 1, 1) })
		try("utimes "+d, syscall.EPERM, func() error { return unix.UtimesNano(p(d), make([]unix.Timespec, 2)) })
		try("touch "+d, syscall.EPERM, func() error { return unix.UtimesNanoAt(unix.AT_FDCWD, p(d), nil, 0) })
		try("setxattr "+d, syscall.EOPNOTSUPP, func() error { return unix.Setxattr(p(d), "user.x", []byte("1"), 0) })
		try("removexattr "+d, syscall.EOPNOTSUPP, func() error { return unix.Removexattr(p(d), "user.x") })
	}
	// renames over an existing node and exchanges reach the server in every directory
	for _, pair := range [][2]string{{"head", ".wcfs"}, {"head/at", "head/watch"},
		{".wcfs/zurl", ".wcfs/stats"}, {".wcfs/zurl", ".wcfs/debug/zhead"}, {".wcfs/debug", "head/bigfile"}, {rev, "head"}} {
		try("rename "+pair[0]+" over "+pair[1], syscall.EPERM, func() error { return unix.Rename(p(pair[0]), p(pair[1])) })
		try("exchange "+pair[0]+" "+pair[1], syscall.EPERM, func() error {
			return unix.Renameat2(unix.AT_FDCWD, p(pair[0]), unix.AT_FDCWD, p(pair[1]), unix.RENAME_EXCHANGE)
		})
	}

	for _, f := range files {
		n, want := newName(filepath.Dir(f))
		try("unlink "+f, syscall.EPERM, func() error { return unix.Unlink(p(f)) })
		try("rmdir "+f, syscall.ENOTDIR, func() error { return unix.Rmdir(p(f)) })
		try("rename "+f, want, func() error { return unix.Rename(p(f), p(n)) })
		try("link "+f, want, func() error { return unix.Link(p(f), p(n)) })
		try("chmod "+f, syscall.EPERM, func() error { return unix.Chmod(p(f), 0o777) })
		try("chown "+f, syscall.EPERM, func() error { return unix.Chown(p(f), 1, 1) })
		try("truncate "+f, syscall.EPERM, func() error { return unix.Truncate(p(f), 0) })
		try("utimes "+f, syscall.EPERM, func() error { return unix.UtimesNano(p(f), make([]unix.Timespec, 2)) })
		try("touch "+f, syscall.EPERM, func() error { return unix.UtimesNanoAt(unix.AT_FDCWD, p(f), nil, 0) })
		try("setxattr "+f, syscall.EOPNOTSUPP, func() error { return unix.Setxattr(p(f), "user.x", []byte("1"), 0) })
		try("removexattr "+f, syscall.EOPNOTSUPP, func() error { return unix.Removexattr(p(f), "user.x") })
		try("open O_TRUNC "+f, syscall.EPERM, func() error { return openClose(p(f), unix.O_RDONLY|unix.O_TRUNC) })

		// head/watch and .wcfs/debug/zhead are streams opened for writing
		// by design; other files refuse write opens
		stream := f == "head/watch" || f == ".wcfs/debug/zhead"
		if !stream {
			for _, flags := range []int{unix.O_WRONLY, unix.O_RDWR, unix.O_WRONLY | unix.O_APPEND, unix.O_RDWR | unix.O_CREAT} {
				try(fmt.Sprintf("open %s flags %#o", f, flags), syscall.EPERM, func() error { return openClose(p(f), flags) })
			}
		}
		// operations on an open file
		flags := unix.O_RDONLY
		if stream {
			flags = unix.O_RDWR
		}
		fd, err := unix.Open(p(f), flags|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatalf("open %s: %v", f, err)
		}
		try("fchmod "+f, syscall.EPERM, func() error { return unix.Fchmod(fd, 0o777) })
		try("fchown "+f, syscall.EPERM, func() error { return unix.Fchown(fd, 1, 1) })
		try("futimes "+f, syscall.EPERM, func() error { return unix.Futimes(fd, make([]unix.Timeval, 2)) })
		try("fsetxattr "+f, syscall.EOPNOTSUPP, func() error { return unix.Fsetxattr(fd, "user.x", []byte("1"), 0) })
		if stream {
			try("ftruncate "+f, syscall.EPERM, func() error { return unix.Ftruncate(fd, 0) })
			try("fallocate "+f, syscall.EPERM, func() error { return unix.Fallocate(fd, 0, 0, 4096) })
			try("punch hole "+f, syscall.EPERM, func() error {
				return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096)
			})
			try("copy_file_range head/at to "+f, syscall.EPERM, func() error {
				src, err := unix.Open(p("head/at"), unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					return err
				}
				defer unix.Close(src)
				zero := int64(0)
				_, err = unix.CopyFileRange(src, &zero, fd, nil, 16, 0)
				return err
			})
		}
		unix.Close(fd)
	}

	// rm -rf of the whole mount fails, as a user runs it
	rm := exec.Command("sh", "-c", `rm -rf "$1"/* "$1"/.wcfs "$1"/@*`, "sh", srv.Mnt)
	out, err := rm.CombinedOutput()
	if err == nil {
		t.Errorf("rm -rf of the mount succeeded:\n%s", out)
	} else if !strings.Contains(string(out), "Operation not permitted") {
		t.Errorf("rm -rf of the mount: %v:\n%s", err, out)
	}

	// nothing changed, everything works
	after := treeState(t, srv, dirs, files)
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if before[k] != after[k] {
			t.Errorf("%s: was %q, now %q", k, before[k], after[k])
		}
	}
	wl := openLink(t, srv)
	if err := wl.watch(foid, at2); err != nil {
		t.Errorf("head/watch after the refusals: %v", err)
	}
	wl.close()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
}

// treeState describes what a change to the tree would alter: the listing of
// every directory, the type, mode, size and inode number of every node, the
// content of files (a hash for bigfiles; not .wcfs/stats, which counts
// lookups, nor the streams).
func treeState(t *testing.T, srv *wcfstest.Server, dirs, files []string) map[string]string {
	t.Helper()
	state := make(map[string]string)
	for _, d := range dirs {
		ents, err := os.ReadDir(srv.Path(d))
		if err != nil {
			t.Fatalf("readdir %s: %v", d, err)
		}
		state["/"+d+" lists"] = dirNames(ents)
	}
	for _, path := range append(dirs, files...) {
		var st unix.Stat_t
		if err := unix.Lstat(srv.Path(path), &st); err != nil {
			t.Fatalf("stat %s: %v", path, err)
		}
		state["/"+path] = fmt.Sprintf("mode %o size %d ino %d uid %d", st.Mode, st.Size, st.Ino, st.Uid)
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFDIR, path == "head/watch", path == ".wcfs/debug/zhead",
			path == ".wcfs/stats":
		case strings.Contains(path, "/bigfile/"):
			state["/"+path+" sha256"] = fmt.Sprintf("%x", sha256.Sum256(readFile(t, srv.Path(path))))
		default:
			state["/"+path+" content"] = string(readFile(t, srv.Path(path)))
		}
	}
	return state
}

// openClose opens path with flags and closes it.
func openClose(path string, flags int) error {
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(fd)
	}
	return err
}
