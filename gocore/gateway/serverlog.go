// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

// The log of a spawned server: <root>/<id>.log (see the package doc).

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// logPath is the log of the server spawned for a mountpoint.
func logPath(mntpt string) string {
	return mntpt + ".log"
}

// logTailLines is how much of a previous server's log is reported.
const logTailLines = 10

// createServerLog creates the log of a server about to be spawned at mntpt
// (the caller holds the start lock). A log left by the previous server is
// reported (its last lines: a normal end removes it, so it tells how that
// server ended) and replaced: unlinked, not truncated, since a process of
// the previous server may still write to it.
func (g *Gateway) createServerLog(mntpt string) (*os.File, error) {
	if err := g.retireServerLog(mntpt); err != nil {
		return nil, err
	}
	path := logPath(mntpt)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	return f, nil
}

// retireServerLog logs the tail of the log a previous server of mntpt left
// (it did not end normally) and removes it: a new server starts there, with
// a log of its own (spawn) or its output elsewhere (serve).
func (g *Gateway) retireServerLog(mntpt string) error {
	path := logPath(mntpt)
	if tail, err := readLogTail(path, logTailLines); err == nil && tail != "" {
		g.warnf("wcfs: %s: the previous server's log ends with:\n%s", path, tail)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("server log: %w", err)
	}
	return nil
}

// readLogTail returns the last n lines of the log at path, if it is a
// regular file of ours (another user may have put anything at the path,
// even mounted a filesystem over a file of theirs there: the mount table is
// read first).
func readLogTail(path string, n int) (string, error) {
	if m, err := topMountAt(path); err != nil || m != nil {
		return "", fmt.Errorf("%s: a mountpoint (%v)", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
		return "", fmt.Errorf("%s: not a regular file of ours", path)
	}
	const max = 16 << 10
	if st.Size > max {
		f.Seek(st.Size-max, io.SeekStart)
	}
	data, err := io.ReadAll(io.LimitReader(f, max))
	if err != nil {
		return "", err
	}
	lines := strings.SplitAfter(string(bytes.TrimRight(data, "\n")), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, ""), nil
}

// removeLogAfterStop removes the log of the server of mntpt once it was
// stopped (nothing left behind). A server that ended abnormally says so at
// the end of its log (an error, a goroutine dump after SIGQUIT): a log that
// does not end with the server's normal stop line is reported first.
func (g *Gateway) removeLogAfterStop(mntpt string) {
	path := logPath(mntpt)
	tail, err := readLogTail(path, logTailLines)
	if err != nil {
		return // none, or not ours
	}
	if last := lastLine(tail); last != "" && !strings.Contains(last, "] stop ") {
		g.warnf("wcfs: %s: the server's log ends with:\n%s", path, tail)
	}
	os.Remove(path)
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}
