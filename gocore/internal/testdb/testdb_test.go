// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package testdb

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"
	_ "lab.nexedi.com/kirr/neo/go/zodb/storage/fs1" // file://
)

// sameHistory reports the differences between two manifests' transactions
// (changed_files compared as sets, descriptions included).
func sameHistory(t *testing.T, a, b *Manifest) {
	t.Helper()
	if len(a.Transactions) != len(b.Transactions) {
		t.Fatalf("%d transactions vs %d", len(a.Transactions), len(b.Transactions))
	}
	for i, ta := range a.Transactions {
		tb := b.Transactions[i]
		if ta.Tid != tb.Tid || ta.Description != tb.Description {
			t.Errorf("txn %d: %s %q vs %s %q", i, ta.Tid, ta.Description, tb.Tid, tb.Description)
		}
		ca, cb := slices.Sorted(slices.Values(ta.ChangedFiles)), slices.Sorted(slices.Values(tb.ChangedFiles))
		if !slices.Equal(ca, cb) {
			t.Errorf("@%s: changed files %v vs %v", ta.Tid, ca, cb)
		}
		if !reflect.DeepEqual(ta.Files, tb.Files) {
			t.Errorf("@%s: files differ:\n%+v\nvs\n%+v", ta.Tid, ta.Files, tb.Files)
		}
	}
	if a.Head != b.Head {
		t.Errorf("head %s vs %s", a.Head, b.Head)
	}
}

func sha(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

func TestDB(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "1.fs")
	db := Create(t, path, Options{Dataset: "testdb"})
	if db.Path() != path || db.ZURL() != "file://"+path {
		t.Fatalf("path %q zurl %q", db.Path(), db.ZURL())
	}
	head0 := db.Head()

	oid := db.CreateFile("zf", 4096, ZBlk1)
	db.CreateFile("zg", 64<<10, Auto)
	for blk := int64(0); blk < 70; blk++ { // > 60 blocks: blktab splits
		if blk%5 != 2 {
			db.WriteBlock("zf", blk, bytes.Repeat([]byte{byte(blk + 1)}, int(blk*50+1)))
		}
	}
	db.WriteBlockAs("zg", 3, []byte("legacy"), ZBlkLegacy)
	db.SetObject("meta", map[string]any{"n": 1})
	tid1, changed := db.CommitChanged("t1")
	if tid1 <= head0 || !slices.Equal(changed, []string{"zf", "zg"}) {
		t.Fatalf("commit: tid %s (head was %s), changed %v", tid1, head0, changed)
	}

	db.Write("zf", 4096*3+10, []byte("patch"))
	db.DeleteBlock("zf", 0)
	db.SetFormat("zf", 1, ZBlk0)
	db.ZeroBlock("zg", 3)
	tid2 := db.Commit("t2")

	db.SetObject("meta", map[string]any{"n": 2})
	if tid, changed := db.CommitChanged("t3: meta only"); tid == 0 || len(changed) != 0 {
		t.Fatalf("meta-only commit: tid %s changed %v", tid, changed)
	}
	if tid, _ := db.CommitChanged("nothing"); tid != 0 {
		t.Fatalf("empty commit wrote %s", tid)
	}

	db.Write("zg", 0, []byte("discarded"))
	db.Abort()
	db.SetBlkSize("zg", 128<<10)
	db.ReplaceBlkTab("zf", true)
	db.PunchHole("zf", 10, 20)
	db.Truncate("zf", 60)
	db.Commit("t4: epochs")

	f := db.File("zf")
	if f.Oid != oid || f.BlkSize != 4096 || f.Name != "zf" || f.Fmt != ZBlk1 || f.BlkTabOid == 0 {
		t.Fatalf("file zf: %+v", f)
	}
	if f.Size != 60*4096 || f.Blocks[1].Fmt != "ZBlk0" || f.Blocks[3].Fmt != "ZBlk1" {
		t.Fatalf("file zf: size %d blocks %+v", f.Size, f.Blocks)
	}
	if _, ok := f.Blocks[12]; ok {
		t.Fatal("zf blk 12 should be a hole")
	}
	blk3 := db.ReadBlock("zf", 3)
	want := make([]byte, 4096)
	copy(want, bytes.Repeat([]byte{4}, 151))
	copy(want[10:], "patch")
	if !bytes.Equal(blk3, want) {
		t.Fatalf("zf blk 3: got %q...", blk3[:32])
	}
	if got := f.BlockSha256(3); got != sha(want) {
		t.Fatalf("zf blk 3 sha %s, want %s", got, sha(want))
	}
	if got := f.BlockSha256(12); got != sha(make([]byte, 4096)) {
		t.Fatalf("hole sha %s", got)
	}
	if g := db.File("zg"); g.BlkSize != 128<<10 || g.Blocks[3].DataLen != 0 {
		t.Fatalf("zg: %+v", g)
	}

	m := db.Manifest()
	if m.Dataset != "testdb" || m.Head != db.Head() || len(m.Transactions) != 5 {
		t.Fatalf("manifest: dataset %q head %s, %d transactions", m.Dataset, m.Head, len(m.Transactions))
	}
	if m.Transactions[0].Description != "initial database creation" || m.Txn(tid2) == nil ||
		m.AsOf(tid2+1) != m.Txn(tid2) || m.AsOf(head0-1) != nil {
		t.Fatal("manifest lookups")
	}
	sameHistory(t, m, db.ReadBack())

	// an existing database: history read back, commits continue it
	pid := db.PID()
	db.Close()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("toolkit process %d still there after Close: %v", pid, err)
	}
	db2 := Open(t, path)
	sameHistory(t, m, db2.Manifest())
	db2.DeleteFile("zg")
	tid5 := db2.Commit("t5: zg deleted")
	m2 := db2.Manifest()
	if last := m2.Last(); last.Tid != tid5 || last.Files["zg"] != nil || !slices.Equal(last.ChangedFiles, []string{"zg"}) {
		t.Fatalf("after delete: %+v", last)
	}
	sameHistory(t, m2, db2.ReadBack())
}

