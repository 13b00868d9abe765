// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

// Package testdb lets Go tests make and change real ZODB databases, written
// by genuine Python ZODB, and know what every ZBigFile holds at every
// revision.
//
// It drives the Python toolkit tools/pylib/ztestdb through one subprocess
// per database ("python -m ztestdb serve DB", a JSON-lines protocol
// documented in tools/pylib/ztestdb/serve.py), the way neo/go's own tests
// commit through Python. One process serves any number of commits; the
// database can be read by other processes (a WCFS server) at the same time,
// but only this process writes it.
//
//	db := testdb.Create(t, filepath.Join(t.TempDir(), "1.fs"))
//	db.CreateFile("zf", 64<<10, testdb.ZBlk1)
//	db.WriteBlock("zf", 0, data)
//	tid := db.Commit("t1")
//	m := db.Manifest() // expected content of every file at every tid
//
// Methods fail the test (t.Fatal) on error and must be called from the test
// goroutine; Exec is the goroutine-safe, error-returning form. The process is
// stopped and reaped when the test ends (t.Cleanup), or by Close.
//
// The interpreter is $WCFS_PYTHON, else <repo>/.venv/bin/python; tests skip
// with a message telling to run `make deps` when it is absent. Manifest,
// ParseManifest and LoadManifest also read the fixtures in
// ../shared/testdata/zodb (SharedZODB), so that tests of those and of
// toolkit-made databases use the same types.
package testdb

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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

// Timeouts of the subprocess.
var (
	// RequestTimeout bounds one request (commits of big files included).
	RequestTimeout = 5 * time.Minute
	// StartTimeout bounds opening the database (ZEO waits up to 30s).
	StartTimeout = 2 * time.Minute
	// StopTimeout is how long Close waits for the process to exit before
	// killing it.
	StopTimeout = 30 * time.Second
)

// ---- locating the repository, ../shared and the interpreter ----

// RepoRoot returns the root of the repository (the directory of go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func repoRoot() (string, error) {
	// this source file is <repo>/gocore/internal/testdb/testdb.go
	if _, file, _, ok := runtime.Caller(0); ok {
		root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
		if isRepoRoot(root) {
			return root, nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("testdb: repository root: %w", err)
	}
	for {
		if isRepoRoot(dir) {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("testdb: repository root not found (no go.mod of wendelin.dev/wcfs above the working directory)")
		}
		dir = up
	}
}

func isRepoRoot(dir string) bool {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	return err == nil && bytes.HasPrefix(data, []byte("module wendelin.dev/wcfs\n"))
}

// SharedDir returns ../shared beside the repository, or skips the test when
// it is absent (for example on a user's machine).
func SharedDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(RepoRoot(t), "..", "shared")
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Skipf("skipping: %s (../shared beside the repository) is absent", dir)
	}
	return dir
}

// SharedZODB returns ../shared/testdata/zodb (databases written by genuine
// ZODB, see its README.md), or skips the test when it is absent.
func SharedZODB(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(SharedDir(t), "testdata", "zodb")
	if _, err := os.Stat(filepath.Join(dir, "small.json")); err != nil {
		t.Skipf("skipping: fixtures of genuine ZODB databases not found: %v", err)
	}
	return dir
}

// SmallFixture returns the manifest of ../shared/testdata/zodb/small.fs (a
// database of five files over nine transactions written by genuine ZODB)
// and the path of that database, or skips the test when it is absent.
func SmallFixture(t testing.TB) (*Manifest, string) {
	t.Helper()
	dir := SharedZODB(t)
	m, err := LoadManifest(filepath.Join(dir, "small.json"))
	if err != nil {
		t.Fatal(err)
	}
	return m, filepath.Join(dir, "small.fs")
}

// Python returns the interpreter with genuine ZODB: $WCFS_PYTHON, else
// <repo>/.venv/bin/python. It skips the test when there is none.
func Python(t testing.TB) string {
	t.Helper()
	py, err := python(RepoRoot(t))
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	return py
}

func python(root string) (string, error) {
	if py := os.Getenv("WCFS_PYTHON"); py != "" {
		if _, err := exec.LookPath(py); err != nil {
			return "", fmt.Errorf("$WCFS_PYTHON=%s: %w (run `make deps`, or unset it)", py, err)
		}
		return py, nil
	}
	py := filepath.Join(root, ".venv", "bin", "python")
	if _, err := os.Stat(py); err != nil {
		return "", fmt.Errorf("no Python with genuine ZODB at %s: run `make deps` in %s (or set $WCFS_PYTHON)", py, root)
	}
	return py, nil
}

