// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// readRecord is one block read, checked against the manifest at the end.
type readRecord struct {
	head bool     // read through head/: at = head/at before the read
	at   zodb.Tid // @<at>/ read
	file string
	blk  int64
	sha  string
	n    int
}

// Several readers of head/ and @<rev>/ files while genuine ZODB commits
// for a few seconds: every @<rev> read is exact, every head/ read shows
// data of a revision at or after what head/at said before the read (or ends
// at an EOF the kernel's attribute cache still had: see below), no read
// fails, and the server (built with -race under `go test -race`, halting on
// the first race) survives.
func TestStress(t *testing.T) {
	t.Parallel()
	duration := 3 * time.Second
	if testing.Short() {
		duration = time.Second
	}
	type file struct {
		name    string
		blksize int64
		fmt     testdb.Format
		oid     zodb.Oid
	}
	files := []*file{
		{name: "a", blksize: 4 << 10, fmt: testdb.Auto},
		{name: "b", blksize: 64 << 10, fmt: testdb.ZBlk1},
		{name: "c", blksize: 16 << 10, fmt: testdb.ZBlk0},
	}
	const nblk = 24
	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
	rng := rand.New(rand.NewSource(1))
	for _, f := range files {
		f.oid = db.CreateFile(f.name, f.blksize, f.fmt)
		for blk := int64(0); blk < nblk; blk += 2 {
			db.WriteBlock(f.name, blk, randData(rng.Int63(), int(f.blksize)))
		}
	}
	var tidsMu sync.Mutex
	tids := []zodb.Tid{db.Commit("init")}

	srv := wcfstest.Start(t, db.ZURL())
	headAt := func() (zodb.Tid, error) {
		data, err := os.ReadFile(srv.Path("head", "at"))
		if err != nil {
			return 0, err
		}
		return zodb.ParseTid(string(data))
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var recMu sync.Mutex
	var records []readRecord
	errc := make(chan error, 100)
	reader := func(seed int64, head bool) {
		defer wg.Done()
		rng := rand.New(rand.NewSource(seed))
		for {
			select {
			case <-stop:
				return
			default:
			}
			f := files[rng.Intn(len(files))]
			blk := rng.Int63n(nblk + 4) // some past EOF
			r := readRecord{head: head, file: f.name, blk: blk}
			var path string
			if head {
				at, err := headAt()
				if err != nil {
					errc <- err
					return
				}
				r.at = at
				path = srv.Path("head", "bigfile", f.oid.String())
			} else {
				tidsMu.Lock()
				r.at = tids[rng.Intn(len(tids))]
				tidsMu.Unlock()
				path = srv.Path("@"+r.at.String(), "bigfile", f.oid.String())
			}
			data, err := readAt(path, blk*f.blksize, int(f.blksize))
			if err != nil && !errors.Is(err, io.EOF) {
				errc <- err
				return
			}
			r.n, r.sha = len(data), sha(data)
			recMu.Lock()
			records = append(records, r)
			recMu.Unlock()
			if rng.Intn(20) == 0 { // sometimes a whole file: multi-block reads
				if _, err := os.ReadFile(path); err != nil {
					errc <- err
					return
				}
			}
		}
	}
	for i := 0; i < 3; i++ {
		wg.Add(2)
		go reader(int64(10+i), true)
		go reader(int64(20+i), false)
	}

	// the writer: genuine ZODB commits (testdb is used from the test goroutine)
	deadline := time.Now().Add(duration)
	ncommit := 0
	for time.Now().Before(deadline) {
		for k := 0; k < 1+rng.Intn(3); k++ {
			f := files[rng.Intn(len(files))]
			blk := rng.Int63n(nblk)
			if rng.Intn(10) == 0 {
				db.DeleteBlock(f.name, blk)
			} else {
				db.WriteBlock(f.name, blk, randData(rng.Int63(), int(f.blksize)))
			}
		}
		tid, _ := db.CommitChanged("stress")
		if tid == 0 {
			continue
		}
		ncommit++
		tidsMu.Lock()
		tids = append(tids, tid)
		tidsMu.Unlock()
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("read: %v", err)
	}

	// check every read against the manifest
	m := db.Manifest()
	expect := func(txn *testdb.Txn, name string, blk int64) (string, int) {
		fs := txn.Files[name]
		if fs == nil {
			return "", -1 // the file does not exist yet
		}
		if blk >= fs.NBlocks() {
			return sha(nil), 0
		}
		return fs.BlockSha256(blk), int(fs.BlkSize)
	}
	var nhead, nrev int
	for _, r := range records {
		if !r.head {
			nrev++
			if sha, n := expect(m.Txn(r.at), r.file, r.blk); sha != r.sha || n != r.n {
				t.Errorf("@%s/%s block %d: read %d bytes that differ from the manifest", r.at, r.file, r.blk, r.n)
			}
			continue
		}
		nhead++
		ok := false
		for _, txn := range m.Transactions {
			if txn.Tid < r.at {
				// The kernel may read with a file size up to its attribute
				// timeout old: it drops a GETATTR reply if an invalidation of
				// the file (another commit) happened while it was in flight,
				// and then reads with the size it had (docs/server.md, "Known
				// kernel behaviour"). Such a read ends at an old EOF.
				if r.n == 0 && txn.Tid.Time().Add(2*time.Second).After(r.at.Time().Time) {
					if _, n := expect(txn, r.file, r.blk); n == 0 {
						ok = true
						break
					}
				}
				continue
			}
			if sha, n := expect(txn, r.file, r.blk); sha == r.sha && n == r.n {
				ok = true
				break
			}
		}
		if !ok {
			var hist []string
			for _, txn := range m.Transactions {
				if txn.Tid >= r.at {
					sha, n := expect(txn, r.file, r.blk)
					hist = append(hist, fmt.Sprintf("@%s: %d bytes %.8s (size %d)", txn.Tid, n, sha, txn.Files[r.file].Size))
				}
			}
			t.Errorf("head/%s block %d read after head/at=%s: %d bytes %.8s: data of no revision at or after it:\n%s",
				r.file, r.blk, r.at, r.n, r.sha, strings.Join(hist, "\n"))
		}
	}
	t.Logf("%d commits; %d head reads, %d @rev reads checked", ncommit, nhead, nrev)
	if nhead == 0 || nrev == 0 || ncommit < 5 {
		t.Errorf("too little happened: %d commits, %d head reads, %d @rev reads", ncommit, nhead, nrev)
	}
	// in the end head/ shows the last commit, exactly
	if last := tids[len(tids)-1]; !waitHeadAt(srv, last) {
		t.Fatalf("head/at never showed the last commit %s", last)
	}
	checkView(t, srv, m, m.Last(), "head")
}

// waitHeadAt waits until head/at shows tid.
func waitHeadAt(srv *wcfstest.Server, tid zodb.Tid) bool {
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if data, err := os.ReadFile(srv.Path("head", "at")); err == nil && string(data) == tid.String() {
			return true
		}
	}
	return false
}
