// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package neotest runs a real NEO cluster on 127.0.0.1 for Go tests.
//
// The cluster (one master, one storage node serving a FileStorage written by
// genuine ZODB, read-only) is neo/go's library code run by the helper command
// ./cmd/neocluster in a child process: a FUSE server under test never shares
// a process with its storage, and outages are real (SIGKILL, SIGSTOP of the
// cluster; restart on the same addresses). The helper asks the master to
// start the cluster (neo/go's stock `neo master` never does) and reports
// readiness once a NEO client can open the cluster; Start waits for that line.
//
// The helper is built once per test process with the go command; the binary
// is kept open and its directory removed at once, and it is executed through
// /proc/<pid>/fd/<n>, so that nothing is left on disk even if the test process
// is killed. Clusters are stopped by PID in t.Cleanup and die with the test
// process (see package testproc).
//
// neos:// clusters (Options.TLS) get a throw-away CA and one node
// certificate, shared by the cluster and its clients as NEO deployments do.
//
// Limits of neo/go (v0.0.0-20240924102820) that shape the tests: its storage
// backend is read-only (no commits through NEO: commits are tested over ZEO),
// its client dials only the first master of a zurl, and its client does not
// resume a session once the cluster was away (it keeps failing; see
// docs/operations.md, "Storage outages"). Outages therefore take the whole
// cluster (one process) away and bring it back together.
package neotest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb"
	_ "lab.nexedi.com/kirr/neo/go/zodb/wks" // the drivers of Open

	"wendelin.dev/wcfs/gocore/internal/testenv"
	"wendelin.dev/wcfs/gocore/internal/testproc"
)

// Options configure a cluster.
type Options struct {
	Name string // cluster name (default "wcfstest")
	TLS  bool   // serve neos:// with generated certificates
}

// Cluster is a running (or stopped, between Stop and Restart) NEO cluster.
//
// The embedded Service takes it away (Stop, Kill, Pause/Resume) and brings it
// back (Restart) on the same addresses; its Log is the running process's.
type Cluster struct {
	*testproc.Service

	Name        string
	FS          string    // the FileStorage served
	MasterAddr  string    // host:port, constant over restarts
	StorageAddr string    // host:port, constant over restarts
	TLS         *TLSFiles // nil without TLS
	Head        string    // head of the database as reported at readiness
}

// TLSFiles are the PEM files of a neos:// cluster.
type TLSFiles struct {
	CA, Cert, Key string
}

const readyPrefix = "neocluster: ready "

// Start starts a cluster over the FileStorage at fsPath and registers its stop
// with t.Cleanup. It fails t if the cluster does not come up.
func Start(t testing.TB, fsPath string, opt Options) *Cluster {
	t.Helper()
	helper := Helper(t)
	if opt.Name == "" {
		opt.Name = "wcfstest"
	}
	c := &Cluster{Name: opt.Name, FS: fsPath}
	if opt.TLS {
		tlsf, err := WriteTLSFiles(t.TempDir())
		if err != nil {
			t.Fatalf("neotest: %v", err)
		}
		c.TLS = tlsf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	err := testproc.StartOnFreePorts(ctx, t, 2, func(addrs []string) *testproc.Service {
		c.MasterAddr, c.StorageAddr = addrs[0], addrs[1]
		c.Service = testproc.NewService(c.spec(helper))
		c.Check = c.checkReady
		return c.Service
	})
	if err != nil {
		t.Fatalf("neotest: %v", err)
	}
	return c
}

func (c *Cluster) spec(helper string) testproc.Spec {
	args := []string{"-cluster", c.Name, "-master", c.MasterAddr, "-storage", c.StorageAddr}
	if c.TLS != nil {
		args = append(args, "-ca", c.TLS.CA, "-cert", c.TLS.Cert, "-key", c.TLS.Key)
	}
	args = append(args, c.FS)
	return testproc.Spec{
		Name:  fmt.Sprintf("neo cluster %s@%s", c.Name, c.MasterAddr),
		Path:  helper,
		Args:  args,
		Ready: func(line string) bool { return strings.HasPrefix(line, readyPrefix) },
	}
}

// checkReady checks the helper's ready line ("<zurl> head=<tid>") against
// what was asked and records the head.
func (c *Cluster) checkReady(p *testproc.Proc) error {
	f := strings.Fields(strings.TrimPrefix(p.ReadyLine(), readyPrefix))
	if len(f) != 2 || f[0] != c.ZURL() || !strings.HasPrefix(f[1], "head=") {
		return fmt.Errorf("unexpected ready line %q (want zurl %s)", p.ReadyLine(), c.ZURL())
	}
	c.Head = strings.TrimPrefix(f[1], "head=")
	return nil
}

// ZURL returns the zurl clients use: neo://NAME@MASTER, or
// neos://NAME@MASTER?ca=...&cert=...&key=... with TLS.
func (c *Cluster) ZURL() string {
	if c.TLS == nil {
		return fmt.Sprintf("neo://%s@%s", c.Name, c.MasterAddr)
	}
	return fmt.Sprintf("neos://%s@%s?%s", c.Name, c.MasterAddr, c.TLS.Query())
}

// Open opens the storage at zurl with neo/go's own client (read-only, no
// cache) and closes it when the test ends: what a spelling of a cluster's
// zurl opens, beside what WCFS makes of it.
func Open(t testing.TB, zurl string) zodb.IStorage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stor, err := zodb.Open(ctx, zurl, &zodb.OpenOptions{ReadOnly: true, NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stor.Close() })
	return stor
}

var helperBuild struct {
	once sync.Once
	path string // /proc/<pid>/fd/<n>
	file *os.File
	err  error
}

// Helper returns an executable path of the neocluster helper, building it
// (once per test process) with the go command; it skips t when there is no go
// command and fails it when the build fails.
func Helper(t testing.TB) string {
	t.Helper()
	testenv.NeedGo(t)
	helperBuild.once.Do(func() {
		helperBuild.path, helperBuild.file, helperBuild.err = buildHelper()
	})
	if helperBuild.err != nil {
		t.Fatalf("neotest: %v", helperBuild.err)
	}
	return helperBuild.path
}

func buildHelper() (path string, f *os.File, err error) {
	dir, err := os.MkdirTemp("", "neotest-")
	if err != nil {
		return "", nil, fmt.Errorf("build neocluster: %w", err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "neocluster")
	if err := testenv.GoBuild(bin, "wendelin.dev/wcfs/gocore/internal/neotest/cmd/neocluster"); err != nil {
		return "", nil, fmt.Errorf("build neocluster: %w", err)
	}
	// keep the binary open and execute it through /proc: nothing stays on disk
	f, err = os.Open(bin)
	if err != nil {
		return "", nil, fmt.Errorf("build neocluster: %w", err)
	}
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd()), f, nil
}
