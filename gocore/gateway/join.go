// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"wendelin.dev/wcfs/gocore/zurl"
)

// WCFS is a joined server: a filesystem-level connection to it, shared by
// all joins of its zurl in this process. It keeps .wcfs/zurl of the mount
// open until the last Close, so that the mount stays busy and an -autoexit
// server stays up.
type WCFS struct {
	g      *Gateway
	zurl   zurl.ZURL
	mntpt  string
	f      *os.File // .wcfs/zurl
	srv    *Server  // the server this join started, or nil
	serial uint64

	njoin int      // protected by g.mu
	proc  *process // protected by g.mu: the server found running (attach), once found
}

// Zurl returns the zurl of the first join, as given.
func (w *WCFS) Zurl() string { return w.zurl.String() }

// Mountpoint returns where the server is mounted.
func (w *WCFS) Mountpoint() string { return w.mntpt }

// Server returns the server this join started (autostart), or nil.
func (w *WCFS) Server() *Server { return w.srv }

// Serial identifies w among the WCFS of this Gateway: a later join after
// the last Close gets a new WCFS with another serial.
func (w *WCFS) Serial() uint64 { return w.serial }

// HeldFd returns the descriptor of the held .wcfs/zurl.
func (w *WCFS) HeldFd() int { return int(w.f.Fd()) }

// NJoin returns how many joins this WCFS was returned for and not closed.
func (w *WCFS) NJoin() int {
	w.g.mu.Lock()
	defer w.g.mu.Unlock()
	return w.njoin
}

// Close releases one join. The last Close removes w from the registry and
// closes .wcfs/zurl; it never stops the server. The error of that close (e.g.
// ENOTCONN after the server crashed, as the reference reports it) is
// returned, the release happens anyway.
//
// The close of .wcfs/zurl is the only close on the mount that sends the
// server a FLUSH (every other file opens with FOPEN_NOFLUSH), which is how a
// dead server shows (the kernel fails it with ENOTCONN at once). A server
// that is alive but does not answer (stopped, hung) would make the close
// wait for it: Close waits at most CloseTimeout, then returns nil, logs a
// warning and lets the close finish in the background.
func (w *WCFS) Close() error {
	g := w.g
	g.mu.Lock()
	if w.njoin <= 0 {
		g.mu.Unlock()
		return fmt.Errorf("wcfs: %s: close of an already closed connection", w.mntpt)
	}
	w.njoin--
	last := w.njoin == 0
	if last && g.reg[w.mntpt] == w {
		delete(g.reg, w.mntpt)
	}
	if last && w.proc != nil {
		w.proc.release()
		w.proc = nil
	}
	g.mu.Unlock()
	if !last {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- w.f.Close() }()
	timeout := orDefault(g.CloseTimeout, DefaultCloseTimeout)
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("wcfs: %s: close: %w", w.mntpt, err)
		}
	case <-time.After(timeout):
		g.warnf("wcfs: %s: close of .wcfs/zurl: the server did not answer within %s "+
			"(stopped or hung?); the close goes on in the background", w.mntpt, timeout)
	}
	return nil
}

// JoinOptions parametrize Join.
type JoinOptions struct {
	Autostart    Autostart
	Env          []string      // the caller's environment (nil: this process's)
	StartTimeout time.Duration // 0: $WENDELIN_CORE_WCFS_START_TIMEOUT or the Gateway's
}

// Join returns the WCFS of the server for zurl, joining it; the same WCFS
// for every join of an equivalent zurl until its last Close. If no server
// runs it starts one with -autoexit when autostart allows it, else it fails
// with ErrNotRunning. A stale mount of a crashed server is cleaned first.
// Anything else at the mountpoint is refused.
func (g *Gateway) Join(ctx context.Context, zurlStr string, opt JoinOptions) (*WCFS, error) {
	z, err := zurl.Parse(zurlStr)
	var w *WCFS
	if err == nil {
		w, err = g.join(ctx, z, &opt)
	}
	if err != nil {
		return nil, opError("join", zurlStr, err)
	}
	return w, nil
}

