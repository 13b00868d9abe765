// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/startlock"
	"wendelin.dev/wcfs/gocore/internal/testenv"
	"wendelin.dev/wcfs/gocore/internal/testproc"
)

// tlogWriter sends the gateway's log to the test log.
type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// tgw is a Gateway under test with its own mount root, so that tests can run
// in parallel and a failing test cannot touch anything else.
type tgw struct {
	*Gateway
	t   testing.TB
	env []string
}

// newTGW returns a Gateway that spawns the stand-in server in mode (see
// helper_test.go). Cleanup makes sure nothing is left: mounts under the
// root, processes serving there, the root itself; leftovers fail the test.
func newTGW(t testing.TB, mode string) *tgw {
	t.Helper()
	testenv.NeedFUSE(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	root := fmt.Sprintf("/dev/shm/wcfs-gwtest-%d-%s", os.Getpid(), name)
	g := &Gateway{
		Exe: self, Root: root,
		StartTimeout: 10 * time.Second, ProbeTimeout: 2 * time.Second, StopTimeout: 10 * time.Second,
		Log: slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	out, err := os.Create(filepath.Join(t.TempDir(), "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	g.ServerOutput = out
	tg := &tgw{Gateway: g, t: t, env: append(os.Environ(), helperEnv+"=server:"+mode)}
	t.Cleanup(func() {
		tg.cleanup()
		if t.Failed() {
			data, _ := os.ReadFile(out.Name())
			t.Logf("servers' output:\n%s", data)
		}
		out.Close()
	})
	return tg
}

func (tg *tgw) cleanup() {
	t := tg.t
	mounts, _ := mountinfo.GetMounts(mountinfo.PrefixFilter(tg.Root))
	for i := len(mounts) - 1; i >= 0; i-- {
		t.Errorf("leftover mount %s (%s)", mounts[i].Mountpoint, mounts[i].FSType)
		unix.Unmount(mounts[i].Mountpoint, unix.MNT_DETACH)
	}
	for _, pid := range serversUnder(tg.Root) {
		t.Errorf("leftover server pid %d", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	entries, _ := os.ReadDir(tg.Root)
	for _, e := range entries {
		t.Errorf("leftover %s/%s", tg.Root, e.Name())
		if strings.HasSuffix(e.Name(), ".log") {
			data, _ := os.ReadFile(filepath.Join(tg.Root, e.Name()))
			t.Logf("%s:\n%s", e.Name(), data)
		}
	}
	os.RemoveAll(tg.Root)
}

// serversUnder returns the processes whose last argument is under root.
func serversUnder(root string) []int {
	procs, _ := procfs.AllProcs()
	var pids []int
	for _, p := range procs {
		argv, err := p.CmdLine()
		if err == nil && len(argv) > 0 && strings.HasPrefix(argv[len(argv)-1], root+"/") {
			if st, err := p.NewStat(); err == nil && st.State != "Z" {
				pids = append(pids, p.PID)
			}
		}
	}
	return pids
}

func (tg *tgw) zurl(name string) string {
	return "file:///srv/gwtest/" + name + ".fs"
}

func (tg *tgw) join(zurlStr string, autostart Autostart) (*WCFS, error) {
	return tg.Join(context.Background(), zurlStr, JoinOptions{Autostart: autostart, Env: tg.env})
}

func (tg *tgw) start(zurlStr string) (*Server, error) {
	return tg.Start(context.Background(), zurlStr, nil, StartOptions{Env: tg.env})
}

// stopped checks that the server of zurl left nothing behind.
func (tg *tgw) stopped(zurlStr string, srv *Server) {
	t := tg.t
	t.Helper()
	mntpt, _ := tg.Mountpoint(zurlStr)
	if ok, _ := IsMounted(mntpt); ok {
		t.Errorf("%s still mounted", mntpt)
	}
	if _, err := os.Lstat(mntpt); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s still exists (%v)", mntpt, err)
	}
	if _, err := os.Lstat(lockPath(mntpt)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock file %s still exists (%v)", lockPath(mntpt), err)
	}
	if _, err := os.Lstat(logPath(mntpt)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("server log %s still exists (%v)", logPath(mntpt), err)
	}
	// a stop that watched the process through a pidfd may return before the
	// reaper of its parent (here) collected it
	if srv != nil && srv.proc != nil && !srv.proc.wait(context.Background(), 5*time.Second) {
		t.Errorf("server pid %d still running", srv.Pid())
	}
}

func TestEnv(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		a    Autostart
		want bool
		err  string
	}{
		{nil, AutostartYes, true, ""},
		{[]string{EnvAutostart + "=no"}, AutostartYes, true, ""},
		{[]string{EnvAutostart + "=yes"}, AutostartNo, false, ""},
		{[]string{}, AutostartEnv, true, ""},
		{[]string{EnvAutostart + "=NO"}, AutostartEnv, false, ""},
		{[]string{EnvAutostart + "=no", EnvAutostart + "=Yes"}, AutostartEnv, true, ""},
		{[]string{EnvAutostart + "=maybe"}, AutostartEnv, false, `want yes or no`},
	} {
		got, err := env(tc.env).autostart(tc.a)
		if tc.a == AutostartEnv { // what the Python package asks
			if got2, err2 := DefaultAutostart(tc.env); got2 != got || fmt.Sprint(err2) != fmt.Sprint(err) {
				t.Errorf("%v: DefaultAutostart %v %v, autostart %v %v", tc.env, got2, err2, got, err)
			}
		}
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v %v: error %v, want %q", tc.env, tc.a, err, tc.err)
			}
		} else if err != nil || got != tc.want {
			t.Errorf("%v %v: %v %v, want %v", tc.env, tc.a, got, err, tc.want)
		}
	}

	e := []string{EnvOptions + "= -debug   -logtostderr "}
	if got := strings.Join(ServerOptions(e, []string{"-autoexit"}), " "); got != "-debug -logtostderr -autoexit" {
		t.Errorf("ServerOptions: %q", got)
	}
	g := &Gateway{}
	for _, tc := range []struct {
		v    string
		want time.Duration
	}{{"", DefaultStartTimeout}, {"90s", 90 * time.Second}, {"2.5", 2500 * time.Millisecond}, {"x", -1}, {"-1s", -1}} {
		d, err := g.startTimeout(env{EnvStartTimeout + "=" + tc.v}, 0)
		if tc.want < 0 && err == nil || tc.want >= 0 && (err != nil || d != tc.want) {
			t.Errorf("start timeout %q: %v %v", tc.v, d, err)
		}
	}
	if d, _ := g.startTimeout(env{EnvStartTimeout + "=90s"}, time.Second); d != time.Second {
		t.Errorf("explicit start timeout not preferred: %v", d)
	}
}

func TestChildEnv(t *testing.T) {
	got := childEnv([]string{"A=1", "NOTIFY_SOCKET=/run/systemd/notify", "B=2"}, "@x")
	if strings.Join(got, " ") != "A=1 B=2 NOTIFY_SOCKET=@x" {
		t.Fatalf("childEnv: %q", got)
	}
}

func TestDirs(t *testing.T) {
	testenv.NeedFUSE(t) // root: chown to another user
	ensureRoot := func(root string) error {
		return (&Gateway{Root: root, Log: slog.New(slog.NewTextHandler(tlogWriter{t}, nil))}).ensureRoot()
	}
	root := filepath.Join(t.TempDir(), "wcfs")
	if err := ensureRoot(root); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(root); fi.Mode() != os.ModeDir|os.ModeSticky|0o777 {
		t.Fatalf("root mode %v", fi.Mode())
	}
	os.Chmod(root, 0o755)
	if err := ensureRoot(root); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(root); fi.Mode() != os.ModeDir|os.ModeSticky|0o777 {
		t.Fatalf("root mode not repaired: %v", fi.Mode())
	}

	link := filepath.Join(filepath.Dir(root), "link")
	os.Symlink(root, link)
	if err := ensureRoot(link); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("symlink root: %v", err)
	}
	// root takes over a root of another user, sticky or not
	other := filepath.Join(filepath.Dir(root), "other")
	os.Mkdir(other, 0o777)
	os.Chmod(other, 0o777)
	os.Chown(other, 65534, 65534)
	if err := ensureRoot(other); err != nil {
		t.Errorf("foreign non-sticky root: %v", err)
	}
	if fi, _ := os.Lstat(other); fi.Mode() != os.ModeDir|os.ModeSticky|0o777 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("foreign root not taken over: %v uid %d", fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid)
	}
	// a directory above the root that another user owns, or that others may
	// write to without the sticky bit, is refused
	up := filepath.Join(filepath.Dir(root), "up")
	os.Mkdir(up, 0o755)
	os.Chown(up, 65534, 65534)
	if err := ensureRoot(filepath.Join(up, "wcfs")); err == nil || !strings.Contains(err.Error(), up+" belongs to uid 65534") {
		t.Errorf("root under a directory of another user: %v", err)
	}
	os.Chown(up, 0, 0)
	os.Chmod(up, 0o777)
	if err := ensureRoot(filepath.Join(up, "wcfs")); err == nil || !strings.Contains(err.Error(), "writable by others but not sticky") {
		t.Errorf("root under a world-writable directory: %v", err)
	}

	prepareMountpoint := startlock.MakeMountpoint
	mp := filepath.Join(root, "m")
	if err := prepareMountpoint(mp); err != nil {
		t.Fatal(err)
	}
	if err := prepareMountpoint(mp); err != nil {
		t.Fatalf("existing empty mountpoint of ours: %v", err)
	}
	os.WriteFile(filepath.Join(mp, "x"), nil, 0o644)
	if err := prepareMountpoint(mp); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("non-empty mountpoint: %v", err)
	}
	os.Remove(filepath.Join(mp, "x"))
	os.Chown(mp, 65534, 65534)
	if err := prepareMountpoint(mp); err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Errorf("foreign mountpoint: %v", err)
	}
	if err := removeMountpoint(mp); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(mp); err != nil {
		t.Errorf("removeMountpoint removed a directory of another user: %v", err)
	}
	os.Chown(mp, 0, 0)
	if err := removeMountpoint(mp); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(mp); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mountpoint not removed: %v", err)
	}
	os.WriteFile(mp, nil, 0o644)
	if err := prepareMountpoint(mp); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file at mountpoint: %v", err)
	}
}

