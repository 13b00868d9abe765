// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/startlock"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// SIGTERM and SIGINT unmount and exit 0; an unmount from outside makes the
// server exit 0.
func TestStop(t *testing.T) {
	t.Parallel()
	zurl, _ := smallFS(t)

	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		srv := wcfstest.Start(t, zurl)
		readFile(t, srv.Path("head", "at"))
		if err := srv.Signal(sig); err != nil {
			t.Fatal(err)
		}
		if code, err := srv.WaitExit(wcfstest.StopTimeout); err != nil || code != 0 {
			t.Errorf("%s: exit code %d, %v; want 0", sig, code, err)
		}
		if wcfstest.IsMounted(srv.Mnt) {
			t.Errorf("%s: still mounted", sig)
		}
	}

	srv := wcfstest.Start(t, zurl)
	fusermount, err := exec.LookPath("fusermount3")
	if err != nil {
		fusermount, err = exec.LookPath("fusermount")
	}
	if err != nil {
		t.Skip("no fusermount")
	}
	if out, err := exec.Command(fusermount, "-u", srv.Mnt).CombinedOutput(); err != nil {
		t.Fatalf("fusermount -u: %v\n%s", err, out)
	}
	if code, err := srv.WaitExit(wcfstest.StopTimeout); err != nil || code != 0 {
		t.Errorf("after fusermount -u: exit code %d, %v; want 0", code, err)
	}
}

