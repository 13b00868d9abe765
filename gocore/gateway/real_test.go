// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

// The gateway with the real server (bin/wcfs built by wcfstest) on databases
// written by genuine ZODB (testdb).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// realTGW returns a test gateway spawning the real server, and the zurl of
// a fresh database with one 64 KiB-block ZBigFile "zf" and its content.
func realTGW(t *testing.T) (tg *tgw, zurlStr string, path string, data []byte) {
	t.Helper()
	tg = newTGW(t, "")
	tg.Exe = wcfstest.Binary(t)
	tg.StartTimeout = 2 * time.Minute // -race builds start slowly on 2 cores
	tg.env = os.Environ()
	tg.ServerOutput = nil // servers log to <root>/<id>.log
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	oid := db.CreateFile("zf", 64<<10, testdb.ZBlk1)
	data = bytes.Repeat([]byte("wcfs"), 3*(64<<10)/4)
	db.Write("zf", 0, data)
	db.Commit("real")
	return tg, db.ZURL(), fmt.Sprintf("head/bigfile/%s", oid), data
}

func TestRealServer(t *testing.T) {
	tg, z, path, data := realTGW(t)
	w, err := tg.join(z, AutostartYes)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(w.Mountpoint(), path))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read through the mount: %d bytes, %v", len(got), err)
	}
	checks, err := tg.Status(context.Background(), z)
	if err != nil {
		t.Fatalf("status: %v\n%v", err, checks)
	}
	logp := logPath(w.Mountpoint())
	if w.Server().LogPath() != logp || !strings.Contains(fmt.Sprint(checks), "server log: "+logp) {
		t.Errorf("server log %q, status %v; want %s in both", w.Server().LogPath(), checks, logp)
	}
	if log, _ := os.ReadFile(logp); !strings.Contains(string(log), "serving "+z) {
		t.Errorf("server log %s: %q; want the server's log lines", logp, log)
	}

	// another process's registry attaches to the same server
	other := &Gateway{Exe: tg.Exe, Root: tg.Root, Log: tg.Log}
	w2, err := other.Join(context.Background(), z, JoinOptions{Autostart: AutostartNo})
	if err != nil || w2.Server() != nil {
		t.Fatalf("second registry: %v", err)
	}

	// crash: the next join with autostart cleans the stale mount
	srv := w.Server()
	killServer(t, srv)
	if _, err := os.ReadFile(filepath.Join(w.Mountpoint(), ".wcfs/zurl")); !isDeadFUSE(err) {
		t.Fatalf("after crash: %v", err)
	}
	w.Close()
	w2.Close()
	w3, err := other.Join(context.Background(), z, JoinOptions{Autostart: AutostartYes})
	if err != nil {
		t.Fatal(err)
	}
	got, err = os.ReadFile(filepath.Join(w3.Mountpoint(), path))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read after restart: %d bytes, %v", len(got), err)
	}
	w3.Close()
	if err := tg.Stop(context.Background(), z); err != nil {
		t.Fatal(err)
	}
	tg.stopped(z, w3.Server())
	srv.stopLocked(context.Background())
}

// A joined server that dies does not stay in the registry: the next join,
// while the old joins are still open, starts (autostart) or attaches to a
// new server, in the registry that started the dead one and in one that
// attached to it.
func TestRealJoinAfterServerDied(t *testing.T) {
	tg, z, path, data := realTGW(t)
	w1, err := tg.join(z, AutostartYes)
	if err != nil {
		t.Fatal(err)
	}
	other := &Gateway{Exe: tg.Exe, Root: tg.Root, Log: tg.Log}
	o1, err := other.Join(context.Background(), z, JoinOptions{Autostart: AutostartNo})
	if err != nil {
		t.Fatal(err)
	}
	// the attaching registry finds the server's process in the background
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		other.mu.Lock()
		found := o1.proc != nil
		other.mu.Unlock()
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the attached server's process is not found")
		}
	}
	dead := w1.Server()
	killServer(t, dead)

	w2, err := tg.join(z, AutostartYes)
	if err != nil {
		t.Fatal(err)
	}
	if w2 == w1 || w2.Server() == nil || w2.Server().Pid() == dead.Pid() {
		t.Fatalf("join after the server died returned the dead server's WCFS")
	}
	o2, err := other.Join(context.Background(), z, JoinOptions{Autostart: AutostartNo})
	if err != nil {
		t.Fatalf("attaching registry, join after the server died: %v", err)
	}
	if o2 == o1 || o2.Server() != nil {
		t.Fatalf("attaching registry: join returned the dead server's WCFS")
	}
	for _, w := range []*WCFS{w2, o2} {
		if got, err := os.ReadFile(filepath.Join(w.Mountpoint(), path)); err != nil || !bytes.Equal(got, data) {
			t.Errorf("read through the new server: %d bytes, %v", len(got), err)
		}
	}
	// the old joins close with the dead server's error; the new ones stay
	for _, w := range []*WCFS{w1, o1} {
		if err := w.Close(); err != nil && !isDeadFUSE(err) {
			t.Errorf("close of a dead join: %v", err)
		}
	}
	if w, err := tg.JoinRunning(context.Background(), z); w != w2 || err != nil {
		t.Errorf("registry after the dead joins closed: %v, %v; want the new WCFS", w, err)
	} else {
		w.Close()
	}
	o2.Close()
	w2.Close()
	if err := w2.Server().Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	tg.stopped(z, w2.Server())
	dead.stopLocked(context.Background()) // releases its handle
}

func TestRealMissingDatabase(t *testing.T) {
	tg := newTGW(t, "")
	tg.Exe = wcfstest.Binary(t)
	tg.StartTimeout = 2 * time.Minute
	tg.env = os.Environ()
	tg.ServerOutput = nil
	z := "file://" + filepath.Join(t.TempDir(), "nonexistent.fs")
	_, err := tg.start(z)
	var errno syscall.Errno
	if err == nil || !strings.Contains(err.Error(), "exited with status 1 before it was ready: wcfs: ") ||
		!strings.Contains(err.Error(), "nonexistent.fs") || !errors.As(err, &errno) {
		t.Fatalf("start on a missing database: %v", err)
	}
	// the error names the server's log, which stays to explain it
	mntpt, _ := tg.Mountpoint(z)
	if !strings.Contains(err.Error(), "(server log: "+logPath(mntpt)+")") {
		t.Errorf("start error does not name the server log %s: %v", logPath(mntpt), err)
	}
	if log, _ := os.ReadFile(logPath(mntpt)); !strings.Contains(string(log), "nonexistent.fs") {
		t.Errorf("server log: %q; want the server's error", log)
	}
	// the next start replaces it, a successful stop removes it
	if err := tg.Stop(context.Background(), z); err != nil {
		t.Fatal(err)
	}
	tg.stopped(z, nil)
}

// -autoexit: the server exits once its last client is gone.
func TestRealAutoexit(t *testing.T) {
	tg, z, _, _ := realTGW(t)
	tg.env = append(tg.env, EnvOptions+"=-autoexit.grace=200ms")
	w, err := tg.join(z, AutostartYes)
	if err != nil {
		t.Fatal(err)
	}
	srv := w.Server()
	if srv.proc.wait(context.Background(), time.Second) {
		t.Fatal("the server exited while joined")
	}
	w.Close()
	if !srv.proc.wait(context.Background(), time.Minute) {
		t.Fatal("the server does not exit after its last client left")
	}
	if ok, _ := IsMounted(w.Mountpoint()); ok {
		t.Fatal("still mounted after autoexit")
	}
	// the server removed its mountpoint directory and its log
	tg.stopped(z, srv)
}