func TestErrors(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "1.fs")
	db := Create(t, path)
	for _, tc := range []struct {
		req  map[string]any
		want string
	}{
		{map[string]any{"op": "bogus"}, "unknown op 'bogus'"},
		{map[string]any{"op": "write_block", "name": "nope", "blk": 0, "data": []byte("x")}, "nope: no such ZBigFile"},
		{map[string]any{"op": "create_file", "name": "zf", "blksize": 0}, "blksize must be a positive int"},
		{map[string]any{"op": "create_file", "name": "zf", "fmt": "ZBlk7"}, "unknown block format 'ZBlk7'"},
		{map[string]any{"op": "write_block", "name": "zf"}, "write_block: missing argument 'blk'"},
		{map[string]any{"op": "write_block", "name": "zf", "blk": 0, "data": "!"}, "'data' is not valid base64"},
	} {
		_, err := db.Exec(tc.req)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.req, err, tc.want)
		}
	}
	db.CreateFile("zf", 4096, Default)
	if _, err := db.Exec(map[string]any{"op": "write_block", "name": "zf", "blk": 0, "data": make([]byte, 4097)}); err == nil ||
		!strings.Contains(err.Error(), "zf: blk 0: 4097 bytes > blksize 4096") {
		t.Errorf("too long block: %v", err)
	}
	if _, err := db.Exec(map[string]any{"op": "set_format", "name": "zf", "blk": 3, "fmt": "ZBlk1"}); err == nil ||
		!strings.Contains(err.Error(), "zf: blk 3 is a hole") {
		t.Errorf("set_format of a hole: %v", err)
	}
	db.WriteBlock("zf", 0, []byte("ok")) // the server survived the errors
	db.Commit("ok")
	db.DeleteBlock("zf", 3) // a hole: nothing to do
	if tid, _ := db.CommitChanged("nothing"); tid != 0 {
		t.Errorf("deleting a hole committed %s", tid)
	}
	db.Close()
	if _, err := db.Exec(map[string]any{"op": "ping"}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("after close: %v", err)
	}

	// opening what is not there: an error greeting and exit status 1
	out, err := Command(t, "serve", filepath.Join(t.TempDir(), "absent.fs")).Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), `"error"`) ||
		!strings.Contains(string(out), "no such database") {
		t.Errorf("serve absent.fs: %v, %s", err, out)
	}
}

