// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"bytes"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// tidTime is the wall time encoded in tid.
func tidTime(tid zodb.Tid) time.Time { return tid.Time().Time }

func mtime(st *syscall.Stat_t) time.Time { return time.Unix(st.Mtim.Sec, st.Mtim.Nsec) }

// checkMode checks type and permission bits of path.
func checkMode(t *testing.T, path string, want uint32) *syscall.Stat_t {
	t.Helper()
	st := stat(t, path)
	if st.Mode != want {
		t.Errorf("%s: mode %o, want %o", path, st.Mode, want)
	}
	return st
}

// The static part of the tree, the .wcfs/ files, lookup errors, statfs and
// the mount's identity.
func TestTree(t *testing.T) {
	t.Parallel()
	zurl, m := smallFS(t)
	srv := wcfstest.Start(t, zurl, "-debug", "-pintimeout=2.5s")
	head := m.Last().Tid

	// identity in the mount table
	src, fstype, ok := wcfstest.MountEntry(srv.Mnt)
	if !ok || src != zurl || fstype != "fuse.wcfs" {
		t.Errorf("mount entry: source %q fstype %q (mounted %v); want %q fuse.wcfs", src, fstype, ok, zurl)
	}

	// layout, modes, sizes, times
	checkMode(t, srv.Path(), syscall.S_IFDIR|0755)
	st := checkMode(t, srv.Path("head"), syscall.S_IFDIR|0555)
	if !mtime(st).Equal(tidTime(head)) {
		t.Errorf("head/: mtime %s, want %s (head/at)", mtime(st), tidTime(head))
	}
	st = checkMode(t, srv.Path("head", "at"), syscall.S_IFREG|0644)
	if st.Size != 16 {
		t.Errorf("head/at: size %d, want 16", st.Size)
	}
	checkMode(t, srv.Path("head", "watch"), syscall.S_IFREG|0644)
	checkMode(t, srv.Path("head", "bigfile"), syscall.S_IFDIR|0755)
	checkMode(t, srv.Path(".wcfs"), syscall.S_IFDIR|0755)
	checkMode(t, srv.Path(".wcfs", "debug"), syscall.S_IFDIR|0755)
	checkMode(t, srv.Path(".wcfs", "debug", "zhead"), syscall.S_IFREG|0644)

	for path, want := range map[string]string{
		srv.Path("head", "at"):          head.String(),
		srv.Path(".wcfs", "zurl"):       zurl,
		srv.Path(".wcfs", "pintimeout"): "2.5",
		srv.Path(".wcfs", "stats"):      "BigFile\t: 0\nRevHead\t: 0\nZHeadLink\t: 0\nWatchLink\t: 0\nWatch\t: 0\nPinnedBlk\t: 0\npin\t: 0\npinkill\t: 0\n",
	} {
		if got := string(readFile(t, path)); got != want {
			t.Errorf("%s: %q, want %q", path, got, want)
		}
		st := checkMode(t, path, syscall.S_IFREG|0644)
		if st.Size != int64(len(want)) {
			t.Errorf("%s: size %d, want %d", path, st.Size, len(want))
		}
		// reads inside, at and past the end of the content
		if got, w := pread(t, path, 2, 3), want[2:min(5, len(want))]; string(got) != w {
			t.Errorf("%s: pread(2, 3) = %q, want %q", path, got, w)
		}
		for _, off := range []int64{int64(len(want)), int64(len(want)) + 1, 1 << 20, 1 << 40} {
			if got := pread(t, path, off, 10); len(got) != 0 {
				t.Errorf("%s: pread(%d) = %q, want empty", path, off, got)
			}
		}
	}

	names, err := os.ReadDir(srv.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got := dirNames(names); got != ".wcfs head" {
		t.Errorf("/: lists %q, want \".wcfs head\"", got)
	}
	names, _ = os.ReadDir(srv.Path("head"))
	if got := dirNames(names); got != "at bigfile watch" {
		t.Errorf("head/: lists %q", got)
	}

	// lookup errors
	for path, want := range map[string]syscall.Errno{
		srv.Path("xyz"):                                 syscall.EINVAL,
		srv.Path("@xyz"):                                syscall.EINVAL,
		srv.Path("@0123"):                               syscall.EINVAL,
		srv.Path("@" + strings.Repeat("g", 16)):         syscall.EINVAL,
		srv.Path("@0000000000000000"):                   syscall.EINVAL,
		srv.Path("head", "nothing"):                     syscall.ENOENT,
		srv.Path(".wcfs", "nothing"):                    syscall.ENOENT,
		srv.Path("head", "bigfile", "xyz"):              syscall.EINVAL,
		srv.Path("head", "bigfile", "00000000000001"):   syscall.EINVAL,
		srv.Path("head", "bigfile", m.RootOid.String()): syscall.EINVAL, // a PersistentMapping
		srv.Path("head", "bigfile", "00000000deadbeef"): syscall.EINVAL, // no such object
		srv.Path("@"+head.String(), "nothing"):          syscall.ENOENT,
		srv.Path("@"+head.String(), "bigfile", "xyz"):   syscall.EINVAL,
	} {
		_, err := os.Stat(path)
		wantErrno(t, "stat "+path, err, want)
	}

	// head/watch opens (a watch link; watch_test.go tests the protocol)
	wf, err := os.OpenFile(srv.Path("head", "watch"), os.O_RDWR, 0)
	if err != nil {
		t.Errorf("open head/watch: %v", err)
	} else {
		wf.Close()
	}

	// everything is read-only
	_, err = os.OpenFile(srv.Path(".wcfs", "zurl"), os.O_WRONLY, 0)
	wantErrno(t, "open .wcfs/zurl for writing", err, syscall.EPERM)
	f0 := m.Files["zf0"].Oid.String()
	_, err = os.OpenFile(srv.Path("head", "bigfile", f0), os.O_RDWR, 0)
	wantErrno(t, "open head/bigfile/<oid> for writing", err, syscall.EPERM)

	// statfs
	var sfs syscall.Statfs_t
	if err := syscall.Statfs(srv.Path("head", "bigfile"), &sfs); err != nil {
		t.Fatal(err)
	}
	if sfs.Bsize != 2<<20 || sfs.Frsize != 2<<20 || sfs.Namelen != 255 || sfs.Blocks != 0 || sfs.Files != 0 {
		t.Errorf("statfs: %+v", sfs)
	}

	// bigfile nodes and @rev views appear after lookup and are counted
	st = checkMode(t, srv.Path("head", "bigfile", f0), syscall.S_IFREG|0444)
	if st.Blksize != 2<<20 || st.Size != m.Last().Files["zf0"].Size {
		t.Errorf("head/bigfile/%s: blksize %d size %d", f0, st.Blksize, st.Size)
	}
	at1 := m.Transactions[1].Tid
	st = checkMode(t, srv.Path("@"+at1.String()), syscall.S_IFDIR|0555)
	if !mtime(st).Equal(tidTime(at1)) {
		t.Errorf("@%s/: mtime %s, want %s", at1, mtime(st), tidTime(at1))
	}
	names, _ = os.ReadDir(srv.Path("head", "bigfile"))
	if got := dirNames(names); got != f0 {
		t.Errorf("head/bigfile/ lists %q, want %q", got, f0)
	}
	stats := string(readFile(t, srv.Path(".wcfs", "stats")))
	if !strings.HasPrefix(stats, "BigFile\t: 1\nRevHead\t: 2\n") { // @head and @at1
		t.Errorf(".wcfs/stats after lookups:\n%s", stats)
	}
	// a revision before the database existed is a view (of nothing)
	st = checkMode(t, srv.Path("@0000000000000001"), syscall.S_IFDIR|0555)
	_, err = os.Stat(srv.Path("@0000000000000001", "bigfile", f0))
	wantErrno(t, "stat @0000000000000001/bigfile/zf0", err, syscall.EINVAL)

	// a revision in the future: the lookup waits for the database to reach
	// it; an interrupted wait (the process gets a signal) leaves nothing
	future := srv.Path("@" + (head + 1000).String())
	waiter := exec.Command("stat", future)
	if err := waiter.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	waiter.Process.Signal(syscall.SIGINT)
	if err := waiter.Wait(); err == nil {
		t.Errorf("stat of a future @rev succeeded")
	}
	waitStat(t, srv, "RevHead\t: 3\n") // @head, @at1, @0..01: not the future one

	// a file that did not exist yet at rev
	zf4k := m.Files["zf4k"].Oid.String()
	_, err = os.Stat(srv.Path("@"+at1.String(), "bigfile", zf4k))
	wantErrno(t, "stat @at1/bigfile/zf4k (created later)", err, syscall.EINVAL)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains([]byte(srv.Log()), []byte("not @rev")) {
		t.Errorf("log does not warn about the bad root lookup")
	}
}

func dirNames(ents []os.DirEntry) string {
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}
