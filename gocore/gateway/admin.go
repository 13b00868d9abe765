// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/startlock"
	"wendelin.dev/wcfs/gocore/zurl"
)

// StartOptions parametrize Start and Serve.
type StartOptions struct {
	Env     []string      // the caller's environment (nil: this process's)
	Timeout time.Duration // readiness; 0: $WENDELIN_CORE_WCFS_START_TIMEOUT or the Gateway's
	// OnStarting, if set, is called by Serve once it is going to run the
	// server: nothing runs for the zurl, a stale mount was cleaned (the
	// reference's serve(_tstartingq=)).
	OnStarting func()
}

// Start starts a server for zurl with options optv (after
// $WENDELIN_CORE_WCFS_OPTIONS) and returns once it serves. It fails with
// ErrAlreadyRunning if a server runs; a stale mount is cleaned first.
func (g *Gateway) Start(ctx context.Context, zurlStr string, optv []string, opt StartOptions) (*Server, error) {
	z, err := zurl.Parse(zurlStr)
	var srv *Server
	if err == nil {
		srv, err = g.start(ctx, z, optv, opt)
	}
	if err != nil {
		return nil, opError("start", zurlStr, err)
	}
	return srv, nil
}

func (g *Gateway) start(ctx context.Context, z zurl.ZURL, optv []string, opt StartOptions) (*Server, error) {
	e := env(opt.Env)
	timeout, err := g.startTimeout(e, opt.Timeout)
	if err != nil {
		return nil, err
	}
	mntpt, lk, err := g.lockAbsent(ctx, z)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	srv, _, err := g.spawn(ctx, z, mntpt, spawnOptions{env: e, optv: optv, timeout: timeout})
	return srv, err
}

// lockAbsent takes the start lock of zurl's mountpoint and makes sure no
// server runs there (cleaning a stale mount); it returns the mountpoint.
func (g *Gateway) lockAbsent(ctx context.Context, z zurl.ZURL) (string, *startLock, error) {
	mntpt := g.mountpoint(z)
	lk, err := g.lockStart(ctx, mntpt)
	if err != nil {
		return "", nil, err
	}
	st, err := g.classify(ctx, z, mntpt, false)
	if err == nil && st.kind == stateRunning {
		err = fmt.Errorf("%w (at %s)", ErrAlreadyRunning, mntpt)
	}
	if err == nil {
		err = g.cleanStale(ctx, z, st)
	}
	if err != nil {
		lk.Unlock()
		return "", nil, err
	}
	return mntpt, lk, nil
}

// Serve runs a server for zurl in the foreground: it fails with
// ErrAlreadyRunning if one runs, cleans a stale mount, then with exec
// replaces this process by the server (it returns only on error), else runs
// it as a child with this process's stdio until it exits (ctx done: the
// server is stopped).
func (g *Gateway) Serve(ctx context.Context, zurlStr string, optv []string, exec bool, opt StartOptions) error {
	z, err := zurl.Parse(zurlStr)
	if err == nil {
		err = g.serve(ctx, z, optv, exec, opt)
	}
	if err != nil {
		return opError("serve", zurlStr, err)
	}
	return nil
}

func (g *Gateway) serve(ctx context.Context, z zurl.ZURL, optv []string, exec bool, opt StartOptions) error {
	e := env(opt.Env)
	g.infof("serving %s ...", z)
	mntpt, lk, err := g.lockAbsent(ctx, z)
	if err != nil {
		return err
	}
	if opt.OnStarting != nil {
		opt.OnStarting()
	}
	if exec {
		// The lock cannot be held across exec: the server takes it again
		// to create the mountpoint directory (-mntpt.create) and holds it
		// until it serves; it removes the directory when it ends, be it a
		// bad option, a missing database or Ctrl-C, and refuses to mount
		// over a mount that appeared meanwhile.
		lk.Unlock()
		argv := append([]string{g.exe(), "-mntpt.create"}, e.serverOptions(optv)...)
		argv = append(argv, z.StorageURL(), mntpt)
		err := syscall.Exec(argv[0], argv, e.list())
		return fmt.Errorf("exec %s: %w", argv[0], err)
	}

	timeout, err := g.startTimeout(e, opt.Timeout)
	if err == nil {
		var srv *Server
		srv, _, err = g.spawn(ctx, z, mntpt, spawnOptions{env: e, optv: optv, timeout: timeout, foreground: true})
		lk.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-srv.proc.exited:
		case <-ctx.Done():
			serr := srv.Stop(context.Background())
			if !srv.proc.hasExited() {
				// Stop gave up: the reaper still waits for the process
				// (and is the one to set its state)
				return fmt.Errorf("server pid%d does not exit: %w", srv.proc.pid, cmp.Or(serr, ctx.Err()))
			}
		}
		// the reaper set the state before closing exited
		if st := srv.proc.state; st == nil || !st.Success() {
			return fmt.Errorf("server pid%d exited with %s", srv.proc.pid, srv.proc.exitStatus())
		}
		return nil
	}
	lk.Unlock()
	return err
}

