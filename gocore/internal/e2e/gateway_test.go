// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package e2e

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"wendelin.dev/wcfs/gocore/gateway"
	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
	"wendelin.dev/wcfs/gocore/internal/zeotest"
)

// After a storage outage, joining the storage gives a server that follows
// it again: the server that lost its storage exits (at the latest once the
// storage is back and nobody holds its mount) saying which storage it lost,
// and the gateway starts a new one. While the storage is unreachable, a join
// that has to start a server fails with an error naming the storage and why,
// leaving nothing behind.
func TestGatewayAfterStorageOutage(t *testing.T) {
	m, fsPath := testdb.SmallFixture(t)
	f := m.Last().Files["zf0"]
	zeo := zeotest.Start(t, testdb.CopyFS(t, fsPath))
	zurl := zeo.ZURL()

	out, err := os.CreateTemp(t.TempDir(), "servers-")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	g := &gateway.Gateway{Exe: wcfstest.Binary(t), Root: t.TempDir(), ServerOutput: out}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	join := func() (*gateway.WCFS, error) {
		return g.Join(ctx, zurl, gateway.JoinOptions{Autostart: gateway.AutostartYes,
			// logs to ServerOutput, not to files in $TMPDIR
			Env: []string{"WENDELIN_CORE_WCFS_OPTIONS=-logtostderr"}})
	}
	check := func(w *gateway.WCFS, when string) {
		t.Helper()
		data, err := os.ReadFile(w.Mountpoint() + "/head/bigfile/" + f.Oid.String())
		if err != nil || shaHex(data) != f.Sha256 {
			t.Fatalf("%s: read through the mount: %v (or wrong data)", when, err)
		}
	}

	w, err := join()
	if err != nil {
		t.Fatal(err)
	}
	check(w, "before the outage")
	srv1 := w.Server()
	pid1 := srv1.Pid()

	// the storage goes away; the application drops its WCFS (as a
	// wendelin.core program does on errors)
	if err := zeo.Kill(); err != nil {
		t.Fatal(err)
	}
	closeJoin(t, w)
	if waitExit(srv1, 5*time.Second) {
		// this tree's server exits as soon as nobody holds its (detached)
		// mount: a join now has to start a server, which cannot work while
		// the storage is away: the error says which storage and why
		_, err := join()
		if err == nil {
			t.Fatal("join while the storage is unreachable succeeded")
		}
		if msg := err.Error(); !strings.Contains(msg, zurl) || !strings.Contains(msg, "refused") {
			t.Errorf("join during the outage: %q; want the zurl and the reason (connection refused)", msg)
		}
		t.Logf("join during the outage (expected to fail): %v", err)
		if mntpt, _ := g.Mountpoint(zurl); wcfstest.IsMounted(mntpt) {
			t.Errorf("a failed join left a mount at %s", mntpt)
		}
	}

	if err := zeo.Restart(); err != nil {
		t.Fatal(err)
	}
	if !waitExit(srv1, 30*time.Second) {
		t.Fatalf("server pid %d still running 30s after its storage came back", pid1)
	}
	w2, err := join()
	if err != nil {
		t.Fatalf("join once the storage is back: %v", err)
	}
	defer func() {
		closeJoin(t, w2)
		if err := w2.Server().Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	if w2.Server() == nil || w2.Server().Pid() == pid1 {
		t.Fatalf("join after the outage did not start a new server")
	}
	check(w2, "after the outage")
	if log, _ := os.ReadFile(out.Name()); !strings.Contains(string(log), zeo.Addr) {
		t.Errorf("the server that lost its storage did not say which (%s) in its output:\n%s", zeo.Addr, log)
	}
}

// closeJoin closes a join of a server that may have lost its mount.
func closeJoin(t *testing.T, w *gateway.WCFS) {
	t.Helper()
	if err := w.Close(); err != nil && !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("close: %v", err)
	}
}

// waitExit waits up to timeout for srv to exit and tells whether it did.
func waitExit(srv *gateway.Server, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !srv.Exited() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