// Real processes contend for one start lock; their critical sections must
// not overlap, and the lock file is gone afterwards.
func TestStartLockProcesses(t *testing.T) {
	self, _ := os.Executable()
	dir := t.TempDir()
	lock, logf := filepath.Join(dir, "x.lock"), filepath.Join(dir, "log")
	os.WriteFile(logf, nil, 0o644)
	const n = 12
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(self, lock, logf)
			cmd.Env = append(os.Environ(), helperEnv+"=lock")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("locker: %v: %s", err, out)
			}
		}()
	}
	wg.Wait()
	data, _ := os.ReadFile(logf)
	lines := strings.Fields(strings.ReplaceAll(string(data), "\n", " "))
	if len(lines) != 4*n {
		t.Fatalf("log: %q", data)
	}
	for i := 0; i < len(lines); i += 4 {
		if lines[i] != "in" || lines[i+2] != "out" || lines[i+1] != lines[i+3] {
			t.Fatalf("critical sections overlap: %q", data)
		}
	}
	if _, err := os.Lstat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("lock file left: %v", err)
	}
}

func TestStartLockContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.lock")
	lk, err := lockStart(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	var told string
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = lockStart(ctx, path, func(f string, a ...any) { told = fmt.Sprintf(f, a...) })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock: %v", err)
	}
	if !strings.Contains(told, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("waiting message does not name the holder: %q", told)
	}
	lk.Unlock()
	// the abandoned waiter must not keep the lock
	lk2, err := lockStart(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	lk2.Unlock()

	// a symlink is not followed: it is removed (ours to remove) and replaced
	os.Symlink("/etc/passwd", path)
	lk3, err := lockStart(context.Background(), path, nil)
	if err != nil || len(lk3.Removed) != 1 {
		t.Fatalf("lock over a symlink: %v", err)
	}
	lk3.Unlock()
	if st, err := os.Stat("/etc/passwd"); err != nil || !st.Mode().IsRegular() {
		t.Errorf("/etc/passwd: %v", err)
	}
}

