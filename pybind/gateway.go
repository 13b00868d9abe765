// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package pybind

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"

	"wendelin.dev/wcfs/gocore/gateway"
)

// gw is the process's gateway: its registry is the per-process registry
// of joined servers.
var gw = &gateway.Gateway{Log: slog.New(queueHandler{})}

// Autostart values of Join.
const (
	AutostartEnv = int(gateway.AutostartEnv)
	AutostartYes = int(gateway.AutostartYes)
	AutostartNo  = int(gateway.AutostartNo)
)

// Mountpoint returns the mountpoint of zurl (it creates nothing).
func Mountpoint(zurl string) (string, error) {
	return gw.Mountpoint(zurl)
}

// MakeMountpoint returns the mountpoint of zurl, creating the directory if
// it is missing (the reference's _mntpt_4zurl).
func MakeMountpoint(zurl string) (string, error) {
	mntpt, err := gw.MakeMountpoint(zurl)
	return mntpt, pyerr(err)
}

// DefaultAutostart says whether a join starts a server when its caller does
// not say, by $WENDELIN_CORE_WCFS_AUTOSTART of environ (see gateway).
func DefaultAutostart(environ string) (bool, error) {
	env, err := strlist("environ", environ)
	if err != nil {
		return false, err
	}
	return gateway.DefaultAutostart(env)
}

// ServerOptions returns (a JSON list) the options a server started with
// optv gets: $WENDELIN_CORE_WCFS_OPTIONS of environ, then optv (see gateway).
func ServerOptions(optv, environ string) (string, error) {
	opts, err := strlist("optv", optv)
	if err != nil {
		return "", err
	}
	env, err := strlist("environ", environ)
	if err != nil {
		return "", err
	}
	js, err := json.Marshal(gateway.ServerOptions(env, opts))
	return string(js), err
}

// Join joins the server for zurl (see gateway.Gateway.Join). environ is the
// caller's environment as a JSON list of "K=V".
func Join(zurl string, autostart int, environ string, startTimeout float64) (*WCFS, error) {
	env, err := strlist("environ", environ)
	if err != nil {
		return nil, err
	}
	w, err := gw.Join(context.Background(), zurl, gateway.JoinOptions{
		Autostart: gateway.Autostart(autostart), Env: env, StartTimeout: seconds(startTimeout)})
	if err != nil {
		return nil, pyerr(err)
	}
	return &WCFS{w}, nil
}

// JoinRunning joins the server for zurl if it runs; else it returns a WCFS
// that is not OK (Join then decides, with the environment, what to do).
func JoinRunning(zurl string) (*WCFS, error) {
	w, err := gw.JoinRunning(context.Background(), zurl)
	if err != nil {
		return nil, pyerr(err)
	}
	return &WCFS{w}, nil
}

// Start starts a server for zurl with options optv (JSON list).
func Start(zurl, optv, environ string, timeout float64) (*Server, error) {
	opts, err := strlist("optv", optv)
	if err != nil {
		return nil, err
	}
	env, err := strlist("environ", environ)
	if err != nil {
		return nil, err
	}
	s, err := gw.Start(context.Background(), zurl, opts, gateway.StartOptions{Env: env, Timeout: seconds(timeout)})
	if err != nil {
		return nil, pyerr(err)
	}
	return &Server{s}, nil
}

// ServeRun is a Serve running in the background (see ServeAsync).
type ServeRun struct {
	starting chan struct{} // closed when the server is about to run, or Serve ended
	done     chan struct{}
	err      error
}

// ServeAsync runs a server for zurl in the foreground of this process (the
// server's output is ours), as Serve does, in the background: WaitStarting
// returns once it is about to run the server (a stale mount cleaned), Wait
// once it ended. With exec this process becomes the server.
func ServeAsync(zurl, optv, environ string, exec bool) (*ServeRun, error) {
	opts, err := strlist("optv", optv)
	if err != nil {
		return nil, err
	}
	env, err := strlist("environ", environ)
	if err != nil {
		return nil, err
	}
	r := &ServeRun{starting: make(chan struct{}), done: make(chan struct{})}
	var once sync.Once
	started := func() { once.Do(func() { close(r.starting) }) }
	go func() {
		defer close(r.done)
		defer started()
		r.err = pyerr(gw.Serve(context.Background(), zurl, opts, exec,
			gateway.StartOptions{Env: env, OnStarting: started}))
	}()
	return r, nil
}

