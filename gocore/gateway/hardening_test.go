// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

// What an adversarial trial and a first run on a fresh machine found
// (issue 15): the root of mountpoints shared with other users, descriptors
// of the caller, relative zurls, files of strangers at lock paths, errors a
// user can act on, leftovers.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/startlock"
	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/testuser"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
	"wendelin.dev/wcfs/gocore/zurl"
)

// mountpointOf returns the mountpoint of zurlStr for tg.
func (tg *tgw) mountpointOf(zurlStr string) string {
	tg.t.Helper()
	mntpt, err := tg.Mountpoint(zurlStr)
	if err != nil {
		tg.t.Fatal(err)
	}
	return mntpt
}

// ---- the root of mountpoints ----

// After a boot the first user to run a wcfs command creates the root of
// mountpoints. That user must not be able to rename root's mountpoint
// directories in it (and put a symlink in their place before the mount):
// root takes the directory over.
func TestRootOfAnotherUser(t *testing.T) {
	tg := newTGW(t, "ok")
	uid, _ := testuser.Get(t)
	if out, err := testuser.Run(t, "mkdir", "-m", "1777", tg.Root); err != nil {
		t.Fatalf("mkdir as uid %d: %v %s", uid, err, out)
	}
	z := tg.zurl("takeover")
	srv, err := tg.start(z)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(tg.Root, &st); err != nil || st.Uid != 0 || st.Mode&0o7777 != rootMode {
		t.Errorf("root of mountpoints: uid %d, mode %o (%v); want taken over by root, mode %o", st.Uid, st.Mode&0o7777, err, rootMode)
	}

	// what the next start makes before it mounts: the other user can
	// neither rename it nor remove it
	mntpt := tg.mountpointOf(tg.zurl("next"))
	if err := startlock.MakeMountpoint(mntpt); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(mntpt)
	for _, argv := range [][]string{{"mv", "-T", mntpt, mntpt + ".x"}, {"rmdir", mntpt}} {
		if out, err := testuser.Run(t, argv[0], argv[1:]...); err == nil {
			t.Errorf("as uid %d: %s succeeded on root's mountpoint", uid, argv)
			os.Rename(mntpt+".x", mntpt)
		} else if !strings.Contains(out, "not permitted") {
			t.Errorf("as uid %d: %s: %s", uid, argv, out)
		}
	}
	if st, err := os.Lstat(mntpt); err != nil || !st.IsDir() {
		t.Errorf("root's mountpoint after the other user's attempts: %v", err)
	}
}

