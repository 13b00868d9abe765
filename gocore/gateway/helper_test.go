// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

// Helper processes for the tests: the test binary re-executed with
// $GATEWAY_TEST_HELPER set.
//
// "server:<mode>" is a stand-in of the wcfs server used to inject the
// failures the real server does not make on demand (fails before ready, never
// ready, serves another zurl, reports ready without a mount). It keeps the
// server's contract: argv ends in "ZURL MOUNTPOINT", a fuse.wcfs mount with
// source ZURL and .wcfs/zurl, readiness through sd_notify, SIGTERM unmounts
// (or stays up when busy). Tests of the normal path use the real bin/wcfs.
//
// "lock <path> <log>" takes the start lock, appends "in <pid>" and
// "out <pid>" to log around a short critical section, and releases it.
// "lock-and-die <mountpoint>" takes the start lock, makes the mountpoint,
// says "locked" and waits to be killed. "ensureroot <root>" and "start
// <root> <zurl> <server>" run ensureRoot and Start as whoever runs them (the
// tests' second user).

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"wendelin.dev/wcfs/gocore/internal/startlock"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

const helperEnv = "GATEWAY_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helperMain(h, os.Args[1:]))
	}
	wcfstest.Main(m) // removes the server binary it built
}

func helperMain(h string, args []string) int {
	if mode, ok := strings.CutPrefix(h, "server:"); ok {
		return fakeServer(mode, args)
	}
	switch h {
	case "lock":
		lk, err := lockStart(context.Background(), args[0], nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		log, err := os.OpenFile(args[1], os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(log, "in %d\n", os.Getpid())
		time.Sleep(5 * time.Millisecond)
		fmt.Fprintf(log, "out %d\n", os.Getpid())
		lk.Unlock()
		return 0
	case "ensureroot":
		// ensureRoot of root args[0], as whoever runs this
		if err := (&Gateway{Root: args[0]}).ensureRoot(); err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Println("ok")
		return 0
	case "start":
		// Start of zurl args[1] with root args[0] and server args[2]
		g := &Gateway{Root: args[0], Exe: args[2], StartTimeout: 2 * time.Minute, Log: slog.New(slog.DiscardHandler)}
		srv, err := g.Start(context.Background(), args[1], nil, StartOptions{})
		if err != nil {
			fmt.Println(err)
			return 1
		}
		srv.Stop(context.Background())
		fmt.Println("started")
		return 0
	case "lock-and-die":
		// a starter that dies holding the start lock of mountpoint
		// args[0], after it made the directory
		lk, err := lockStart(context.Background(), lockPath(args[0]), nil)
		if err == nil {
			err = startlock.MakeMountpoint(args[0])
		}
		if err != nil {
			fmt.Println(err)
			return 1
		}
		fmt.Println("locked")
		time.Sleep(time.Hour)
		lk.Unlock()
		return 0
	case "notify":
		// what a server says on a failed start, then exit at once
		daemon.SdNotify(false, "STATUS=starting")
		daemon.SdNotify(false, "STATUS=open "+args[0]+": no such file or directory\nERRNO=2")
		return 3
	}
	fmt.Fprintln(os.Stderr, "unknown helper", h)
	return 2
}

type fakeRoot struct {
	fs.Inode
	zurl string
}

func (r *fakeRoot) OnAdd(ctx context.Context) {
	file := func(data string) *fs.Inode {
		return r.NewPersistentInode(ctx, &fs.MemRegularFile{Data: []byte(data), Attr: fuse.Attr{Mode: 0o444}}, fs.StableAttr{})
	}
	dir := func() *fs.Inode {
		return r.NewPersistentInode(ctx, &fs.Inode{}, fs.StableAttr{Mode: syscall.S_IFDIR})
	}
	dot := dir()
	r.AddChild(".wcfs", dot, false)
	dot.AddChild("zurl", file(r.zurl), false)
	dot.AddChild("stats", file("BigFile 0\nRevHead 0\n"), false)
	r.AddChild("head", dir(), false)
}

func fakeServer(mode string, args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "Usage: fake wcfs [OPTIONS] zurl mntpt")
		return 2
	}
	zurlStr, mntpt := args[len(args)-2], args[len(args)-1]
	served := zurlStr
	switch mode {
	case "fail":
		daemon.SdNotify(false, "STATUS=open "+zurlStr+": no such file or directory\nERRNO=2")
		return 1
	case "ready-no-mount":
		daemon.SdNotify(false, "READY=1")
		time.Sleep(time.Hour)
		return 0
	case "wrong-zurl":
		served = "file:///somewhere/else.fs"
	}
	srv, err := fs.Mount(mntpt, &fakeRoot{zurl: served}, &fs.Options{MountOptions: fuse.MountOptions{
		Name: "wcfs", FsName: zurlStr, DirectMountStrict: true}})
	if err != nil {
		daemon.SdNotify(false, "STATUS=mount: "+err.Error())
		return 1
	}
	sigq := make(chan os.Signal, 1)
	signal.Notify(sigq, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for range sigq {
			if err := srv.Unmount(); err != nil {
				fmt.Fprintln(os.Stderr, "fake wcfs: unmount:", err, "(staying up)")
			}
		}
	}()
	if mode != "never-ready" {
		daemon.SdNotify(false, "READY=1\nSTATUS=serving "+zurlStr)
	}
	srv.Wait()
	return 0
}
