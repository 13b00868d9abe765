// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/wproto"
)

// WCFS is the client side of a mounted WCFS server: the mountpoint, and what
// the Conns made on it share (the open @<rev> files that pinned blocks map).
// Get one per mount with New; it is safe for concurrent use.
type WCFS struct {
	mountpoint string

	// Log receives the client's log records; nil: slog.Default().
	Log *slog.Logger

	mu       sync.Mutex
	revFiles map[revKey]*revFile     // mu
	conns    map[*Conn]struct{}      // mu
	links    map[*WatchLink]struct{} // mu; open watch links (of Conns and raw)
	nconn    uint64                  // mu
}

// New returns the client of the WCFS server mounted at mountpoint. It does
// not touch the mount.
func New(mountpoint string) *WCFS {
	return &WCFS{
		mountpoint: mountpoint,
		revFiles:   make(map[revKey]*revFile),
		conns:      make(map[*Conn]struct{}),
		links:      make(map[*WatchLink]struct{}),
	}
}

// Mountpoint returns where the server is mounted.
func (wc *WCFS) Mountpoint() string { return wc.mountpoint }

func (wc *WCFS) String() string { return "wcfs " + wc.mountpoint }

func (wc *WCFS) log() *slog.Logger {
	if wc.Log != nil {
		return wc.Log
	}
	return slog.Default()
}

// path returns the path of rel (slash-separated) in the mount.
func (wc *WCFS) path(rel string) string {
	return filepath.Join(wc.mountpoint, filepath.FromSlash(rel))
}

// HeadAt reads head/at: the revision head/ shows.
func (wc *WCFS) HeadAt() (zodb.Tid, error) {
	data, err := os.ReadFile(wc.path("head/at"))
	if err != nil {
		return 0, fmt.Errorf("%s: head/at: %w", wc, err)
	}
	v, err := wproto.ParseHex16(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, fmt.Errorf("%s: head/at: %w", wc, err)
	}
	return zodb.Tid(v), nil
}

// waitHead waits until head/at >= at. It is the slow path of Conn.Open for a
// file that head/ does not show yet (every other wait happens in the server,
// which answers a watch request once head/at >= its at): it re-reads head/at
// with a growing interval (1 ms to 50 ms), so a caller waiting for a commit
// the server is processing gets it within milliseconds without spinning.
func (wc *WCFS) waitHead(ctx context.Context, at zodb.Tid) error {
	delay := time.Millisecond
	for {
		head, err := wc.HeadAt()
		if err != nil {
			return err
		}
		if head >= at {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: wait for head/at >= @%s (head/at @%s): %w", wc, at, head, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// Fds returns the descriptors the client has open (watch links, head and
// @<rev> files), so that a process about to fork can have its child close
// them without running Go (see the package doc, "Fork").
func (wc *WCFS) Fds() []int {
	wc.mu.Lock()
	conns := make([]*Conn, 0, len(wc.conns))
	for c := range wc.conns {
		conns = append(conns, c)
	}
	var fds []int
	for _, rf := range wc.revFiles {
		fds = append(fds, int(rf.f.Fd()))
	}
	for wl := range wc.links {
		fds = append(fds, wl.fd)
	}
	wc.mu.Unlock()
	for _, c := range conns {
		fds = append(fds, c.fds()...)
	}
	return fds
}

// ---- @<rev> files ----

// revKey names @<rev>/bigfile/<foid>.
type revKey struct {
	rev  zodb.Tid
	foid zodb.Oid
}

// revFile is an open @<rev>/bigfile/<foid>, shared by every block pinned to
// it (in any FileH of any Conn of the WCFS): a setup that pins many blocks
// to one revision opens it once. It is closed when the last pin on it goes.
// (The mappings keep their own reference to the file; the descriptor only
// saves the open and stat of the next pin.)
type revFile struct {
	key  revKey
	f    *os.File
	size int64
	nref int // pinned blocks mapping it; protected by WCFS.mu
}

// revFileGet returns @<rev>/bigfile/<foid> open, with one more reference.
func (wc *WCFS) revFileGet(rev zodb.Tid, foid zodb.Oid) (*revFile, error) {
	key := revKey{rev, foid}
	wc.mu.Lock()
	if rf := wc.revFiles[key]; rf != nil {
		rf.nref++
		wc.mu.Unlock()
		return rf, nil
	}
	wc.mu.Unlock()

	// open outside the lock: the lookup of @<rev> may load from the storage
	path := wc.path(fmt.Sprintf("@%s/bigfile/%s", rev, foid))
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}

	wc.mu.Lock()
	defer wc.mu.Unlock()
	if rf := wc.revFiles[key]; rf != nil { // opened meanwhile by another pin
		rf.nref++
		f.Close()
		return rf, nil
	}
	rf := &revFile{key: key, f: f, size: st.Size, nref: 1}
	wc.revFiles[key] = rf
	return rf, nil
}

// revFilePut drops one reference to rf, closing it with the last.
func (wc *WCFS) revFilePut(rf *revFile) {
	wc.mu.Lock()
	rf.nref--
	last := rf.nref == 0
	if last {
		delete(wc.revFiles, rf.key)
	}
	wc.mu.Unlock()
	if last {
		rf.f.Close()
	}
}

// ---- errors ----

var (
	// ErrConnClosed is the error of operations on a closed Conn.
	ErrConnClosed = errors.New("connection closed")
	// ErrFileClosed is the error of operations on a closed FileH.
	ErrFileClosed = errors.New("file already closed")
)