// A user who is not root refuses a root of mountpoints owned by another
// user who is not root either: it cannot take it over.
func TestRootOfAnotherUserRefused(t *testing.T) {
	tg := newTGW(t, "ok")
	uid, _ := testuser.Get(t)
	if err := os.Mkdir(tg.Root, 0o700); err != nil {
		t.Fatal(err)
	}
	os.Chmod(tg.Root, 0o777|os.ModeSticky)
	if err := os.Chown(tg.Root, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cmd := testuser.Command(t, testuser.Self(t), tg.Root)
	cmd.Env = append(os.Environ(), helperEnv+"=ensureroot")
	out, _ := cmd.CombinedOutput()
	want := fmt.Sprintf("%s belongs to uid 65534, not to root or to uid %d: refusing to use it", tg.Root, uid)
	if !strings.Contains(string(out), want) {
		t.Errorf("as uid %d, a root of uid 65534: %q\nwant %q", uid, out, want)
	}
}

// ---- descriptors ----

// A server that join starts keeps none of the caller's descriptors, even
// the inheritable ones (not close-on-exec): a listening socket would stay
// bound, a pipe would never see EOF, a file would stay open, after the
// caller is gone.
func TestRealServerStartsWithItsOwnDescriptors(t *testing.T) {
	tg, z, _, _ := realTGW(t)
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sock)
	if err := unix.Bind(sock, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(sock, 1); err != nil {
		t.Fatal(err)
	}
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	file, err := unix.Open(filepath.Join(t.TempDir(), "f"), unix.O_CREAT|unix.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(file)
	ours := map[string]bool{}
	for _, fd := range []int{sock, pipe[0], pipe[1], file} {
		target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		if err != nil {
			t.Fatal(err)
		}
		ours[target] = true
	}

	w, err := tg.join(z, AutostartYes)
	if err != nil {
		t.Fatal(err)
	}
	srv := w.Server()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", srv.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range fds {
		target, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", srv.Pid(), e.Name()))
		if ours[target] {
			t.Errorf("the server pid %d has the caller's %s as fd %s", srv.Pid(), target, e.Name())
		}
	}
	w.Close()
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	tg.stopped(z, srv)
}

// ---- relative zurls ----

// twoDatabases creates a database "small.fs" in each of two directories,
// with different data in file "zf", and returns the directories, the path
// of zf in the mount, and the data of each.
func twoDatabases(t *testing.T) (dirs [2]string, path string, data [2][]byte) {
	for i := range dirs {
		dirs[i] = t.TempDir()
		db := testdb.Create(t, filepath.Join(dirs[i], "small.fs"))
		oid := db.CreateFile("zf", 64<<10, testdb.ZBlk1)
		data[i] = bytes.Repeat([]byte{'A' + byte(i)}, 64<<10)
		db.Write("zf", 0, data[i])
		db.Commit("relative")
		path = fmt.Sprintf("head/bigfile/%s", oid)
	}
	return dirs, path, data
}

// realGateway returns a test gateway spawning the real server.
func realGateway(t *testing.T) *tgw {
	tg := newTGW(t, "")
	tg.Exe = wcfstest.Binary(t)
	tg.StartTimeout = 2 * time.Minute
	tg.env = os.Environ()
	tg.ServerOutput = nil
	return tg
}

// A relative FileStorage path means the file in the working directory of
// the caller: the same relative zurl joined from two directories reaches
// two servers, each with its own database (not the first one's data); a
// plain path is the same file as its file:// zurl.
func TestRealRelativeZurl(t *testing.T) {
	tg := realGateway(t)
	dirs, path, data := twoDatabases(t)
	var wv [2]*WCFS
	for i, dir := range dirs {
		t.Chdir(dir)
		w, err := tg.join("file://small.fs", AutostartYes)
		if err != nil {
			t.Fatalf("in %s: %v", dir, err)
		}
		wv[i] = w
		abs := "file://" + filepath.Join(dir, "small.fs")
		if w.Mountpoint() != tg.mountpointOf(abs) {
			t.Errorf("in %s: file://small.fs is mounted at %s, want the mountpoint of %s", dir, w.Mountpoint(), abs)
		}
		if got, err := os.ReadFile(filepath.Join(w.Mountpoint(), ".wcfs/zurl")); err != nil || string(got) != abs {
			t.Errorf("in %s: .wcfs/zurl %q (%v), want %q", dir, got, err, abs)
		}
		if got, err := os.ReadFile(filepath.Join(w.Mountpoint(), path)); err != nil || !bytes.Equal(got, data[i]) {
			t.Errorf("in %s: read %d bytes (%v) starting with %.4q; want %.4q", dir, len(got), err, got, data[i])
		}
		// the plain path, relative and absolute, is the same storage
		for _, same := range []string{"small.fs", filepath.Join(dir, "small.fs"), "file:small.fs"} {
			w2, err := tg.join(same, AutostartNo)
			if err != nil || w2 != w {
				t.Errorf("in %s: join %s: %v; want the WCFS of file://small.fs", dir, same, err)
			}
			if w2 != nil {
				w2.Close()
			}
		}
	}
	if wv[0].Mountpoint() == wv[1].Mountpoint() {
		t.Errorf("file://small.fs from two directories shares the mountpoint %s", wv[0].Mountpoint())
	}
	for i, w := range wv {
		w.Close()
		if err := w.Server().Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		tg.stopped("file://"+filepath.Join(dirs[i], "small.fs"), w.Server())
	}
}

// The server resolves a relative zurl against its own working directory:
// it opens the file there and shows the absolute zurl as its mount source
// and in .wcfs/zurl, so that gateways anywhere find it; the gateway finds
// its process (argv ends in the relative zurl) through its working
// directory and stops it.
func TestRealServerRelativeZurl(t *testing.T) {
	tg := realGateway(t)
	dirs, path, data := twoDatabases(t)
	abs := "file://" + filepath.Join(dirs[0], "small.fs")
	mntpt := tg.mountpointOf(abs)
	if err := tg.ensureRoot(); err != nil {
		t.Fatal(err)
	}
	if err := startlock.MakeMountpoint(mntpt); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(t.TempDir(), "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	output := func() string { data, _ := os.ReadFile(out.Name()); return string(data) }
	cmd := exec.Command(tg.Exe, "small.fs", mntpt) // a plain relative path
	cmd.Dir = dirs[0]
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() {
		exitErr = cmd.Wait()
		close(exited)
	}()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
			t.Logf("server output:\n%s", output())
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, err := tg.WaitMount(ctx, abs, mntpt)
	if err != nil {
		t.Fatalf("wait for the server of %s: %v\n%s", abs, err, output())
	}
	f.Close()
	if got, err := os.ReadFile(filepath.Join(mntpt, path)); err != nil || !bytes.Equal(got, data[0]) {
		t.Errorf("read %d bytes (%v); want the data of %s", len(got), err, abs)
	}
	if m, err := topMountAt(mntpt); err != nil || m == nil || m.Source != abs {
		t.Errorf("mount source: %v (%v), want %s", m, err, abs)
	}
	if err := tg.Stop(ctx, abs); err != nil {
		t.Fatal(err)
	}
	if <-exited; exitErr != nil {
		t.Errorf("server: %v\n%s", exitErr, output())
	}
	tg.stopped(abs, nil)
}

// ---- files of other users ----

// A lock file another user put at the start lock's path does not keep root
// from starting or stopping its server.
func TestForeignLockFile(t *testing.T) {
	tg := newTGW(t, "ok")
	uid, _ := testuser.Get(t)
	if err := tg.ensureRoot(); err != nil {
		t.Fatal(err)
	}
	z := tg.zurl("foreignlock")
	lock := lockPath(tg.mountpointOf(z))
	touch := func() {
		t.Helper()
		if out, err := testuser.Run(t, "touch", lock); err != nil {
			t.Fatalf("touch %s as uid %d: %v %s", lock, uid, err, out)
		}
	}
	touch()
	srv, err := tg.start(z)
	if err != nil {
		t.Fatalf("start with a lock file of uid %d: %v", uid, err)
	}
	touch()
	if err := tg.Stop(context.Background(), z); err != nil {
		t.Fatalf("stop with a lock file of uid %d: %v", uid, err)
	}
	tg.stopped(z, srv)
}

// ---- errors a user can act on ----

// A bad server option in $WENDELIN_CORE_WCFS_OPTIONS: the error gives the
// server's reason.
func TestRealBadServerOption(t *testing.T) {
	tg, z, _, _ := realTGW(t)
	tg.env = append(tg.env, EnvOptions+"=-bogus")
	_, err := tg.start(z)
	if err == nil || !strings.Contains(err.Error(), "exited with status 2 before it was ready: wcfs: flag provided but not defined: -bogus") {
		t.Fatalf("start with a bad option: %v", err)
	}
	if err := tg.Stop(context.Background(), z); err != nil { // removes the log
		t.Fatal(err)
	}
	tg.stopped(z, nil)
}

// A storage that never answers: the wait for the server says what the
// server is waiting for.
func TestRealStorageNotAnswering(t *testing.T) {
	tg := realGateway(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c // held, never answered
		}
	}()
	defer func() {
		for len(accepted) > 0 {
			(<-accepted).Close()
		}
	}()
	z := "zeo://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		c := <-accepted // the server connected: it waits for an answer now
		accepted <- c
		cancel()
	}()
	_, err = tg.Start(ctx, z, nil, StartOptions{Env: tg.env})
	if err == nil || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "opening storage "+z) {
		t.Fatalf("start on a storage that does not answer: %v; want it to say that the server is opening the storage", err)
	}
	if err := tg.Stop(context.Background(), z); err != nil { // removes the log
		t.Fatal(err)
	}
	tg.stopped(z, nil)
}