// JoinRunning is Join of a server that runs: it returns nil (and no error)
// where Join would start a server or fail with ErrNotRunning. It needs no
// environment, which spares callers to build one on the common path.
func (g *Gateway) JoinRunning(ctx context.Context, zurlStr string) (*WCFS, error) {
	z, err := zurl.Parse(zurlStr)
	var w *WCFS
	if err == nil {
		w, err = g.join(ctx, z, nil)
	}
	if err != nil {
		return nil, opError("join", zurlStr, err)
	}
	return w, nil
}

// join is Join, or JoinRunning if opt is nil.
func (g *Gateway) join(ctx context.Context, z zurl.ZURL, opt *JoinOptions) (*WCFS, error) {
	mntpt := g.mountpoint(z)
	if w := g.registered(mntpt); w != nil {
		return w, nil
	}
	// slow path, one at a time per mountpoint in this process
	release, err := g.joining.Lock(ctx, mntpt)
	if err != nil {
		return nil, err
	}
	defer release()
	if w := g.registered(mntpt); w != nil {
		return w, nil
	}

	st, err := g.classify(ctx, z, mntpt, true)
	if err != nil {
		return nil, err
	}
	if st.kind == stateRunning {
		return g.register(z, mntpt, st.f, nil, st.mount), nil
	}
	if opt == nil {
		return nil, nil
	}
	e := env(opt.Env)
	autostart, err := e.autostart(opt.Autostart)
	if err != nil {
		return nil, err
	}
	if !autostart {
		return nil, fmt.Errorf("%w (%s)", ErrNotRunning, st.describe(mntpt))
	}

	lk, err := g.lockStart(ctx, mntpt)
	if err != nil {
		return nil, err
	}
	defer lk.Unlock()
	// somebody may have started it while we were waiting for the lock
	st, err = g.classify(ctx, z, mntpt, true)
	if err != nil {
		return nil, err
	}
	if st.kind == stateRunning {
		return g.register(z, mntpt, st.f, nil, st.mount), nil
	}
	if err := g.cleanStale(ctx, z, st); err != nil {
		return nil, err
	}
	timeout, err := g.startTimeout(e, opt.StartTimeout)
	if err != nil {
		return nil, err
	}
	srv, f, err := g.spawn(ctx, z, mntpt, spawnOptions{
		env: e, optv: []string{"-autoexit"}, timeout: timeout, keep: true})
	if err != nil {
		return nil, err
	}
	return g.register(z, mntpt, f, srv, nil), nil
}

// registered returns the registered WCFS of mntpt with one more join. A
// WCFS whose server process exited (crashed, killed, or ended because it lost
// its storage) leaves the registry instead, so that the caller attaches to
// or starts a new server; the joins still holding it keep it until they
// close it (their accesses to its mount fail with ENOTCONN).
func (g *Gateway) registered(mntpt string) *WCFS {
	g.mu.Lock()
	w := g.reg[mntpt]
	dead := w != nil && w.serverExited()
	if dead {
		delete(g.reg, mntpt)
	} else if w != nil {
		w.njoin++
	}
	g.mu.Unlock()
	if dead {
		g.warnf("wcfs: %s: the server of the joined WCFS (%s) exited: joining anew", mntpt, describePid(w.serverPid()))
		return nil
	}
	return w
}

// serverExited tells whether the server of w is known to have exited: the
// server it started, or the one found serving the mount it attached to.
// It costs no access to the mount (the server may hang). g.mu is held.
func (w *WCFS) serverExited() bool {
	if w.srv != nil {
		return w.srv.Exited()
	}
	return w.proc != nil && w.proc.hasExited()
}

// serverPid returns the pid of w's server if known, else 0. g.mu is held
// or w left the registry.
func (w *WCFS) serverPid() int {
	if w.srv != nil {
		return w.srv.Pid()
	}
	if w.proc != nil {
		return w.proc.pid
	}
	return 0
}

