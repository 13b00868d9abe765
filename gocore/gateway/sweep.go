// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

// What processes that died left in the root of mountpoints: see
// "Leftovers" in the package doc.

import (
	"cmp"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/startlock"
)

// keepLogs is how many logs of servers that are not running (failed
// starts) stay in the root: the most recent ones.
const keepLogs = 5

// rootEntry is a name of ours in the root of mountpoints.
type rootEntry struct {
	id    string // the mountpoint's name: 40 hex digits
	mtime int64  // of a log
}

// listOurs lists the mountpoint ids of the root for which there is a
// directory (suffix ""), a lock file (".lock") or a log (".log") of ours
// with nothing mounted on it. Nothing mounted is touched (its server may
// hang): the mount table is read first.
func (g *Gateway) listOurs(suffix string) []rootEntry {
	names, err := readDirNames(g.root())
	if err != nil {
		return nil
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(g.root()))
	if err != nil {
		return nil
	}
	mounted := map[string]bool{}
	for _, m := range mounts {
		mounted[m.Mountpoint] = true
	}
	var v []rootEntry
	for _, name := range names {
		id, ok := strings.CutSuffix(name, suffix)
		path := filepath.Join(g.root(), name)
		if !ok || !isID(id) || mounted[path] {
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(path, &st) != nil || int(st.Uid) != os.Geteuid() {
			continue
		}
		v = append(v, rootEntry{id: id, mtime: st.Mtim.Nano()})
	}
	return v
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}

// isID tells whether name is the name of a mountpoint (a sha1 in hex).
func isID(name string) bool {
	return len(name) == 40 && strings.Trim(name, "0123456789abcdef") == ""
}

// sweep removes what processes killed while starting a server left in the
// root: a lock file nobody holds, an empty mountpoint directory of ours with
// nothing mounted and nobody holding its lock. It works under each
// mountpoint's start lock, taken without waiting (a busy lock is somebody
// at work), and skips the mountpoint skip (the caller's, locked already).
func (g *Gateway) sweep(skip string) {
	seen := map[string]bool{}
	for _, suffix := range []string{".lock", ""} {
		for _, e := range g.listOurs(suffix) {
			mntpt := filepath.Join(g.root(), e.id)
			if mntpt == skip || seen[e.id] {
				continue
			}
			seen[e.id] = true
			g.sweepOne(mntpt)
		}
	}
}

// sweepOne cleans the leftovers of mntpt under its start lock, if free.
func (g *Gateway) sweepOne(mntpt string) {
	lk, err := startlock.TryAcquire(lockPath(mntpt))
	if err != nil {
		return // busy, or not ours
	}
	defer lk.Unlock() // removes the lock file, a stale one included
	m, err := topMountAt(mntpt)
	if err != nil || m != nil {
		return
	}
	if _, err := os.Lstat(mntpt); errors.Is(err, os.ErrNotExist) {
		g.infof("wcfs: %s: removed a stale start lock (its holder died)", lockPath(mntpt))
		return
	}
	if err := removeMountpoint(mntpt); err == nil {
		g.infof("wcfs: %s: removed the empty mountpoint directory of a starter that died", mntpt)
	}
}

// pruneLogs removes the logs of servers that are not running, but for the
// keepLogs most recent ones and the one of keep (a failed start's, which
// its error names). Each is removed under its mountpoint's start lock, if
// free, and only if nothing is mounted there.
func (g *Gateway) pruneLogs(keep string) {
	logs := g.listOurs(".log")
	slices.SortFunc(logs, func(a, b rootEntry) int { return cmp.Compare(b.mtime, a.mtime) })
	kept := 0
	for _, e := range logs {
		mntpt := filepath.Join(g.root(), e.id)
		if mntpt == keep {
			continue
		}
		if m, err := topMountAt(mntpt); err != nil || m != nil {
			continue // a running server's
		}
		if kept++; kept <= keepLogs-1 {
			continue
		}
		lk, err := startlock.TryAcquire(lockPath(mntpt))
		if err != nil {
			continue
		}
		if m, err := topMountAt(mntpt); err == nil && m == nil {
			os.Remove(logPath(mntpt))
		}
		lk.Unlock()
	}
}