// Ports are checked before anything is spawned.
func TestBadPort(t *testing.T) {
	tg := newTGW(t, "ok")
	for _, z := range []string{"neo://c@127.0.0.1:99999", "zeo://127.0.0.1:0", "zeo://localhost"} {
		_, err := tg.join(z, AutostartYes)
		var zerr *zurl.Error
		if !errors.As(err, &zerr) || !strings.HasPrefix(err.Error(), "wcfs: join "+z+": invalid zurl") {
			t.Errorf("join %s: %v", z, err)
		}
	}
}

// A user without access to /dev/fuse is told so, not "fusermount exited
// with code 256". The test user runs the gateway in a mount namespace where
// /dev/fuse is a node of mode 0600 (as it is on some systems).
func TestNoFUSEAccess(t *testing.T) {
	tg := newTGW(t, "")
	uid, gid := testuser.Get(t)
	for _, prog := range []string{"unshare", "setpriv", "mount"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("%s: %v", prog, err)
		}
	}
	self, server := testuser.Self(t), testuser.Copy(t, wcfstest.Binary(t))
	dir, err := os.MkdirTemp("", "wcfs-nofuse-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	db := testdb.Create(t, filepath.Join(dir, "db.fs"))
	db.CreateFile("zf", 64<<10, testdb.ZBlk1)
	db.Commit("nofuse")
	node := filepath.Join(dir, "fuse")
	if err := unix.Mknod(node, unix.S_IFCHR|0o600, int(unix.Mkdev(10, 229))); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("mount --bind %s /dev/fuse && exec setpriv --reuid=%d --regid=%d --clear-groups -- %s %s %s %s",
		node, uid, gid, self, tg.Root, db.ZURL(), server)
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = append(os.Environ(), helperEnv+"=start")
	cmd.Dir = "/"
	out, _ := cmd.CombinedOutput()
	msg := string(out)
	if !strings.Contains(msg, "/dev/fuse") || !strings.Contains(msg, "permission denied") || strings.Contains(msg, "exited with code") {
		t.Errorf("start as uid %d without access to /dev/fuse: %q; want the reason", uid, msg)
	}
}