// sd_notify from a real child (go-systemd), which exits right after its
// STATUS: nothing it said is lost; datagrams of other processes are ignored.
func TestNotify(t *testing.T) {
	self, _ := os.Executable()
	nl, err := listenNotify()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "file:///x.fs")
	cmd.Env = childEnv(append(os.Environ(), helperEnv+"=notify"), nl.Addr)
	proc, err := startChild(cmd)
	if err != nil {
		t.Fatal(err)
	}
	nl.Start(proc.pid)
	// a datagram from us (not the child) must be dropped
	fd, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	unix.Sendto(fd, []byte("READY=1"), 0, &unix.SockaddrUnix{Name: nl.Addr})
	unix.Close(fd)
	<-proc.exited
	st := nl.Close()
	if st.Ready || st.Errno != 2 || st.Status != "open file:///x.fs: no such file or directory" {
		t.Fatalf("state %+v", st)
	}
	if proc.exitStatus() != "status 3" {
		t.Fatalf("exit %s", proc.exitStatus())
	}
}

// A tmpfs at the mountpoint is refused, by join and start, and left alone.
func TestForeignMount(t *testing.T) {
	tg := newTGW(t, "ok")
	z := tg.zurl("foreign")
	mntpt, _ := tg.Mountpoint(z)
	os.MkdirAll(mntpt, 0o755)
	if err := unix.Mount("none", mntpt, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(mntpt)
	defer unix.Unmount(mntpt, 0)
	_, err := tg.join(z, AutostartYes)
	if err == nil || !strings.Contains(err.Error(), "is a tmpfs mount") || !strings.HasPrefix(err.Error(), "wcfs: join "+z+": ") {
		t.Fatalf("join over tmpfs: %v", err)
	}
	_, err = tg.start(z)
	if err == nil || !strings.Contains(err.Error(), "is a tmpfs mount") {
		t.Fatalf("start over tmpfs: %v", err)
	}
	if err := tg.Stop(context.Background(), z); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("stop of tmpfs: %v", err)
	}
	if ok, _ := IsMounted(mntpt); !ok {
		t.Fatal("the tmpfs was unmounted")
	}
}