// SIGTERM on a busy mount: the server says who uses it and keeps serving.
func TestStopBusy(t *testing.T) {
	t.Parallel()
	zurl, _ := smallFS(t)
	srv := wcfstest.Start(t, zurl)
	f, err := os.Open(srv.Path("head", "at"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.WaitExit(time.Second); err == nil {
		t.Fatalf("server exited on SIGTERM while the mount is busy")
	}
	// still serving
	buf := make([]byte, 16)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatalf("read after SIGTERM: %v", err)
	}
	if !waitLog(srv, "keep serving", fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("log does not say the mount is busy and by whom:\n%s", srv.Log())
	}
	f.Close()
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
}

// -autoexit: exit once no client used the mount for the grace period; not
// while a file is open; stay up while the kernel says busy (cwd).
func TestAutoExit(t *testing.T) {
	t.Parallel()
	zurl, _ := smallFS(t)
	const grace = "-autoexit.grace=500ms"

	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		srv := wcfstest.Start(t, zurl, "-autoexit", grace)
		readFile(t, srv.Path("head", "at"))
		if code, err := srv.WaitExit(30 * time.Second); err != nil || code != 0 {
			t.Fatalf("exit code %d, %v; want exit 0", code, err)
		}
		if wcfstest.IsMounted(srv.Mnt) {
			t.Errorf("still mounted after autoexit")
		}
		if _, err := os.Lstat(srv.Mnt); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("mountpoint directory after autoexit: %v; want it removed", err)
		}
		if _, err := os.Lstat(startlock.Path(srv.Mnt)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("start lock after autoexit: %v; want no file", err)
		}
	})

	// a starter holding the start lock is about to reuse the directory
	t.Run("starter holds the lock", func(t *testing.T) {
		t.Parallel()
		srv := wcfstest.Start(t, zurl, "-autoexit", grace)
		lk, err := startlock.Acquire(context.Background(), startlock.Path(srv.Mnt), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer lk.Unlock()
		if code, err := srv.WaitExit(30 * time.Second); err != nil || code != 0 {
			t.Fatalf("exit code %d, %v; want exit 0", code, err)
		}
		if st, err := os.Lstat(srv.Mnt); err != nil || !st.IsDir() {
			t.Errorf("mountpoint directory removed while a starter held the lock (%v)", err)
		}
		if !strings.Contains(srv.Log(), "left in place") {
			t.Errorf("log does not say why the directory stays:\n%s", srv.Log())
		}
	})

	t.Run("open file", func(t *testing.T) {
		t.Parallel()
		srv := wcfstest.Start(t, zurl, "-autoexit", grace)
		f, err := os.Open(srv.Path(".wcfs", "zurl"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := srv.WaitExit(2 * time.Second); err == nil {
			t.Fatalf("exited while a file is open")
		}
		f.Close()
		if code, err := srv.WaitExit(30 * time.Second); err != nil || code != 0 {
			t.Fatalf("after close: exit code %d, %v; want exit 0", code, err)
		}
	})

	t.Run("busy cwd", func(t *testing.T) {
		t.Parallel()
		srv := wcfstest.Start(t, zurl, "-autoexit", grace)
		sleeper := exec.Command("sleep", "60")
		sleeper.Dir = srv.Path("head")
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		defer sleeper.Wait()
		defer sleeper.Process.Kill()
		if _, err := srv.WaitExit(2 * time.Second); err == nil {
			t.Fatalf("exited while a process has its cwd in the mount")
		}
		if !wcfstest.IsMounted(srv.Mnt) {
			t.Fatalf("unmounted (lazily?) while busy")
		}
		if !waitLog(srv, "staying up") {
			t.Errorf("log does not say why it stays up:\n%s", srv.Log())
		}
		sleeper.Process.Kill()
		sleeper.Wait()
		if code, err := srv.WaitExit(30 * time.Second); err != nil || code != 0 {
			t.Fatalf("after the cwd holder left: exit code %d, %v; want exit 0", code, err)
		}
	})
}

// SIGQUIT: the Go runtime dumps every goroutine (diagnostics) and exits.
func TestSIGQUIT(t *testing.T) {
	t.Parallel()
	zurl, _ := smallFS(t)
	srv := wcfstest.Start(t, zurl)
	if err := srv.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	if code, err := srv.WaitExit(wcfstest.StopTimeout); err != nil || code == 0 {
		t.Fatalf("exit code %d, %v; want a non-zero exit", code, err)
	}
	if log := srv.Log(); !strings.Contains(log, "SIGQUIT") || !strings.Contains(log, "goroutine ") {
		t.Errorf("no goroutine dump in the output:\n%s", log)
	}
	// the mount is dead (ENOTCONN): clean it up as a gateway would
	_, err := os.Stat(srv.Path("head"))
	wantErrno(t, "stat on the dead mount", err, syscall.ENOTCONN)
	if err := unix.Unmount(srv.Mnt, 0); err != nil {
		t.Fatal(err)
	}
}

// flushRx matches a FLUSH request in a -trace.fuse log (submatch: the node).
var flushRx = regexp.MustCompile(`rx \d+: FLUSH n(\d+) `)

// waitLog waits (a while) until the server's log contains all of subs.
func waitLog(srv *wcfstest.Server, subs ...string) bool {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		log, ok := srv.Log(), true
		for _, sub := range subs {
			ok = ok && strings.Contains(log, sub)
		}
		if ok {
			return true
		}
	}
	return false
}

// A close(2) on the mount does not wait for the server: every file but
// .wcfs/zurl opens with FOPEN_NOFLUSH, so the kernel sends no FLUSH on its
// close; .wcfs/zurl gets one (its close reports a server that died, as the
// reference's does) which is answered with success, not ENOSYS (that would
// stop FLUSH for the whole connection). -trace.fuse logs every request the
// server receives.
func TestNoFlush(t *testing.T) {
	t.Parallel()
	zurl, m := smallFS(t)
	foid := m.Files[m.FileNames[0]].Oid
	srv := wcfstest.Start(t, zurl, "-trace.fuse")
	flushes := func() int {
		// FLUSH requests as -trace.fuse logs them ("rx <n>: FLUSH n<node>");
		// go-fuse's own poll-hack file, node ^0, gets one at mount, which
		// go-fuse answers itself
		n := 0
		for _, m := range flushRx.FindAllStringSubmatch(srv.Log(), -1) {
			if m[1] != "18446744073709551615" {
				n++
			}
		}
		return n
	}
	base := flushes()
	for i := 0; i < 5; i++ {
		readFile(t, srv.Path("head", "at"))
		readFile(t, srv.Path(".wcfs", "stats"))
		readFile(t, srv.Path("head", "bigfile", foid.String()))
	}
	log := srv.Log()
	if !strings.Contains(log, "RELEASE") {
		t.Fatalf("the server's FUSE trace shows no RELEASE: not a trace of the opens?\n%s", log)
	}
	if n := flushes() - base; n != 0 {
		t.Errorf("%d FLUSH requests for 15 closes of data files, want none", n)
	}
	// a close returns after the FLUSH was answered: no wait needed
	const nzurl = 3
	for i := 0; i < nzurl; i++ {
		readFile(t, srv.Path(".wcfs", "zurl"))
	}
	if n := flushes() - base; n != nzurl {
		t.Errorf("%d FLUSH requests for %d closes of .wcfs/zurl, want %d:\n%s", n, nzurl, nzurl, srv.Log())
	}
	if strings.Contains(srv.Log(), "ENOSYS") {
		t.Errorf("FLUSH answered ENOSYS:\n%s", srv.Log())
	}
}
