// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package pybind

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

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

// Serve runs a server for zurl in the foreground; with exec this process
// becomes the server (Serve returns only on error).
func Serve(zurl, optv, environ string, exec bool) error {
	opts, err := strlist("optv", optv)
	if err != nil {
		return err
	}
	env, err := strlist("environ", environ)
	if err != nil {
		return err
	}
	return pyerr(gw.Serve(context.Background(), zurl, opts, exec, gateway.StartOptions{Env: env}))
}

// Stop stops the server for zurl, whoever started it.
func Stop(zurl string, timeout float64) error {
	ctx, cancel := timeoutCtx(timeout)
	defer cancel()
	return pyerr(gw.Stop(ctx, zurl))
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
func WaitMount(zurl, mntpt string, timeout float64) (int, error) {
	ctx, cancel := timeoutCtx(timeout)
	defer cancel()
	f, err := gw.WaitMount(ctx, zurl, mntpt)
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

// Info returns "<serial> <mountpoint>" (one call instead of two).
func (w *WCFS) Info() string { return fmt.Sprintf("%d %s", w.w.Serial(), w.w.Mountpoint()) }

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

// Stop stops the server within timeout seconds (<= 0: the default, 20s).
func (s *Server) Stop(timeout float64) error {
	ctx, cancel := timeoutCtx(timeout)
	defer cancel()
	return pyerr(s.s.Stop(ctx))
}