func TestForeignMountpointDir(t *testing.T) {
	tg := newTGW(t, "ok")
	z := tg.zurl("foreigndir")
	mntpt, _ := tg.Mountpoint(z)
	if err := tg.ensureRoot(); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(mntpt, 0o755)
	os.Chown(mntpt, 65534, 65534)
	defer os.Remove(mntpt)
	_, err := tg.join(z, AutostartYes)
	if err == nil || !strings.Contains(err.Error(), "belongs to uid 65534") {
		t.Fatalf("join: %v", err)
	}
	if fi, err := os.Lstat(mntpt); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Fatalf("foreign directory touched: %v", err)
	}
}

func TestJoinStartStop(t *testing.T) {
	tg := newTGW(t, "ok")
	z := tg.zurl("jss")
	mntpt, _ := tg.Mountpoint(z)

	_, err := tg.join(z, AutostartNo)
	if !errors.Is(err, ErrNotRunning) || !strings.HasPrefix(err.Error(), "wcfs: join "+z+": server not running (") {
		t.Fatalf("join without server: %v", err)
	}
	if _, err := os.Lstat(mntpt); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed join created %s", mntpt)
	}

	srv, err := tg.start(z)
	if err != nil {
		t.Fatal(err)
	}
	if srv.Mountpoint() != mntpt || srv.Pid() == 0 {
		t.Fatalf("server %q pid %d", srv.Mountpoint(), srv.Pid())
	}
	var abortSt unix.Stat_t
	if err := unix.Stat(srv.mount.AbortPath(), &abortSt); err != nil {
		t.Fatal(err)
	}
	// isAbortFd checks that fd is a descriptor of the abort file and closes it
	isAbortFd := func(fd int) error {
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("fstat abort fd %d: %w", fd, err)
		}
		if st.Dev != abortSt.Dev || st.Ino != abortSt.Ino {
			return fmt.Errorf("abort fd %d is not %s", fd, srv.mount.AbortPath())
		}
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
			return fmt.Errorf("abort fd %d: flags %#x %v, want close-on-exec", fd, fl, err)
		}
		return nil
	}
	if fd, err := srv.DupAbortFd(); err != nil || fd < 0 {
		t.Fatalf("DupAbortFd: %d %v", fd, err)
	} else if err := isAbortFd(fd); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.start(z); !errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), "wcfs: start "+z+": already running") {
		t.Fatalf("second start: %v", err)
	}
	w, err := tg.join(z, AutostartNo)
	if err != nil {
		t.Fatal(err)
	}
	w2, err := tg.join(z, AutostartNo)
	if err != nil || w2 != w || w.NJoin() != 2 || w.Server() != nil || w.Mountpoint() != mntpt {
		t.Fatalf("second join: %v %p %p njoin %d", err, w, w2, w.NJoin())
	}
	data, err := os.ReadFile(mntpt + "/.wcfs/zurl")
	if err != nil || string(data) != z {
		t.Fatalf(".wcfs/zurl: %q %v", data, err)
	}
	checks, err := tg.Status(context.Background(), z)
	if err != nil || len(checks) < 5 {
		t.Fatalf("status: %v %v", checks, err)
	}
	for _, c := range []error{w.Close(), w2.Close()} {
		if c != nil {
			t.Fatal(c)
		}
	}
	if w.Close() == nil {
		t.Fatal("third close succeeded")
	}
	if w3, _ := tg.join(z, AutostartNo); w3 == w || w3.Serial() == w.Serial() {
		t.Fatal("join after the last close returned the closed WCFS")
	} else {
		w3.Close()
	}
	// DupAbortFd racing with Stop (which closes the abort file) returns the
	// abort file or -1, never a closed or reused descriptor
	dupErr := make(chan error, 1)
	go func() {
		for {
			fd, err := srv.DupAbortFd()
			if err == nil && fd >= 0 {
				err = isAbortFd(fd)
			}
			if err != nil || fd < 0 {
				dupErr <- err
				return
			}
		}
	}()
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-dupErr; err != nil {
		t.Fatalf("DupAbortFd during Stop: %v", err)
	}
	if fd, err := srv.DupAbortFd(); fd != -1 || err != nil {
		t.Fatalf("DupAbortFd after Stop: %d %v; want -1", fd, err)
	}
	tg.stopped(z, srv)
	if _, err := tg.Status(context.Background(), z); err == nil || !strings.Contains(err.Error(), "nothing mounted") {
		t.Fatalf("status after stop: %v", err)
	}
}

