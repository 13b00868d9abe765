// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

// Benchmarks (BENCHMARKS.md "Block history"):
//
//	go test -run NONE -bench History -benchtime 1x ./gocore/history/    (Update: one replay)
//	go test -run NONE -bench 'History/(BlkRevAt|Changed|Track)' ./gocore/history/
//
// The database (one 64 GiB file of 32768 blocks of 2 MiB with tiny data,
// then 10,000 commits touching 4 random blocks each) is written by genuine
// ZODB (testdata/genbench.py) once and cached in $WCFS_BENCH_CACHE, else the
// user cache directory, keyed by its parameters.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testenv"
	"wendelin.dev/wcfs/gocore/zdata"
	"wendelin.dev/wcfs/gocore/zurl"
)

type benchParams struct {
	nblk    int
	blksize int
	commits int
	touch   int
	seed    int
}

var benchDefault = benchParams{nblk: 32768, blksize: 2 << 20, commits: 10000, touch: 4, seed: 1}

// benchDB returns the path of the benchmark database and the oid of its
// file, generating it if it is not cached yet.
func benchDB(b *testing.B, p benchParams) (string, zodb.Oid) {
	b.Helper()
	dir := os.Getenv("WCFS_BENCH_CACHE")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		dir = filepath.Join(cache, "wcfs-bench")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	name := fmt.Sprintf("history-n%d-bs%d-c%d-t%d-s%d", p.nblk, p.blksize, p.commits, p.touch, p.seed)
	path := filepath.Join(dir, name+".fs")
	oidPath := filepath.Join(dir, name+".oid")
	if data, err := os.ReadFile(oidPath); err == nil {
		if oid, err := zodb.ParseOid(string(data)); err == nil {
			if _, err := os.Stat(path); err == nil {
				return path, oid
			}
		}
	}

	// generate into a temporary file, then move into place
	tmp := filepath.Join(dir, name+".tmp.fs")
	for _, ext := range []string{"", ".index", ".lock", ".tmp"} {
		os.Remove(tmp + ext)
	}
	b.Logf("generating %s (once) ...", path)
	t0 := time.Now()
	var res struct{ Oid string }
	runScript(b, &res, "genbench.py", tmp,
		"--nblk", strconv.Itoa(p.nblk), "--blksize", strconv.Itoa(p.blksize),
		"--commits", strconv.Itoa(p.commits), "--touch", strconv.Itoa(p.touch), "--seed", strconv.Itoa(p.seed))
	oid, err := zodb.ParseOid(res.Oid)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	for _, ext := range []string{".index", ".lock", ".tmp"} {
		os.Remove(tmp + ext)
	}
	if err := os.WriteFile(oidPath, []byte(oid.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("generated in %s", time.Since(t0))
	return path, oid
}

// runScript runs testdata/<script> with genuine ZODB and the toolkit's
// persistent classes, and decodes the JSON it prints into res.
func runScript(tb testing.TB, res any, script string, args ...string) {
	tb.Helper()
	root := testenv.Repo(tb)
	cmd := exec.Command(testenv.Python(tb), append([]string{filepath.Join(root, "gocore", "history", "testdata", script)}, args...)...)
	cmd.Env = append(os.Environ(), "PYTHONPATH="+filepath.Join(root, "tools", "pylib"), "PYTHONDONTWRITEBYTECODE=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s: %v", script, err)
	}
	if err := json.Unmarshal(out, res); err != nil {
		tb.Fatalf("%s: %q: %v", script, out, err)
	}
}

// benchState is the replayed history the query benchmarks share.
type benchState struct {
	stor   zodb.IStorage
	cv     []commit
	foid   zodb.Oid
	blocks map[int64]zodb.Oid // blktab as of cv[1] (the file's creation)
	h      *History
}

// replayBench makes a history at cv[1], follows the file, tracks all its
// blocks if trackAll, and applies every later commit.
func (s *benchState) replay(b *testing.B, trackAll bool) *History {
	ctx := context.Background()
	h := New(s.stor, s.cv[1].rev)
	if _, err := h.Follow(ctx, s.foid); err != nil {
		b.Fatal(err)
	}
	if trackAll {
		for blk, zblk := range s.blocks {
			if err := h.Track(s.foid, blk, zblk, s.cv[1].rev); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, c := range s.cv[2:] {
		if _, err := h.Update(ctx, &zodb.EventCommit{Tid: c.rev, Changev: c.oids}); err != nil {
			b.Fatal(err)
		}
	}
	return h
}

// cpuTime returns the CPU time (user + system) the process used so far: on
// a machine shared with other jobs it measures the work better than wall
// time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func BenchmarkHistory(b *testing.B) {
	ctx := context.Background()
	p := benchDefault
	path, foid := benchDB(b, p)
	stor, err := zdata.OpenStorage(ctx, zurl.MustParse(path))
	if err != nil {
		b.Fatal(err)
	}
	defer stor.Close()
	s := &benchState{stor: stor, cv: readCommits(ctx, b, stor), foid: foid, blocks: make(map[int64]zodb.Oid)}
	if len(s.cv) != p.commits+2 {
		b.Fatalf("%d transactions", len(s.cv))
	}
	// the blocks at creation, read with a history of an empty window
	h0 := New(stor, s.cv[1].rev)
	if _, err := h0.Follow(ctx, foid); err != nil {
		b.Fatal(err)
	}
	f := h0.files[foid]
	for bkt := range f.tree.buckets {
		ev, err := h0.ld.bucket(ctx, bkt, s.cv[1].rev)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range ev {
			s.blocks[e.Key] = e.Value
		}
	}
	if len(s.blocks) != p.nblk {
		b.Fatalf("%d blocks", len(s.blocks))
	}
	ncommit := float64(len(s.cv) - 2)

	// Follow with an empty window: the index of the blktab
	b.Run("Follow", func(b *testing.B) {
		var heap uint64
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			heap0 := heapAlloc()
			b.StartTimer()
			h := New(stor, s.cv[1].rev)
			if _, err := h.Follow(ctx, foid); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			heap = heapAlloc() - heap0
			b.ReportMetric(float64(len(h.files[foid].tree.buckets)), "buckets")
			runtime.KeepAlive(h)
			b.StartTimer()
		}
		b.ReportMetric(float64(heap)/1024, "heap-KiB")
	})

	// Update: the cost of a commit, and the memory of 10,000 commits of history
	for _, trackAll := range []bool{false, true} {
		b.Run(fmt.Sprintf("Update/tracked=%v", trackAll), func(b *testing.B) {
			var heap uint64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				heap0 := heapAlloc()
				b.StartTimer()
				t0, cpu0 := time.Now(), cpuTime()
				h := s.replay(b, trackAll)
				b.ReportMetric(float64(time.Since(t0).Nanoseconds())/ncommit, "ns/commit")
				b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/ncommit, "cpu-ns/commit")
				b.StopTimer()
				heap = heapAlloc() - heap0
				runtime.KeepAlive(h)
				b.StartTimer()
			}
			b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
		})
	}

	s.h = s.replay(b, true)
	head := s.h.Head()
	rng := rand.New(rand.NewSource(1))

	// queries: random blocks at random revisions of the window
	q := make([]struct {
		blk int64
		at  zodb.Tid
	}, 1<<16)
	for i := range q {
		q[i].blk = rng.Int63n(int64(p.nblk))
		q[i].at = s.cv[1+rng.Intn(len(s.cv)-1)].rev
	}
	b.Run("BlkRevAt", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			x := &q[i%len(q)]
			if _, err := s.h.BlkRevAt(foid, x.blk, x.at); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("BlkRevAt/parallel", func(b *testing.B) {
		var seed atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(seed.Add(7919))
			for pb.Next() {
				x := &q[i%len(q)]
				i++
				if _, err := s.h.BlkRevAt(foid, x.blk, x.at); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	for _, back := range []int{1, 10, 100, 1000, p.commits} {
		b.Run(fmt.Sprintf("ChangedBlocks/last=%d", back), func(b *testing.B) {
			lo := s.cv[len(s.cv)-1-back].rev
			n := 0
			for i := 0; i < b.N; i++ {
				v, err := s.h.ChangedBlocks(foid, lo, head)
				if err != nil {
					b.Fatal(err)
				}
				n = len(v)
			}
			b.ReportMetric(float64(n), "blocks")
		})
	}

	// Follow of the file when the window already holds 10,000 commits
	b.Run("FollowLate", func(b *testing.B) {
		cpu0 := cpuTime()
		for i := 0; i < b.N; i++ {
			s.h.Unfollow(foid)
			if _, err := s.h.Follow(ctx, foid); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	// first Track of a block: its history rebuilt from the window
	b.Run("TrackFirst", func(b *testing.B) {
		fi := s.h.files[foid]
		blks := make([]int64, 0, len(fi.keys))
		zblks := make([]zodb.Oid, 0, len(fi.keys))
		for blk := int64(0); blk < int64(p.nblk); blk++ {
			zblk := s.blocks[blk]
			if kc := fi.keys[blk]; len(kc) > 0 {
				zblk = kc[len(kc)-1].new
			}
			blks = append(blks, blk)
			zblks = append(zblks, zblk)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			j := i % len(blks)
			if j == 0 {
				b.StopTimer()
				s.h.Unfollow(foid)
				if _, err := s.h.Follow(ctx, foid); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			if err := s.h.Track(foid, blks[j], zblks[j], head); err != nil {
				b.Fatal(err)
			}
		}
	})
}