// WaitStarting waits until the server is about to run; it returns Serve's
// error if Serve ended before.
func (r *ServeRun) WaitStarting() error {
	<-r.starting
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// Wait waits until Serve ended and returns its error.
func (r *ServeRun) Wait() error {
	<-r.done
	return r.err
}

// Stop stops the server for zurl, whoever started it, within ctx.
func Stop(zurl string, ctx *Ctx) error {
	return pyerr(gw.Stop(ctx.context(), zurl))
}

// Status checks the server for zurl. It returns a JSON list of
// {"ok": bool, "msg": str}; on failure the last one failed (the error is not
// returned separately so that Python gets the lines either way).
func Status(zurl string) string {
	checks, _ := gw.Status(context.Background(), zurl)
	type line struct {
		OK  bool   `json:"ok"`
		Msg string `json:"msg"`
	}
	v := []line{}
	for _, c := range checks {
		v = append(v, line{c.OK, c.Msg})
	}
	js, _ := json.Marshal(v)
	return string(js)
}

// WaitMount waits until a server for zurl serves at mntpt and returns a
// descriptor of its .wcfs/zurl, which the caller owns.
func WaitMount(zurl, mntpt string, ctx *Ctx) (int, error) {
	f, err := gw.WaitMount(ctx.context(), zurl, mntpt)
	if err != nil {
		return -1, pyerr(err)
	}
	return detachFd(f)
}

// IsMounted reports whether something is mounted at path, from the mount
// table only (a hung server cannot block it).
func IsMounted(path string) (bool, error) {
	return gateway.IsMounted(path)
}

// Unmount unmounts the top mount at mntpt (lazily if lazy).
func Unmount(mntpt string, lazy bool, timeout float64) error {
	ctx, cancel := timeoutCtx(timeout)
	defer cancel()
	return pyerr(gw.Unmount(ctx, mntpt, lazy))
}

// detachFd returns a duplicate of f's descriptor (close-on-exec) and closes f.
func detachFd(f *os.File) (int, error) {
	defer f.Close()
	return dupCloexec(int(f.Fd()))
}

// ---- WCFS ----

// WCFS is a joined server (gateway.WCFS).
type WCFS struct{ w *gateway.WCFS }

// OK reports whether w is a joined server (see JoinRunning).
func (w *WCFS) OK() bool { return w.w != nil }

func (w *WCFS) Mountpoint() string { return w.w.Mountpoint() }
func (w *WCFS) Zurl() string       { return w.w.Zurl() }
func (w *WCFS) NJoin() int         { return w.w.NJoin() }

// Serial identifies the underlying connection: joins return the same
// serial until the last Close.
func (w *WCFS) Serial() int { return int(w.w.Serial()) }

// HeldFd is the descriptor of the held .wcfs/zurl.
func (w *WCFS) HeldFd() int { return w.w.HeldFd() }

// HasServer reports whether this join started the server.
func (w *WCFS) HasServer() bool { return w.w.Server() != nil }

// Server returns the server this join started (check HasServer first).
func (w *WCFS) Server() *Server { return &Server{w.w.Server()} }

// Close releases one join.
func (w *WCFS) Close() error { return pyerr(w.w.Close()) }

// ---- Server ----

// Server is a started server (gateway.Server).
type Server struct{ s *gateway.Server }

func (s *Server) Mountpoint() string { return s.s.Mountpoint() }
func (s *Server) Zurl() string       { return s.s.Zurl() }
func (s *Server) Pid() int           { return s.s.Pid() }
func (s *Server) Exited() bool       { return s.s.Exited() }
func (s *Server) StuckDump() string  { return s.s.StuckDump() }

// AbortFd returns a new descriptor (close-on-exec, owned by the caller) of
// the FUSE connection's abort file, or -1 once the server was stopped.
func (s *Server) AbortFd() (int, error) {
	return s.s.DupAbortFd()
}

// Stop stops the server within ctx (no deadline: the default, 20s).
func (s *Server) Stop(ctx *Ctx) error {
	return pyerr(s.s.Stop(ctx.context()))
}

// Hooks of StopHooked, a bit each.
const (
	HookStuck          = 1 << iota // the server does not exit after SIGKILL
	HookBusy                       // processes still use the mount
	HookLastUnmountTry             // the last unmount of a mount still there
)

// StopRun is a stop whose hooks Python runs (see StopHooked).
type StopRun struct {
	events chan string // a hook to run ("" never: done closes instead)
	resume chan string // the hook's error ("" if none)
	done   chan struct{}
	err    error
}

// StopHooked stops the server within ctx as Stop does, with the hooks in
// mask run by Python (the reference's Server._stop hooks): Python calls
// Next, which returns the next hook to run ("stuck", "busy\n<who>",
// "lastunmount\n<mountpoint>") or "" once the stop ended (with its error);
// after running a hook Python calls Resume with the hook's error ("" if
// none), and then Next again.
func (s *Server) StopHooked(ctx *Ctx, mask int) *StopRun {
	r := &StopRun{events: make(chan string), resume: make(chan string), done: make(chan struct{})}
	// Python calls Next until the stop ended, and Resume after each hook
	hook := func(ev string) string {
		r.events <- ev
		return <-r.resume
	}
	var hooks gateway.StopHooks
	if mask&HookStuck != 0 {
		hooks.OnStuck = func() { hook("stuck") }
	}
	if mask&HookBusy != 0 {
		hooks.OnBusy = func(hv []gateway.Holder) {
			who := make([]string, len(hv))
			for i, h := range hv {
				who[i] = h.String()
			}
			hook("busy\n" + strings.Join(who, "\n"))
		}
	}
	if mask&HookLastUnmountTry != 0 {
		hooks.LastUnmountTry = func(mntpt string) error {
			if e := hook("lastunmount\n" + mntpt); e != "" {
				return errors.New(e)
			}
			return nil
		}
	}
	go func() {
		defer close(r.done)
		r.err = pyerr(s.s.StopWith(ctx.context(), hooks))
	}()
	return r
}

// Next returns the next hook to run, or "" and the stop's error once it
// ended.
func (r *StopRun) Next() (string, error) {
	select {
	case ev := <-r.events:
		return ev, nil
	case <-r.done:
		return "", r.err
	}
}

// Resume continues the stop after a hook; hookErr is the hook's error.
func (r *StopRun) Resume(hookErr string) { r.resume <- hookErr }