func TestJoinAutostart(t *testing.T) {
	tg := newTGW(t, "ok")
	z := tg.zurl("auto")
	w, err := tg.Join(context.Background(), z, JoinOptions{Env: append(tg.env, EnvAutostart+"=no")})
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("join with $%s=no: %v %v", EnvAutostart, w, err)
	}
	w, err = tg.Join(context.Background(), z, JoinOptions{Env: append(tg.env, EnvOptions+"=-debug")})
	if err != nil {
		t.Fatal(err)
	}
	srv := w.Server()
	if srv == nil {
		t.Fatal("join did not start a server")
	}
	p, _ := procfs.NewProc(srv.Pid())
	argv, _ := p.CmdLine()
	if w.NJoin() != 1 || strings.Join(argv, " ") != tg.Exe+" -debug -autoexit "+z+" "+w.Mountpoint() {
		t.Errorf("autostarted server: njoin %d argv %q", w.NJoin(), argv)
	}
	// the held .wcfs/zurl keeps the mount busy: stop escalates to abort +
	// lazy unmount, and names the holder
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	tg.stopped(z, srv)
	if err := w.Close(); err == nil || !errors.Is(err, unix.ENOTCONN) && !errors.Is(err, unix.ECONNABORTED) {
		// closing a file of an aborted FUSE connection reports the abort
		t.Logf("close after stop: %v", err)
	}
}