// Stop stops the server for zurl, whoever started it (see Server.Stop).
// Nothing mounted is not an error.
func (g *Gateway) Stop(ctx context.Context, zurlStr string) error {
	g.infof("stop %s ...", zurlStr)
	ctx, cancel := withDefaultTimeout(ctx, orDefault(g.StopTimeout, DefaultStopTimeout))
	defer cancel()
	z, err := zurl.Parse(zurlStr)
	if err != nil {
		return opError("stop", zurlStr, err)
	}
	mntpt := g.mountpoint(z)
	// a file of another user at the lock path cannot keep us from stopping
	// our server (Server.Stop goes on without the lock in any case)
	lk, err := g.lockStart(ctx, mntpt)
	switch {
	case errors.Is(err, startlock.ErrForeign):
		g.warnf("wcfs: stop %s: %s; stopping without it", zurlStr, err)
	case err != nil:
		return opError("stop", zurlStr, err)
	default:
		defer lk.Unlock()
	}
	srv, err := g.lookupServer(z, mntpt)
	if err != nil {
		return opError("stop", zurlStr, err)
	}
	if srv == nil {
		g.infof("%s: not mounted", mntpt)
		if err := removeMountpoint(mntpt); err != nil {
			return opError("stop", zurlStr, err)
		}
		g.removeLogAfterStop(mntpt)
		return nil
	}
	if err := srv.stopLocked(ctx); err != nil {
		return err
	}
	g.removeLogAfterStop(mntpt)
	return nil
}

// lookupServer returns the server mounted at mntpt for zurl (its process
// may be gone), nil if nothing is mounted, or an error for a foreign mount.
func (g *Gateway) lookupServer(z zurl.ZURL, mntpt string) (*Server, error) {
	m, err := topMountAt(mntpt)
	if err != nil || m == nil {
		return nil, err
	}
	if err := m.checkOurs(z); err != nil {
		return nil, err
	}
	proc, err := findServer(m, z)
	if err != nil {
		return nil, err
	}
	return &Server{g: g, zurl: z, mntpt: mntpt, proc: proc, mount: m}, nil
}

// Check is one line of a status report.
type Check struct {
	OK  bool
	Msg string
}

func (c Check) String() string {
	if c.OK {
		return "ok - " + c.Msg
	}
	return "fail - " + c.Msg
}

