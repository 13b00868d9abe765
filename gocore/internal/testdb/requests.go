// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package testdb

import (
	"encoding/json"
	"os"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// Format is a block format for writes.
type Format string

const (
	Default    Format = ""      // the file's default format
	ZBlk0      Format = "ZBlk0" // the whole block as one object
	ZBlk1      Format = "ZBlk1" // 4 KiB chunks in an IOBTree
	Auto       Format = "auto"  // wendelin.core's heuristic (spec 4.3)
	ZBlkLegacy Format = "ZBlk"  // ZBlk0 data under the legacy class name ZBlk
)

// do runs a request and decodes the named answer fields into outs
// (name, pointer, name, pointer...), failing the test on error.
func (db *DB) do(req map[string]any, outs ...any) {
	db.t.Helper()
	ans, err := db.Exec(req)
	if err != nil {
		db.t.Fatal(err)
	}
	for i := 0; i < len(outs); i += 2 {
		key := outs[i].(string)
		if err := json.Unmarshal(ans[key], outs[i+1]); err != nil {
			db.t.Fatalf("testdb: %s: answer field %q: %v", req["op"], key, err)
		}
	}
}

func (db *DB) parseOid(op, s string) zodb.Oid {
	db.t.Helper()
	oid, err := zodb.ParseOid(s)
	if err != nil {
		db.t.Fatalf("testdb: %s: %v", op, err)
	}
	return oid
}

// CreateFile creates an empty ZBigFile at root[name] and returns its oid.
// fmt is the file's default format for writes (Default: ZBlk0).
func (db *DB) CreateFile(name string, blksize int64, fmt Format) zodb.Oid {
	db.t.Helper()
	if fmt == Default {
		fmt = ZBlk0
	}
	var oid string
	db.do(map[string]any{"op": "create_file", "name": name, "blksize": blksize, "fmt": fmt}, "oid", &oid)
	return db.parseOid("create_file", oid)
}

// DeleteFile removes root[name].
func (db *DB) DeleteFile(name string) {
	db.t.Helper()
	db.do(map[string]any{"op": "delete_file", "name": name})
}

func fmtArg(f Format) any {
	if f == Default {
		return nil
	}
	return string(f)
}

// WriteBlock sets the content of block blk (zero-padded to blksize) in the
// file's default format. Writes are stored at Commit, in ascending block
// order, like wendelin.core's dirty pages.
func (db *DB) WriteBlock(name string, blk int64, data []byte) {
	db.t.Helper()
	db.WriteBlockAs(name, blk, data, Default)
}

// WriteBlockAs is WriteBlock in the given format.
func (db *DB) WriteBlockAs(name string, blk int64, data []byte, fmt Format) {
	db.t.Helper()
	if data == nil {
		data = []byte{}
	}
	db.do(map[string]any{"op": "write_block", "name": name, "blk": blk, "data": data, "fmt": fmtArg(fmt)})
}

// Write writes data at byte offset off (read-modify-write of the blocks).
func (db *DB) Write(name string, off int64, data []byte) {
	db.t.Helper()
	if data == nil {
		data = []byte{}
	}
	db.do(map[string]any{"op": "write", "name": name, "offset": off, "data": data})
}

// ZeroBlock stores zeros as block blk (the block stays in blktab).
func (db *DB) ZeroBlock(name string, blk int64) {
	db.t.Helper()
	db.do(map[string]any{"op": "zero_block", "name": name, "blk": blk})
}

// DeleteBlock deletes blktab[blk]: the block becomes a hole.
func (db *DB) DeleteBlock(name string, blk int64) {
	db.t.Helper()
	db.do(map[string]any{"op": "delete_block", "name": name, "blk": blk})
}

// PunchHole deletes every blktab entry in [lo, hi).
func (db *DB) PunchHole(name string, lo, hi int64) {
	db.t.Helper()
	db.do(map[string]any{"op": "punch_hole", "name": name, "lo": lo, "hi": hi})
}

// Truncate deletes every block >= nblk.
func (db *DB) Truncate(name string, nblk int64) {
	db.t.Helper()
	db.do(map[string]any{"op": "truncate", "name": name, "nblk": nblk})
}

// SetFormat stores block blk again in format fmt (a new ZBlk object when the
// format differs).
func (db *DB) SetFormat(name string, blk int64, fmt Format) {
	db.t.Helper()
	db.do(map[string]any{"op": "set_format", "name": name, "blk": blk, "fmt": string(fmt)})
}

// SetDefaultFormat changes the format of the file's later writes.
func (db *DB) SetDefaultFormat(name string, fmt Format) {
	db.t.Helper()
	db.do(map[string]any{"op": "set_default_format", "name": name, "fmt": string(fmt)})
}

// SetBlkSize changes the ZBigFile's blksize (an epoch); blocks keep their data.
func (db *DB) SetBlkSize(name string, blksize int64) {
	db.t.Helper()
	db.do(map[string]any{"op": "set_blksize", "name": name, "blksize": blksize})
}

// ReplaceBlkTab gives the ZBigFile a new blktab object (an epoch): with the
// same blocks when keepBlocks, else empty.
func (db *DB) ReplaceBlkTab(name string, keepBlocks bool) {
	db.t.Helper()
	db.do(map[string]any{"op": "replace_blktab", "name": name, "keep_blocks": keepBlocks})
}

// SetObject sets root[key] to a plain persistent object (a PersistentMapping
// holding value) and returns its oid.
func (db *DB) SetObject(key string, value any) zodb.Oid {
	db.t.Helper()
	var oid string
	db.do(map[string]any{"op": "set_object", "key": key, "value": value}, "oid", &oid)
	return db.parseOid("set_object", oid)
}

// Commit commits the pending changes and returns the new tid. It fails the
// test when nothing changed (ZODB writes no transaction then); see
// CommitChanged.
func (db *DB) Commit(description string) zodb.Tid {
	db.t.Helper()
	tid, _ := db.CommitChanged(description)
	if tid == 0 {
		db.t.Fatalf("testdb: commit %q: nothing changed, no transaction written", description)
	}
	return tid
}

// CommitChanged commits the pending changes and returns the new tid (0 when
// nothing changed) and the files the transaction changed.
func (db *DB) CommitChanged(description string) (zodb.Tid, []string) {
	db.t.Helper()
	var tid *string
	var changed []string
	db.do(map[string]any{"op": "commit", "description": description}, "tid", &tid, "changed_files", &changed)
	if tid == nil {
		return 0, nil
	}
	t, err := zodb.ParseTid(*tid)
	if err != nil {
		db.t.Fatalf("testdb: commit: %v", err)
	}
	return t, changed
}

// Abort discards the pending changes.
func (db *DB) Abort() {
	db.t.Helper()
	db.do(map[string]any{"op": "abort"})
}

// Head returns the tid of the last committed transaction.
func (db *DB) Head() zodb.Tid {
	db.t.Helper()
	var s string
	db.do(map[string]any{"op": "head"}, "tid", &s)
	tid, err := zodb.ParseTid(s)
	if err != nil {
		db.t.Fatalf("testdb: head: %v", err)
	}
	return tid
}

// Files returns the names of the ZBigFiles (uncommitted changes included).
func (db *DB) Files() []string {
	db.t.Helper()
	var names []string
	db.do(map[string]any{"op": "files"}, "files", &names)
	return names
}

// FileInfo is a file at head: its manifest entry and toolkit details.
type FileInfo struct {
	FileState
	Name      string
	Fmt       Format   // default format of writes
	BlkTabOid zodb.Oid // oid of the blktab LOBTree
}

// File returns the committed state of file name at head.
func (db *DB) File(name string) *FileInfo {
	db.t.Helper()
	var raw json.RawMessage
	db.do(map[string]any{"op": "file", "name": name}, "file", &raw)
	var extra struct {
		Name      string `json:"name"`
		Fmt       string `json:"fmt"`
		BlkTabOid string `json:"blktab_oid"`
	}
	var jf jsonFile
	if err := json.Unmarshal(raw, &jf); err != nil {
		db.t.Fatalf("testdb: file %s: %v", name, err)
	}
	_ = json.Unmarshal(raw, &extra)
	st, err := parseFile(jf, FileIdentity{})
	if err != nil {
		db.t.Fatalf("testdb: file %s: %v", name, err)
	}
	info := &FileInfo{FileState: *st, Name: extra.Name, Fmt: Format(extra.Fmt)}
	if extra.BlkTabOid != "" {
		info.BlkTabOid = db.parseOid("file", extra.BlkTabOid)
	}
	return info
}

// ReadBlock returns the expected content of block blk (blksize bytes,
// pending writes included) as the toolkit's model has it.
func (db *DB) ReadBlock(name string, blk int64) []byte {
	db.t.Helper()
	var data []byte
	db.do(map[string]any{"op": "read_block", "name": name, "blk": blk}, "data", &data)
	return data
}

// Manifest returns the manifest recorded while committing: every file at
// every transaction.
func (db *DB) Manifest() *Manifest {
	db.t.Helper()
	return db.manifest("manifest")
}

// ReadBack returns the manifest computed by reading the database back
// through ZODB at every transaction.
func (db *DB) ReadBack() *Manifest {
	db.t.Helper()
	return db.manifest("read_back")
}

func (db *DB) manifest(op string) *Manifest {
	db.t.Helper()
	f, err := os.CreateTemp("", "testdb-manifest-*.json")
	if err != nil {
		db.t.Fatalf("testdb: %s: %v", op, err)
	}
	path := f.Name()
	f.Close()
	defer os.Remove(path)
	db.do(map[string]any{"op": op, "path": path})
	m, err := LoadManifest(path)
	if err != nil {
		db.t.Fatalf("testdb: %s: %v", op, err)
	}
	return m
}

// WriteManifest writes the recorded manifest to path (JSON).
func (db *DB) WriteManifest(path string) {
	db.t.Helper()
	db.do(map[string]any{"op": "manifest", "path": path})
}