// Nothing of a failed start is left behind, and the error says why.
func TestStartFailures(t *testing.T) {
	for _, tc := range []struct{ mode, want string }{
		{"fail", "exited with status 1 before it was ready: open file:///srv/gwtest/fail.fs: no such file or directory"},
		{"never-ready", "not ready within 1s (start timeout"},
		{"wrong-zurl", `.wcfs/zurl != zurl  ("file:///somewhere/else.fs" != "file:///srv/gwtest/wrong-zurl.fs")`},
		{"ready-no-mount", "reported ready, but nothing is mounted"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			t.Parallel()
			tg := newTGW(t, tc.mode)
			if tc.mode == "never-ready" {
				tg.StartTimeout = time.Second
			}
			z := tg.zurl(tc.mode)
			_, err := tg.start(z)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "wcfs: start "+z+": ") {
				t.Fatalf("error %v\nwant %q", err, tc.want)
			}
			// the server's STATUS names the errno already: its text is
			// not repeated, and the errno is there for errors.Is
			if tc.mode == "fail" && (strings.Count(err.Error(), "no such file or directory") != 1 || !errors.Is(err, syscall.ENOENT)) {
				t.Errorf("error %q: want the errno's text once, and ENOENT", err)
			}
			tg.stopped(z, nil)
		})
	}
}

// killServer kills the server and waits until its mount is dead.
func killServer(t *testing.T, srv *Server) {
	t.Helper()
	srv.proc.signal(syscall.SIGKILL)
	if !srv.proc.wait(context.Background(), 5*time.Second) {
		t.Fatal("server does not die")
	}
}

func TestJoinAfterCrash(t *testing.T) {
	tg := newTGW(t, "ok")
	z := tg.zurl("crash")
	srv, err := tg.start(z)
	if err != nil {
		t.Fatal(err)
	}
	killServer(t, srv)
	_, err = tg.join(z, AutostartNo)
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "died and left a stale mount") {
		t.Fatalf("join without autostart after crash: %v", err)
	}
	w, err := tg.join(z, AutostartYes)
	if err != nil {
		t.Fatal(err)
	}
	if w.Server() == nil || w.Server().Pid() == srv.Pid() {
		t.Fatal("no new server")
	}
	w.Close()
	if err := w.Server().Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	tg.stopped(z, w.Server())
	srv.stopLocked(context.Background()) // releases; nothing left to do
}

// stopProcess SIGSTOPs pid and waits until all its threads stopped.
func stopProcess(t *testing.T, pid int) {
	t.Helper()
	if err := testproc.Suspend(pid); err != nil {
		t.Fatal(err)
	}
}