// Status checks the server for zurl: mount entry, server process, then,
// each bounded in time, stat of the mountpoint, .wcfs/zurl and .wcfs/stats.
// It stops at the first failure, which is also returned as the error.
func (g *Gateway) Status(ctx context.Context, zurlStr string) ([]Check, error) {
	var checks []Check
	ok := func(format string, argv ...any) { checks = append(checks, Check{true, fmt.Sprintf(format, argv...)}) }
	fail := func(format string, argv ...any) ([]Check, error) {
		c := Check{false, fmt.Sprintf(format, argv...)}
		return append(checks, c), opError("status", zurlStr, errors.New(c.Msg))
	}
	z, err := zurl.Parse(zurlStr)
	if err != nil {
		return fail("%s", err)
	}
	mntpt := g.mountpoint(z)
	m, err := topMountAt(mntpt)
	if err != nil {
		return fail("mount table: %s", err)
	}
	if m == nil {
		return fail("mount entry: nothing mounted at %s", mntpt)
	}
	if err := m.checkOurs(z); err != nil {
		return fail("mount entry: %s", err)
	}
	ok("mount entry: %s (source %q)", m, m.Source)
	if m.Stacked > 0 {
		ok("mount entry: %d more mount(s) under it at %s", m.Stacked, mntpt)
	}
	if w, err := os.ReadFile(fmt.Sprintf("/sys/fs/fuse/connections/%d/waiting", m.Minor)); err == nil {
		ok("FUSE connection %d: %s request(s) waiting", m.Minor, strings.TrimSpace(string(w)))
	}

	proc, err := findServer(m, z)
	if err != nil {
		return fail("server process: %s", err)
	}
	if proc == nil {
		return fail("server process: none found (crashed?); clean up with: wcfs stop %s", zurlStr)
	}
	proc.release()
	ok("server process: %s", describePid(proc.pid))
	if st, err := os.Lstat(logPath(mntpt)); err == nil {
		ok("server log: %s (%d bytes)", logPath(mntpt), st.Size())
	} else {
		ok("server log: none at %s (not started by join/start: its stderr, e.g. the journal)", logPath(mntpt))
	}

	hung := func(what string, err error) ([]Check, error) {
		var nr *NotRespondingError
		if errors.As(err, &nr) {
			return fail("%s: %s; diagnose with `wcfs status` again or stop it: wcfs stop %s", what, err, zurlStr)
		}
		return fail("%s: %s", what, err)
	}
	st, err := g.statBounded(ctx, mntpt)
	if err != nil {
		return hung("stat", err)
	}
	if st.Dev != m.Dev() {
		return fail("stat %s: device %d:%d, mount table says %d:%d", mntpt, unix.Major(st.Dev), unix.Minor(st.Dev), m.Major, m.Minor)
	}
	ok("stat %s", mntpt)
	_, data, err := g.readFileBounded(ctx, mntpt+"/.wcfs/zurl", false)
	if err != nil {
		return hung(".wcfs/zurl", err)
	}
	if !servesZurl(string(data), z) {
		return fail(".wcfs/zurl: %q, want %q", data, z.StorageURL())
	}
	ok(".wcfs/zurl: %s", data)
	_, data, err = g.readFileBounded(ctx, mntpt+"/.wcfs/stats", false)
	if err != nil {
		return hung(".wcfs/stats", err)
	}
	ok(".wcfs/stats: %s", strings.Join(strings.Fields(string(data)), " "))
	return checks, nil
}

// WaitMount waits until a server for zurl serves at mntpt and returns its
// .wcfs/zurl open. It wakes up on mount table changes (POLLPRI on
// /proc/self/mountinfo) and, since the kernel does not signal every change
// (unmounts of dead FUSE mounts, seen on 6.18), every 100ms. A dead server's
// mount is waited out too (somebody may be cleaning it), and reported if ctx
// ends first. Spawned servers are waited for by their readiness
// notification instead (see spawn); this is for servers started by others.
func (g *Gateway) WaitMount(ctx context.Context, zurlStr, mntpt string) (*os.File, error) {
	z, err := zurl.Parse(zurlStr)
	if err != nil {
		return nil, err
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer mi.Close()
	// wake the poll below when ctx is done
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	defer unix.Close(wake)
	stop := context.AfterFunc(ctx, func() { unix.Write(wake, []byte{1, 0, 0, 0, 0, 0, 0, 0}) })
	defer stop()

	last := "nothing mounted"
	for {
		m, err := topMountAt(mntpt)
		if err != nil {
			return nil, err
		}
		if m != nil {
			st, err := g.classify(ctx, z, mntpt, true)
			if err != nil {
				return nil, err
			}
			if st.kind == stateRunning {
				st.f.Seek(0, io.SeekStart) // read again by the caller
				return st.f, nil
			}
			last = st.describe(mntpt)
		}
		fds := []unix.PollFd{{Fd: int32(mi.Fd()), Events: unix.POLLPRI}, {Fd: int32(wake), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 100); err != nil && err != unix.EINTR {
			return nil, fmt.Errorf("poll mount table: %w", err)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("wait for a server at %s (%s): %w", mntpt, last, ctx.Err())
		}
	}
}

// IsMounted reports whether something is mounted at path (mount table only).
func IsMounted(path string) (bool, error) {
	m, err := topMountAt(path)
	return m != nil, err
}

// Unmount unmounts the top mount at mntpt (lazily if lazy). When the mount
// is busy the error names the processes using it.
func (g *Gateway) Unmount(ctx context.Context, mntpt string, lazy bool) error {
	m, err := topMountAt(mntpt)
	if err == nil && m == nil {
		err = fmt.Errorf("not a mountpoint: %s", mntpt)
	}
	if err == nil {
		err = g.unmount(ctx, m, lazy)
	}
	if err != nil {
		opts := ""
		if lazy {
			opts = "-z "
		}
		g.warnf("fuse_unmount %s%s: failed: %s", opts, mntpt, err)
		return fmt.Errorf("fuse_unmount %s%s: failed: %w", opts, mntpt, err)
	}
	return nil
}
