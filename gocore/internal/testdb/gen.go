// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package testdb

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"wendelin.dev/wcfs/gocore/internal/testenv"
)

// generated holds the databases Gen made in this process.
var generated struct {
	mu    sync.Mutex
	dir   string            // mu; temporary directory, removed by RemoveGenerated
	paths map[string]string // mu; gen arguments -> database
}

// Gen returns a FileStorage made by `python -m ztestdb gen PATH ARGS...`
// (without manifest or progress display): the big databases of benchmarks,
// made by genuine ZODB once per test process for each distinct ARGS, in a
// temporary directory that RemoveGenerated removes. Safe for concurrent use.
//
//	path := testdb.Gen(b, "--files=1", "--size=512M", "--blksize=2M", "--fmt=ZBlk0")
func Gen(tb testing.TB, args ...string) string {
	tb.Helper()
	key := strings.Join(args, "\x00")
	generated.mu.Lock()
	defer generated.mu.Unlock()
	if path, ok := generated.paths[key]; ok {
		return path
	}
	if generated.dir == "" {
		dir, err := os.MkdirTemp("", "wcfs-testdb-gen-")
		if err != nil {
			tb.Fatal(err)
		}
		generated.dir, generated.paths = dir, map[string]string{}
	}
	path := filepath.Join(generated.dir, fmt.Sprintf("gen%d.fs", len(generated.paths)))
	argv := append([]string{"gen", path}, args...)
	cmd := Command(tb, append(argv, "--no-manifest", "--no-progress")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(path)
		tb.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	generated.paths[key] = path
	return path
}

// RemoveGenerated removes the databases Gen made. TestMain calls it after
// the tests ran.
func RemoveGenerated() {
	generated.mu.Lock()
	defer generated.mu.Unlock()
	if generated.dir != "" {
		os.RemoveAll(generated.dir)
		generated.dir, generated.paths = "", nil
	}
}

// BenchFS returns the FileStorage of the mount benchmarks (server, client):
// one ZBigFile root["zf0"] of $WCFS_BENCH_SIZE (512M by default) in 2 MiB
// ZBlk0 blocks, made once per test process by genuine ZODB.
func BenchFS(tb testing.TB) string {
	tb.Helper()
	return Gen(tb, "--files=1", "--size="+testenv.Getenv("WCFS_BENCH_SIZE", "512M"), "--blksize=2M", "--fmt=ZBlk0")
}