// ---- leftovers ----

// A starter killed while it holds the start lock leaves the lock file and
// the mountpoint directory it made: the next start or stop in the root
// removes them.
func TestKilledStarterLeftovers(t *testing.T) {
	tg := newTGW(t, "ok")
	if err := tg.ensureRoot(); err != nil {
		t.Fatal(err)
	}
	dead := tg.mountpointOf(tg.zurl("dead"))
	self, _ := os.Executable()
	cmd := exec.Command(self, dead)
	cmd.Env = append(os.Environ(), helperEnv+"=lock-and-die")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	cmd.Process.Kill()
	cmd.Wait()
	if line != "locked\n" {
		t.Fatalf("starter: %q", line)
	}
	for _, p := range []string{dead, lockPath(dead)} {
		if _, err := os.Lstat(p); err != nil {
			t.Fatalf("the killed starter left no %s: %v", p, err)
		}
	}

	z := tg.zurl("alive")
	srv, err := tg.start(z)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dead, lockPath(dead)} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left by the killed starter: %v", p, err)
		}
	}
	tg.stopped(z, srv)
}

// Failed starts keep the logs that explain them, but only the last few.
func TestFailedStartLogsPruned(t *testing.T) {
	tg := newTGW(t, "fail")
	tg.ServerOutput = nil // logs in the root
	var zv []string
	for i := 0; i < keepLogs+3; i++ {
		z := tg.zurl(fmt.Sprintf("fail%d", i))
		if _, err := tg.start(z); err == nil || !strings.Contains(err.Error(), "(server log: ") {
			t.Fatalf("start %s: %v", z, err)
		}
		zv = append(zv, z)
	}
	logs, _ := filepath.Glob(filepath.Join(tg.Root, "*.log"))
	last := logPath(tg.mountpointOf(zv[len(zv)-1]))
	if len(logs) != keepLogs || !slices.Contains(logs, last) {
		t.Errorf("logs after %d failed starts: %d (%q); want the last %d, with %s", len(zv), len(logs), logs, keepLogs, last)
	}
	for _, z := range zv {
		if err := tg.Stop(context.Background(), z); err != nil {
			t.Fatal(err)
		}
		tg.stopped(z, nil)
	}
}