// Command returns a command running `python -m ztestdb ARGS...` with the
// toolkit on PYTHONPATH (for example "gen" to make demo databases). It skips
// the test when there is no interpreter.
func Command(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	root := RepoRoot(t)
	cmd := exec.Command(Python(t), append([]string{"-m", "ztestdb"}, args...)...)
	cmd.Env = toolkitEnv(root)
	return cmd
}

func toolkitEnv(root string) []string {
	path := filepath.Join(root, "tools", "pylib")
	env := []string{}
	for _, kv := range os.Environ() {
		if v, ok := strings.CutPrefix(kv, "PYTHONPATH="); ok {
			if v != "" {
				path += string(os.PathListSeparator) + v
			}
			continue
		}
		env = append(env, kv)
	}
	return append(env, "PYTHONPATH="+path, "PYTHONDONTWRITEBYTECODE=1")
}

// CopyFS copies a FileStorage (and its .index, if any) into a new temporary
// directory and returns the copy's path: tests open fixtures through the
// toolkit without touching the originals.
func CopyFS(t testing.TB, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(path))
	for _, ext := range []string{"", ".index"} {
		data, err := os.ReadFile(path + ext)
		if err != nil {
			if ext != "" && errors.Is(err, os.ErrNotExist) {
				continue
			}
			t.Fatalf("testdb: copy %s: %v", path, err)
		}
		if err := os.WriteFile(dst+ext, data, 0o644); err != nil {
			t.Fatalf("testdb: copy %s: %v", path, err)
		}
	}
	return dst
}

// ---- the database process ----

// DB is a database open in a toolkit process.
type DB struct {
	t    testing.TB
	zurl string
	path string // FileStorage path ("" for zeo://)
	pid  int

	mu      sync.Mutex // one request at a time
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan []byte // answers read from stdout; closed at EOF
	stderr  *tailBuffer
	waitErr chan error // process exit status, once
	closed  bool
	exitErr error
}

// Options are optional settings of Create and Open.
type Options struct {
	// Dataset is the dataset name written in manifests.
	Dataset string
	// NoHistory: Open reports only the current head of an existing
	// database in manifests, not its past transactions.
	NoHistory bool
}

// Create creates a new FileStorage at path (it must not exist) and returns it
// open in a toolkit process.
func Create(t testing.TB, path string, opts ...Options) *DB {
	t.Helper()
	o := options(opts)
	args := []string{"--create"}
	if o.Dataset != "" {
		args = append(args, "--dataset", o.Dataset)
	}
	return start(t, path, args)
}

// Open opens an existing database (FileStorage path, file:// or zeo://
// zurl) in a toolkit process; its history is read back for manifests.
func Open(t testing.TB, zurl string, opts ...Options) *DB {
	t.Helper()
	o := options(opts)
	var args []string
	if o.NoHistory {
		args = append(args, "--no-history")
	}
	if o.Dataset != "" {
		args = append(args, "--dataset", o.Dataset)
	}
	return start(t, zurl, args)
}

func options(opts []Options) Options {
	if len(opts) > 1 {
		panic("testdb: at most one Options")
	}
	if len(opts) == 1 {
		return opts[0]
	}
	return Options{}
}

type greeting struct {
	Error string `json:"error"`
	Ready bool   `json:"ready"`
	ZURL  string `json:"zurl"`
	Head  string `json:"head"`
	Pid   int    `json:"pid"`
}

func start(t testing.TB, zurl string, args []string) *DB {
	t.Helper()
	cmd := Command(t, append(append([]string{"serve"}, args...), "--", zurl)...)
	db := &DB{t: t, cmd: cmd, stderr: &tailBuffer{max: 64 << 10},
		lines: make(chan []byte, 1), waitErr: make(chan error, 1)}
	cmd.Stderr = db.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("testdb: %s: %v", zurl, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("testdb: %s: %v", zurl, err)
	}
	db.stdin = stdin
	if err := cmd.Start(); err != nil {
		t.Fatalf("testdb: start %s: %v", cmd, err)
	}
	go db.readLines(stdout)
	t.Cleanup(db.Close)

	line, err := db.readAnswer(StartTimeout)
	if err != nil {
		t.Fatalf("testdb: open %s: %v", zurl, err)
	}
	var g greeting
	if err := json.Unmarshal(line, &g); err != nil {
		t.Fatalf("testdb: open %s: bad greeting %q: %v", zurl, line, err)
	}
	if g.Error != "" || !g.Ready {
		db.mu.Lock()
		_ = db.shutdown() // the process exits after an error greeting
		db.mu.Unlock()
		t.Fatalf("testdb: %s%s", g.Error, db.stderrTail())
	}
	db.zurl, db.pid = g.ZURL, g.Pid
	if p, ok := strings.CutPrefix(g.ZURL, "file://"); ok {
		db.path = p
	}
	return db
}