func TestSharedManifest(t *testing.T) {
	t.Parallel()
	m, fsPath := SmallFixture(t)
	if len(m.Transactions) != 9 || m.Head != m.Last().Tid || m.RootOid != 0 ||
		!slices.Equal(m.FileNames, []string{"zf0", "zf1", "zf64k", "zfempty", "zf4k"}) {
		t.Fatalf("small.json: %d transactions, head %s, files %v", len(m.Transactions), m.Head, m.FileNames)
	}
	f := m.Last().Files["zf4k"]
	if f.Oid != m.Files["zf4k"].Oid || f.BlkSize != 4096 || f.NBlocks() != 251 || len(f.SortedBlocks()) != 172 {
		t.Fatalf("zf4k: %+v", f)
	}
	if ZeroSha256(0) != sha(nil) || ZeroSha256(3<<20) != sha(make([]byte, 3<<20)) {
		t.Fatal("ZeroSha256")
	}

	// the toolkit reads the fixture back to exactly its manifest
	db := Open(t, CopyFS(t, fsPath))
	sameHistory(t, m, db.Manifest())
	if db.Head() != m.Head {
		t.Fatalf("head %s, want %s", db.Head(), m.Head)
	}
}

func TestParseManifestErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{`{}`, "format"},
		{`{"format":"wendelin-zbigfile-fixture/1","root_oid":"x"}`, "root_oid"},
		{`{"format":"wendelin-zbigfile-fixture/1","root_oid":"0000000000000000","files":[1]}`, "files"},
		{`{"format":"wendelin-zbigfile-fixture/1","root_oid":"0000000000000000","head":"0000000000000001",
		   "transactions":[{"tid":"0000000000000001","files":{"f":{"size":0,"blocks":{}}}}]}`, "no oid"},
		{`{"format":"wendelin-zbigfile-fixture/1","root_oid":"0000000000000000","head":"0000000000000002",
		   "transactions":[{"tid":"0000000000000002"},{"tid":"0000000000000001"}]}`, "not ascending"},
	} {
		if _, err := ParseManifest([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.in, err, tc.want)
		}
	}
}

// TestCommitWhileReading: a reader that opened the FileStorage read-only
// before the commits (as a WCFS server does) sees every new transaction.
func TestCommitWhileReading(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := Create(t, filepath.Join(t.TempDir(), "1.fs"))
	oid := db.CreateFile("zf", 4096, ZBlk0)
	db.Commit("t1")
	stor, err := zodb.Open(ctx, db.ZURL(), &zodb.OpenOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stor.Close()
	for i := 0; i < 3; i++ {
		db.WriteBlock("zf", int64(i), []byte("data"))
		tid := db.Commit(fmt.Sprintf("t%d", i+2))
		if err := stor.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if head := stor.Head(); head != tid {
			t.Fatalf("reader head %s after commit %s", head, tid)
		}
		buf, serial, err := stor.Load(ctx, zodb.Xid{At: tid, Oid: oid})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(buf.Data, []byte("wendelin.bigfile.file_zodb\nZBigFile")) || serial == 0 {
			t.Fatalf("ZBigFile record @%s: serial %s %q", tid, serial, buf.Data)
		}
		buf.Release()
	}
}