// A SIGSTOPped server: probes fail in bounded time without piling up, and
// Stop finishes within its deadline through the FUSE abort.
func TestStopHungServer(t *testing.T) {
	tg := newTGW(t, "ok")
	tg.ProbeTimeout = 300 * time.Millisecond
	z := tg.zurl("hung")
	srv, err := tg.start(z)
	if err != nil {
		t.Fatal(err)
	}
	w, err := tg.join(z, AutostartNo)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	holder, err := os.Open(srv.Mountpoint() + "/head")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	stopProcess(t, srv.Pid())

	other := &Gateway{Exe: tg.Exe, Root: tg.Root, ProbeTimeout: 300 * time.Millisecond, Log: tg.Log}
	t0 := time.Now()
	_, err = other.Join(context.Background(), z, JoinOptions{Autostart: AutostartNo})
	var nr *NotRespondingError
	if !errors.As(err, &nr) || time.Since(t0) > 5*time.Second {
		t.Fatalf("join of a hung server: %v after %s", err, time.Since(t0))
	}
	_, err = other.Join(context.Background(), z, JoinOptions{Autostart: AutostartNo})
	if !errors.As(err, &nr) || nr.Since.IsZero() {
		t.Fatalf("second join of a hung server: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	t0 = time.Now()
	err = srv.Stop(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 4*time.Second {
		t.Errorf("stop took %s", d)
	}
	tg.stopped(z, srv)
	if _, err := holder.Stat(); !isDeadFUSE(err) {
		t.Errorf("holder after abort: %v", err)
	}
}

func TestUnmountBusyNamesHolders(t *testing.T) {
	tg := newTGW(t, "ok")
	z := tg.zurl("busy")
	srv, err := tg.start(z)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(context.Background())
	f, err := os.Open(srv.Mountpoint() + "/.wcfs/stats")
	if err != nil {
		t.Fatal(err)
	}
	err = tg.Unmount(context.Background(), srv.Mountpoint(), false)
	var be *BusyError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) ||
		!strings.Contains(err.Error(), fmt.Sprintf("fd %d -> %s/.wcfs/stats", f.Fd(), srv.Mountpoint())) {
		t.Fatalf("busy unmount: %v", err)
	}
	f.Close()
	if dump := srv.StuckDump(); !strings.Contains(dump, fmt.Sprintf("wcfs server pid %d", srv.Pid())) {
		t.Errorf("stuck dump: %s", dump)
	}
}

// Many processes and goroutines join one zurl at once: one server starts.
func TestConcurrentJoin(t *testing.T) {
	tg := newTGW(t, "ok")
	z := tg.zurl("storm")
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		srvs []*Server
		ws   []*WCFS
	)
	// several gateways = several "processes" as far as registries go
	var gws []*Gateway
	for i := 0; i < 8; i++ {
		g := &Gateway{Exe: tg.Exe, Root: tg.Root, StartTimeout: 10 * time.Second, Log: tg.Log}
		gws = append(gws, g)
		for j := 0; j < 2; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w, err := g.Join(context.Background(), z, JoinOptions{Autostart: AutostartYes, Env: tg.env})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				ws = append(ws, w)
				if w.Server() != nil && (len(srvs) == 0 || srvs[len(srvs)-1] != w.Server()) {
					srvs = append(srvs, w.Server())
				}
			}()
		}
	}
	wg.Wait()
	if len(srvs) != 1 {
		t.Errorf("%d servers started", len(srvs))
	}
	for i, g := range gws {
		if n := g.joining.Len(); n != 0 {
			t.Errorf("gateway %d: %d mountpoints keep a join lock after the joins", i, n)
		}
	}
	for _, w := range ws {
		w.Close()
	}
	for _, s := range srvs {
		if err := s.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	}
	tg.stopped(z, nil)
}

// waitMountAsync runs WaitMount (at most 10s) in a goroutine; its error
// comes on the returned channel.
func (tg *tgw) waitMountAsync(zurlStr, mntpt string) <-chan error {
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f, err := tg.WaitMount(ctx, zurlStr, mntpt)
		if f != nil {
			f.Close()
		}
		done <- err
	}()
	return done
}