// register registers a new WCFS for a server this process started (srv),
// or one it attached to (srv nil, mount m), whose process is then looked up
// in the background (the process table scan is kept off the join path).
func (g *Gateway) register(z zurl.ZURL, mntpt string, f *os.File, srv *Server, m *Mount) *WCFS {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.reg == nil {
		g.reg = map[string]*WCFS{}
	}
	g.serialno++
	w := &WCFS{g: g, zurl: z, mntpt: mntpt, f: f, srv: srv, serial: g.serialno, njoin: 1}
	g.reg[mntpt] = w
	if srv == nil && m != nil {
		go w.findServerProcess(m)
	}
	return w
}

// findServerProcess finds the process serving the mount w attached to and
// keeps a handle on it (a pidfd: cheap to check, immune to pid reuse) while
// w is joined.
func (w *WCFS) findServerProcess(m *Mount) {
	proc, err := findServer(m, w.zurl)
	if err != nil || proc == nil {
		return // e.g. in another pid namespace: deaths are then seen by accesses only
	}
	g := w.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if w.njoin == 0 || w.proc != nil {
		proc.release()
		return
	}
	w.proc = proc
}

type stateKind int

const (
	stateAbsent  stateKind = iota // nothing mounted
	stateRunning                  // our server answers
	stateDead                     // our server's mount is there, the server is gone
)

// mountState is the classified state of a mountpoint.
type mountState struct {
	kind  stateKind
	mount *Mount   // stateRunning, stateDead
	f     *os.File // stateRunning: .wcfs/zurl if kept open
	cause error    // stateDead: what the probe got
}

func (st mountState) describe(mntpt string) string {
	switch st.kind {
	case stateDead:
		return fmt.Sprintf("the previous server died and left a stale mount at %s: %v", mntpt, st.cause)
	case stateRunning:
		return "running at " + mntpt
	}
	return "nothing mounted at " + mntpt
}

// classify tells the state of mntpt for zurl (see the package doc). Foreign
// mounts, hung servers and unexpected errors are returned as errors. With
// keep, a running server's .wcfs/zurl is returned open.
func (g *Gateway) classify(ctx context.Context, z zurl.ZURL, mntpt string, keep bool) (mountState, error) {
	for retry := 0; ; retry++ {
		m, err := topMountAt(mntpt)
		if err != nil {
			return mountState{}, err
		}
		if m == nil {
			return mountState{kind: stateAbsent}, nil
		}
		if err := m.checkOurs(z); err != nil {
			return mountState{}, err
		}
		f, data, err := g.readFileBounded(ctx, mntpt+"/.wcfs/zurl", keep)
		switch {
		case err == nil:
			if !servesZurl(string(data), z) {
				if f != nil {
					f.Close()
				}
				return mountState{}, fmt.Errorf("%s/.wcfs/zurl is %q, not %q: refusing to use it", mntpt, data, z.StorageURL())
			}
			return mountState{kind: stateRunning, mount: m, f: f}, nil
		case isDeadFUSE(err):
			return mountState{kind: stateDead, mount: m, cause: err}, nil
		case errors.Is(err, os.ErrNotExist) && retry == 0:
			continue // unmounted meanwhile? look again
		case errors.Is(err, os.ErrNotExist):
			return mountState{}, fmt.Errorf("%s is a wcfs mount without .wcfs/zurl: refusing to use it", mntpt)
		}
		return mountState{}, err
	}
}

// cleanStale removes the stale mount of a dead server (state stateDead):
// the server process, if any is left, is stopped as by Server.Stop.
func (g *Gateway) cleanStale(ctx context.Context, z zurl.ZURL, st mountState) error {
	if st.kind != stateDead {
		return nil
	}
	g.warnf("wcfs: %s: cleaning the stale mount of a dead server (%v)", st.mount.Point, st.cause)
	proc, err := findServer(st.mount, z)
	if err != nil {
		return err
	}
	srv := &Server{g: g, zurl: z, mntpt: st.mount.Point, proc: proc, mount: st.mount}
	sctx, cancel := withDefaultTimeout(ctx, orDefault(g.StopTimeout, DefaultStopTimeout))
	defer cancel()
	if err := srv.stopLocked(sctx); err != nil {
		return fmt.Errorf("clean the stale mount: %w", err)
	}
	return nil
}