// readLines forwards stdout lines to db.lines and, at EOF, reaps the process.
func (db *DB) readLines(stdout io.Reader) {
	r := bufio.NewReaderSize(stdout, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 && err == nil {
			db.lines <- line
		}
		if err != nil {
			break
		}
	}
	close(db.lines)
	db.waitErr <- db.cmd.Wait()
}

// readAnswer returns the next line from the process, or an error when it
// exits or does not answer in time (then it is killed).
func (db *DB) readAnswer(timeout time.Duration) ([]byte, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line, ok := <-db.lines:
		if !ok {
			return nil, fmt.Errorf("toolkit process exited: %v%s", db.reap(), db.stderrTail())
		}
		return line, nil
	case <-timer.C:
		db.kill()
		return nil, fmt.Errorf("toolkit process did not answer in %s: killed%s", timeout, db.stderrTail())
	}
}

// reap waits for the process to exit and returns its exit error (once).
func (db *DB) reap() error {
	if ch := db.waitErr; ch != nil {
		db.exitErr = <-ch
		db.waitErr = nil
	}
	return db.exitErr
}

func (db *DB) kill() {
	if db.cmd.Process != nil {
		_ = db.cmd.Process.Signal(syscall.SIGKILL)
	}
}

func (db *DB) stderrTail() string {
	s := strings.TrimSpace(db.stderr.String())
	if s == "" {
		return ""
	}
	return "\n--- toolkit stderr ---\n" + s
}

// Close closes the database and reaps the process (idempotent; also run at
// the end of the test). Uncommitted changes are discarded.
func (db *DB) Close() {
	db.mu.Lock()
	defer db.mu.Unlock()
	if err := db.shutdown(); err != nil {
		db.t.Errorf("testdb: close %s: %v%s", db.zurl, err, db.stderrTail())
	}
}

// shutdown asks the process to close the database, waits for it to exit
// (killing it after StopTimeout) and reaps it. Problems already reported by
// an earlier request (the process had exited) are not reported again.
func (db *DB) shutdown() error {
	if db.closed {
		return nil
	}
	db.closed = true
	var errs []error
	_, err := db.exec(map[string]any{"op": "close"}, StopTimeout)
	if err != nil && !errors.Is(err, errExited) {
		errs = append(errs, err)
	}
	db.stdin.Close()
	done := make(chan struct{})
	go func() {
		for range db.lines { // drain: nothing more is expected
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(StopTimeout):
		db.kill()
		<-done
		errs = append(errs, fmt.Errorf("did not exit %s after close: killed", StopTimeout))
	}
	if exit := db.reap(); err == nil && exit != nil {
		errs = append(errs, fmt.Errorf("exit: %w", exit))
	}
	return errors.Join(errs...)
}

var errExited = errors.New("toolkit process is not running")

// ZURL returns the database's zurl (file:///abs/path.fs for FileStorage).
func (db *DB) ZURL() string { return db.zurl }

// Path returns the FileStorage path ("" for other storages).
func (db *DB) Path() string { return db.path }

// PID returns the toolkit process id.
func (db *DB) PID() int { return db.pid }

// ---- requests ----

// Exec sends one request ({"op": ..., args...}, see serve.py) and returns
// the answer's fields. It is safe for concurrent use and returns errors
// instead of failing the test.
func (db *DB) Exec(req map[string]any) (map[string]json.RawMessage, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.closed {
		return nil, fmt.Errorf("testdb: %s: %v", req["op"], errors.New("database is closed"))
	}
	return db.exec(req, RequestTimeout)
}

func (db *DB) exec(req map[string]any, timeout time.Duration) (map[string]json.RawMessage, error) {
	op, _ := req["op"].(string)
	if db.waitErr == nil {
		return nil, fmt.Errorf("testdb: %s: %w (exit: %v)", op, errExited, db.exitErr)
	}
	data, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("testdb: %s: %w", op, err)
	}
	if _, err := db.stdin.Write(append(data, '\n')); err != nil {
		return nil, fmt.Errorf("testdb: %s: %w: exit: %v%s", op, errExited, db.reap(), db.stderrTail())
	}
	line, err := db.readAnswer(timeout)
	if err != nil {
		return nil, fmt.Errorf("testdb: %s: %w", op, err)
	}
	var ans map[string]json.RawMessage
	if err := json.Unmarshal(line, &ans); err != nil {
		return nil, fmt.Errorf("testdb: %s: bad answer %q: %w", op, line, err)
	}
	if e, ok := ans["error"]; ok {
		var msg string
		_ = json.Unmarshal(e, &msg)
		return nil, fmt.Errorf("testdb: %s: %s", op, msg)
	}
	return ans, nil
}

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

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append([]byte(nil), b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
