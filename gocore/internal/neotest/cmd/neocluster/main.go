// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Command neocluster runs a one-master, one-storage NEO cluster for tests,
// built from neo/go's library, serving a FileStorage read-only.
//
//	neocluster [-ca CA -cert CERT -key KEY] -cluster NAME -master ADDR -storage ADDR DATA.fs
//
// neo/go's own `neo master` command never asks the master to start the
// cluster, so a cluster made of stock commands stays in RECOVERING forever.
// Here the master is asked to start (Master.Start) as soon as the storage
// has joined, and again whenever the cluster falls back to recovery.
//
// When a NEO client can open the cluster and read its head, neocluster
// prints one line to stdout:
//
//	neocluster: ready <zurl> head=<tid>
//
// and then serves until SIGTERM or SIGINT, after which it exits 0. Both
// nodes live in this one process so that a test can take the whole cluster
// away (SIGKILL, SIGSTOP) and bring it back on the same addresses. neo/go's
// storage backend is read-only: the database does not change while the
// cluster runs. Logs (glog) go to stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"lab.nexedi.com/kirr/neo/go/neo"
	"lab.nexedi.com/kirr/neo/go/neo/neonet"
	"lab.nexedi.com/kirr/neo/go/neo/storage/fs1"
	"lab.nexedi.com/kirr/neo/go/zodb"
)

func main() {
	// glog writes to files in $TMPDIR by default: keep everything on stderr
	flag.Set("logtostderr", "true")
	cluster := flag.String("cluster", "", "cluster name")
	masterAddr := flag.String("master", "127.0.0.1:0", "address the master listens on")
	storageAddr := flag.String("storage", "127.0.0.1:0", "address the storage listens on")
	ca := flag.String("ca", "", "CA certificate (TLS: neos://)")
	cert := flag.String("cert", "", "node certificate (TLS)")
	key := flag.String("key", "", "node private key (TLS)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: %s [options] DATA.fs\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 || *cluster == "" {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg := neonet.Config{CA: *ca, Cert: *cert, Key: *key}
	if err := run(ctx, *cluster, *masterAddr, *storageAddr, cfg, flag.Arg(0)); err != nil {
		fmt.Fprintf(os.Stderr, "neocluster: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cluster, masterAddr, storageAddr string, cfg neonet.Config, path string) (err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	net, err := neonet.Join(ctx, cfg)
	if err != nil {
		return err
	}
	defer net.Close()

	back, err := fs1.Open(ctx, path)
	if err != nil {
		return fmt.Errorf("storage backend: %w", err)
	}
	ml, err := net.Listen(ctx, masterAddr)
	if err != nil {
		back.Close()
		return fmt.Errorf("master: %w", err)
	}
	sl, err := net.Listen(ctx, storageAddr)
	if err != nil {
		back.Close()
		ml.Close()
		return fmt.Errorf("storage: %w", err)
	}
	maddr := ml.Addr().String()

	m := neo.NewMaster(cluster, net)
	s := neo.NewStorage(cluster, []string{maddr}, net, back) // s.Run closes back

	var wg sync.WaitGroup
	var runErr error
	var errOnce sync.Once
	fail := func(who string, err error) {
		if err != nil && ctx.Err() == nil {
			errOnce.Do(func() { runErr = fmt.Errorf("%s: %w", who, err) })
			cancel(err)
		}
	}
	wg.Add(2)
	go func() { defer wg.Done(); fail("master", m.Run(ctx, ml)) }()
	go func() { defer wg.Done(); fail("storage", s.Run(ctx, sl)) }()

	// Keep asking the master to start: it refuses until the storage has
	// joined, and after an outage of the storage it is back in recovery.
	// Start may block while the master is between phases, so it is not
	// waited for on shutdown.
	go func() {
		for ctx.Err() == nil {
			m.Start() // error: not (yet) operational, ask again
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()

	zurl := clusterURL(cluster, maddr, cfg)
	if head, err := waitServing(ctx, zurl); err == nil {
		fmt.Printf("neocluster: ready %s head=%s\n", zurl, head)
	} else if ctx.Err() == nil {
		fail("readiness", err)
	}

	<-ctx.Done()
	wg.Wait()
	return runErr
}

// clusterURL is the zurl clients use for the cluster.
func clusterURL(cluster, maddr string, cfg neonet.Config) string {
	if cfg.CA == "" {
		return fmt.Sprintf("neo://%s@%s", cluster, maddr)
	}
	q := url.Values{"ca": {cfg.CA}, "cert": {cfg.Cert}, "key": {cfg.Key}}
	return fmt.Sprintf("neos://%s@%s?%s", cluster, maddr, q.Encode())
}

// waitServing opens the cluster as a NEO client until that works (the master
// rejects clients until the cluster is running) and returns the head.
func waitServing(ctx context.Context, zurl string) (zodb.Tid, error) {
	deadline := time.Now().Add(60 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		head, err := openHead(ctx, zurl)
		if err == nil {
			return head, nil
		}
		lastErr = err
	}
	return 0, fmt.Errorf("cluster not serving after 60s: %w", lastErr)
}

func openHead(ctx context.Context, zurl string) (zodb.Tid, error) {
	// the client redials a rejecting master only once a second: a fresh
	// client per short attempt notices a started cluster sooner
	ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	stor, err := zodb.Open(ctx, zurl, &zodb.OpenOptions{ReadOnly: true, NoCache: true})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			time.Sleep(10 * time.Millisecond)
		}
		return 0, err
	}
	defer stor.Close()
	if err := stor.Sync(ctx); err != nil {
		return 0, err
	}
	return stor.Head(), nil
}
