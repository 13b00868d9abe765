// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

// Benchmarks of the gateway with the real server, side by side with plain
// file operations on the same mount (BENCHMARKS.md, "## Gateway"):
//
//	go test -run=NONE -bench=. -benchtime=200x ./gocore/gateway

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

func benchGateway(b *testing.B) (*tgw, string) {
	b.Helper()
	tg := newTGW(b, "")
	tg.Exe = wcfstest.Binary(b)
	tg.StartTimeout = 2 * time.Minute
	tg.env = os.Environ()
	tg.Log = slog.New(slog.DiscardHandler) // quiet
	db := testdb.Create(b, filepath.Join(b.TempDir(), "1.fs"))
	db.CreateFile("zf", 64<<10, testdb.ZBlk1)
	db.WriteBlock("zf", 0, []byte("data"))
	db.Commit("bench")
	return tg, db.ZURL()
}

// runningServer starts a server for the benchmark.
func runningServer(b *testing.B) (*tgw, string, *Server) {
	tg, z := benchGateway(b)
	srv, err := tg.start(z)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Stop(context.Background()) })
	return tg, z, srv
}

// Join of a running server by a fresh registry (what a new process does):
// mount table, bounded open+read of .wcfs/zurl, registration; then Close.
func BenchmarkJoinRunning(b *testing.B) {
	tg, z, _ := runningServer(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g := &Gateway{Exe: tg.Exe, Root: tg.Root}
		w, err := g.Join(context.Background(), z, JoinOptions{Autostart: AutostartNo})
		if err != nil {
			b.Fatal(err)
		}
		w.Close()
	}
}

// The same open+read+close of .wcfs/zurl, plainly.
func BenchmarkOpenPlain(b *testing.B) {
	_, _, srv := runningServer(b)
	path := srv.Mountpoint() + "/.wcfs/zurl"
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		io.ReadAll(f)
		f.Close()
	}
}

// Join of a server already joined by this process: a registry hit.
func BenchmarkJoinRegistered(b *testing.B) {
	tg, z, _ := runningServer(b)
	w0, err := tg.join(z, AutostartNo)
	if err != nil {
		b.Fatal(err)
	}
	defer w0.Close()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, err := tg.join(z, AutostartNo)
		if err != nil {
			b.Fatal(err)
		}
		w.Close()
	}
}

// Start until ready (sd_notify), then a clean Stop of the idle server.
func BenchmarkStartStop(b *testing.B) {
	tg, z := benchGateway(b)
	var start, stop time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		srv, err := tg.start(z)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := srv.Stop(context.Background()); err != nil {
			b.Fatal(err)
		}
		start += t1.Sub(t0)
		stop += time.Since(t1)
	}
	b.ReportMetric(float64(start.Microseconds())/float64(b.N), "µs-start/op")
	b.ReportMetric(float64(stop.Microseconds())/float64(b.N), "µs-stop/op")
}
