// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package zeotest

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb"
	_ "lab.nexedi.com/kirr/neo/go/zodb/storage/zeo"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/testproc"
)

// openHead opens zurl read-only and returns its head as seen by neo/go's
// ZEO client.
func openHead(ctx context.Context, zurl string) (string, error) {
	stor, err := zodb.Open(ctx, zurl, &zodb.OpenOptions{ReadOnly: true, NoCache: true})
	if err != nil {
		return "", err
	}
	defer stor.Close()
	if err := stor.Sync(ctx); err != nil {
		return "", err
	}
	return stor.Head().String(), nil
}

// A genuine ZEO server comes up, serves the FileStorage behind it, goes away
// in the three ways a real one does, comes back on the same port and is
// gone, by PID, at the end.
func TestServerLifecycle(t *testing.T) {
	manifest, small := testdb.SmallFixture(t)
	fs := testdb.CopyFS(t, small)

	var pid int
	t.Run("server", func(t *testing.T) {
		pid = testServerLifecycle(t, fs, manifest)
	})
	// the subtest's cleanup stopped the server
	if pid != 0 && testproc.Alive(pid) {
		t.Errorf("runzeo pid %d left running after cleanup", pid)
	}
}

func testServerLifecycle(t *testing.T, fs string, manifest *testdb.Manifest) int {
	z := Start(t, fs)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	check := func(when string) {
		t.Helper()
		head, err := openHead(ctx, z.ZURL())
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if head != manifest.Head.String() {
			t.Fatalf("%s: head %s, want %s (the FileStorage's)", when, head, manifest.Head)
		}
	}
	check("started")
	pid := z.PID()

	// hang: a paused server answers nothing; the client's own deadline ends the wait
	stor, err := zodb.Open(ctx, z.ZURL(), &zodb.OpenOptions{ReadOnly: true, NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := z.Pause(); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = stor.Sync(sctx)
	scancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sync against a paused server: %v, want deadline exceeded", err)
	}
	if err := z.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := stor.Sync(ctx); err != nil {
		t.Fatalf("sync after resume: %v", err)
	}
	stor.Close()

	// clean stop: process gone, port closed; restart on the same address
	addr := z.Addr
	if err := z.Stop(); err != nil {
		t.Fatal(err)
	}
	if testproc.Alive(pid) {
		t.Fatalf("pid %d still alive after Stop", pid)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts after Stop", addr)
	}
	if err := z.Restart(); err != nil {
		t.Fatal(err)
	}
	if z.Addr != addr {
		t.Fatalf("restart moved the server from %s to %s", addr, z.Addr)
	}
	check("restarted after stop")

	// crash and restart
	pid = z.PID()
	if err := z.Kill(); err != nil {
		t.Fatal(err)
	}
	if testproc.Alive(pid) {
		t.Fatalf("pid %d still alive after Kill", pid)
	}
	if err := z.Restart(); err != nil {
		t.Fatal(err)
	}
	check("restarted after kill")
	return z.PID()
}

// A server that cannot start (its address is taken) fails with runzeo's own
// words and leaves no process.
func TestStartFailureIsReported(t *testing.T) {
	Runzeo(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := newServer(Runzeo(t), t.TempDir()+"/new.fs", l.Addr().String())
	err = s.Start(context.Background())
	if err == nil {
		s.Stop()
		t.Fatal("runzeo started on a taken address")
	}
	if s.PID() != 0 {
		t.Fatalf("a failed start left pid %d", s.PID())
	}
	t.Logf("error (expected): %.300s", err)
}
