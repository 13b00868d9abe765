// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package zeotest runs a genuine ZEO server (ZEO's own `runzeo`, from the
// project's venv) for Go tests.
//
// Start launches runzeo on 127.0.0.1 over a FileStorage, on a free port, and
// returns once the server listens (its "listening on" log line, then one TCP
// connect as a check). The server is stopped by PID in t.Cleanup, so nothing
// is left behind even when the test fails; runzeo also dies with the test
// process (see package testproc).
//
// Outages: Stop, Kill and Pause/Resume take the server away in the three ways
// a real one goes (clean shutdown, crash, hang); Restart brings it back on the
// same port, over the same FileStorage, so that clients can reconnect (the
// methods of testproc.Service).
//
// runzeo is the venv's (package testenv: beside $WCFS_PYTHON, else in
// <repo>/.venv/bin); tests skip with a message saying how to create it when
// it is absent.
package zeotest

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"wendelin.dev/wcfs/gocore/internal/testenv"
	"wendelin.dev/wcfs/gocore/internal/testproc"
)

// Runzeo returns the path of the venv's runzeo, or skips t with a clear
// message when the venv does not have it.
func Runzeo(t testing.TB) string {
	t.Helper()
	return testenv.VenvBin(t, "runzeo")
}

// Server is a genuine ZEO server serving one FileStorage on 127.0.0.1.
//
// The embedded Service takes it away (Stop, Kill, Pause/Resume) and brings it
// back (Restart) on the same address; its Log is the running process's.
type Server struct {
	*testproc.Service

	FS   string // the FileStorage path
	Addr string // host:port, constant over restarts
}

// Start starts runzeo over the FileStorage at fsPath (created when missing)
// and registers its stop with t.Cleanup. It fails t if the server does not
// come up.
func Start(t testing.TB, fsPath string) *Server {
	t.Helper()
	runzeo := Runzeo(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var s *Server
	err := testproc.StartOnFreePorts(ctx, t, 1, func(addrs []string) *testproc.Service {
		s = newServer(runzeo, fsPath, addrs[0])
		return s.Service
	})
	if err != nil {
		t.Fatalf("zeotest: %v", err)
	}
	return s
}

func newServer(runzeo, fsPath, addr string) *Server {
	host, port, _ := net.SplitHostPort(addr)
	listening := fmt.Sprintf("listening on ('%s', %s)", host, port)
	s := &Server{FS: fsPath, Addr: addr}
	s.Service = testproc.NewService(testproc.Spec{
		Name:  "runzeo " + addr,
		Path:  runzeo,
		Args:  []string{"-a", addr, "-f", fsPath},
		Env:   []string{"PYTHONWARNINGS=ignore", "PYTHONUNBUFFERED=1"},
		Dir:   filepath.Dir(fsPath),
		Ready: func(line string) bool { return strings.Contains(line, listening) },
	})
	// the log line is written right after listen(2); check that it accepts
	s.Check = func(*testproc.Proc) error {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			return fmt.Errorf("logged %q but does not accept: %w", listening, err)
		}
		return c.Close()
	}
	return s
}

// ZURL returns the zurl of the server (zeo://127.0.0.1:PORT).
func (s *Server) ZURL() string { return "zeo://" + s.Addr }