func TestWaitMount(t *testing.T) {
	tg := newTGW(t, "ok")
	z := tg.zurl("wait")
	mntpt, _ := tg.Mountpoint(z)
	done := tg.waitMountAsync(z, mntpt)
	time.Sleep(50 * time.Millisecond)
	srv, err := tg.start(z)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := tg.WaitMount(ctx, z, mntpt); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for nothing: %v", err)
	}
}

func TestWaitMountOverStale(t *testing.T) {
	tg := newTGW(t, "ok")
	z := tg.zurl("waitstale")
	mntpt, _ := tg.Mountpoint(z)
	srv, err := tg.start(z)
	if err != nil {
		t.Fatal(err)
	}
	killServer(t, srv)
	done := tg.waitMountAsync(z, mntpt)
	time.Sleep(100 * time.Millisecond)
	srv2, err := tg.start(z)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := srv2.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv.stopLocked(context.Background())
}

// StopWith hands the steps after the server exited to the hooks, as the
// reference's Server._stop(_on_fs_busy=, _on_last_unmount_try=) does for
// wendelin.core's tests: a mount kept busy by this process is reported
// (OnBusy, with this process among the holders) and unmounted by the hook.
func TestStopHooks(t *testing.T) {
	tg := newTGW(t, "ok")
	z := tg.zurl("hooks")
	srv, err := tg.start(z)
	if err != nil {
		t.Fatal(err)
	}
	mntpt := srv.Mountpoint()
	f, err := os.Open(mntpt + "/.wcfs/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var calls []string
	hooks := StopHooks{
		OnStuck: func() { calls = append(calls, "stuck") },
		OnBusy: func(hv []Holder) {
			for _, h := range hv {
				if h.Pid == os.Getpid() {
					calls = append(calls, "busy")
					return
				}
			}
			t.Errorf("OnBusy: this process (pid %d) is not among the holders %v", os.Getpid(), hv)
		},
		LastUnmountTry: func(m string) error {
			calls = append(calls, "lastunmount "+m)
			return tg.Unmount(context.Background(), m, true)
		},
	}
	if err := srv.StopWith(context.Background(), hooks); err != nil {
		t.Fatal(err)
	}
	if want := []string{"busy", "lastunmount " + mntpt}; !slices.Equal(calls, want) {
		t.Errorf("hooks called: %q, want %q", calls, want)
	}
	if m, _ := topMountAt(mntpt); m != nil {
		t.Errorf("still mounted after the stop: %s", m)
	}
	if _, err := os.Lstat(mntpt); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mountpoint left: %v", err)
	}
	// a second stop does nothing, hooks or not
	if err := srv.StopWith(context.Background(), hooks); err != nil || len(calls) != 2 {
		t.Errorf("second stop: %v, hooks %q", err, calls)
	}
}

// A stop gives clients that are closing their files a moment before it
// escalates: a client that closes its file a bit after the stop began sees
// a clean stop (no abort of the FUSE connection, no signal to the server).
func TestStopWaitsForClosingClients(t *testing.T) {
	tg := newTGW(t, "ok")
	var logbuf syncBuffer
	tg.Log = slog.New(slog.NewTextHandler(io.MultiWriter(&logbuf, tlogWriter{t}), nil))
	z := tg.zurl("closing")
	srv, err := tg.start(z)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(srv.Mountpoint() + "/.wcfs/stats")
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan struct{})
	go func() {
		time.Sleep(300 * time.Millisecond) // the stop's first unmount is busy
		f.Close()
		close(closed)
	}()
	if err := srv.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-closed
	if log := logbuf.String(); strings.Contains(log, "abort FUSE connection") || strings.Contains(log, "kill -") {
		t.Errorf("the stop escalated although the client let go:\n%s", log)
	}
	if st := srv.proc.exitStatus(); st != "status 0" {
		t.Errorf("server: %s, want status 0", st)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
