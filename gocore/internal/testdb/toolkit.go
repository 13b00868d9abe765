// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package testdb

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"wendelin.dev/wcfs/gocore/internal/testenv"
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

// Command returns a command running `python -m ztestdb ARGS...` with the
// toolkit on PYTHONPATH (for example "gen" to make demo databases). It skips
// the test when there is no interpreter.
func Command(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	root := testenv.Repo(t)
	cmd := exec.Command(testenv.Python(t), append([]string{"-m", "ztestdb"}, args...)...)
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

// ---- the database process ----

// DB is a database open in a toolkit process.
type DB struct {
	t    testing.TB
	zurl string
	path string // FileStorage path ("" for zeo://)
	pid  int

	mu      sync.Mutex // one request at a time
	cmd     *exec.Cmd
	stdin   io.WriteCloser // mu
	lines   chan []byte    // answers read from stdout; closed at EOF
	stderr  *tailBuffer
	waitErr chan error // mu; process exit status, once (nil once taken)
	closed  bool       // mu
	exitErr error      // mu; the exit status taken from waitErr
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

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte // mu
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
