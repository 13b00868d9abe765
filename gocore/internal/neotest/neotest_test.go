// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package neotest

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"testing"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/testproc"
)

// neo/go logs through glog, which otherwise writes files into $TMPDIR.
func TestMain(m *testing.M) {
	flag.Set("logtostderr", "true")
	os.Exit(m.Run())
}

// sameObjects checks that every object of the FileStorage, at head, reads
// the same (data and serial) through neo://.
func sameObjects(t *testing.T, fs, neo zodb.IStorage, head zodb.Tid) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := 0
loop:
	for oid := zodb.Oid(0); ; oid++ {
		xid := zodb.Xid{Oid: oid, At: head}
		want, wserial, werr := fs.Load(ctx, xid)
		got, gserial, gerr := neo.Load(ctx, xid)
		if werr != nil {
			// absent (not yet created, deleted): the same answer, as the same type
			var noObj *zodb.NoObjectError
			var noData *zodb.NoDataError
			switch {
			case errors.As(werr, &noObj):
				if !errors.As(gerr, &noObj) {
					t.Fatalf("oid %s: FileStorage: %v; neo:// gives %v", oid, werr, gerr)
				}
				if oid > 0x400 {
					break loop // past the last oid of the fixture (0x217)
				}
			case errors.As(werr, &noData):
				want := *noData
				if !errors.As(gerr, &noData) || *noData != want {
					t.Fatalf("oid %s: FileStorage: %v; neo:// gives %v", oid, werr, gerr)
				}
			default:
				t.Fatalf("oid %s: FileStorage: %v", oid, werr)
			}
			continue
		}
		if gerr != nil {
			t.Fatalf("oid %s: neo: %v", oid, gerr)
		}
		if gserial != wserial || !bytes.Equal(got.Data, want.Data) {
			t.Fatalf("oid %s: neo:// serial %s (%d bytes), FileStorage serial %s (%d bytes)",
				oid, gserial, len(got.Data), wserial, len(want.Data))
		}
		got.Release()
		want.Release()
		n++
	}
	if n < 100 {
		t.Fatalf("only %d objects compared", n)
	}
}

// A cluster serves exactly the FileStorage behind it, over neo:// and neos://.
func TestClusterServesFileStorage(t *testing.T) {
	manifest, fsPath := testdb.SmallFixture(t)
	fs := Open(t, fsPath)
	head := manifest.Head

	for _, tc := range []struct {
		name string
		opt  Options
	}{
		{"neo", Options{}},
		{"neos", Options{Name: "tlscluster", TLS: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Start(t, fsPath, tc.opt)
			if c.Head != head.String() {
				t.Fatalf("cluster head %s, FileStorage head %s", c.Head, manifest.Head)
			}
			neo := Open(t, c.ZURL())
			if neo.Head() != head {
				t.Fatalf("client head %s, want %s", neo.Head(), head)
			}
			sameObjects(t, fs, neo, head)
			// and as of an older revision
			sameObjects(t, fs, neo, manifest.Transactions[2].Tid)
		})
	}
}

// A cluster goes away (clean stop, crash) and comes back on the same
// addresses; at the end every process it started is gone.
func TestClusterRestart(t *testing.T) {
	_, fsPath := testdb.SmallFixture(t)
	var pids []int
	t.Run("cluster", func(t *testing.T) {
		c := Start(t, fsPath, Options{})
		maddr := c.MasterAddr
		for i, takeAway := range []func() error{c.Stop, c.Kill} {
			pid := c.PID()
			pids = append(pids, pid)
			if err := takeAway(); err != nil {
				t.Fatal(err)
			}
			if testproc.Alive(pid) {
				t.Fatalf("round %d: pid %d alive after the cluster was taken away", i, pid)
			}
			if conn, err := net.DialTimeout("tcp", maddr, time.Second); err == nil {
				conn.Close()
				t.Fatalf("round %d: master %s still accepts", i, maddr)
			}
			if err := c.Restart(); err != nil {
				t.Fatal(err)
			}
			if c.MasterAddr != maddr {
				t.Fatalf("master moved from %s to %s", maddr, c.MasterAddr)
			}
			// a fresh client reads from the restarted cluster
			stor := Open(t, c.ZURL())
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _, err := stor.Load(ctx, zodb.Xid{Oid: 0, At: stor.Head()})
			cancel()
			if err != nil {
				t.Fatalf("round %d: load after restart: %v", i, err)
			}
		}
		pids = append(pids, c.PID())
	})
	for _, pid := range pids {
		if testproc.Alive(pid) {
			t.Errorf("cluster pid %d left running", pid)
		}
	}
}
