// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package mountprocs finds the processes that use a mount, from /proc only: for
// the gateway's diagnostics of a busy or hung server (unmount refused,
// StuckDump) and for the server's own report when an unmount finds its
// mount busy.
//
// The mount itself is never touched (a hung FUSE server would hang the
// caller, and a server must not access its own mount). Open files are
// matched by the mount id in /proc/PID/fdinfo (mnt_id), memory maps by the
// device of the mapped file, so a file at the same path on another mount
// (the directory under the mount, a mount stacked on it) is not counted;
// cwd, root and exe are /proc/PID links matched by path (their mount is not
// in /proc without a stat, which would touch the mount).
package mountprocs

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/procfs"
)

// Mount is the mount whose users MountUsers looks for.
type Mount struct {
	ID    int    // mount id (mountinfo field 1, fdinfo mnt_id)
	Dev   uint64 // device of its filesystem
	Point string // mountpoint
}

// Use is one way a process uses a mount.
type Use struct {
	Kind string // "cwd", "root", "exe", "fd" (an open file) or "mmap"
	FD   string // kind "fd": the descriptor
	Path string // the link target or mapped file, as /proc shows it
}

// String returns "fd 3 -> /path", "cwd -> /path", "mmap -> /path", ...
func (u Use) String() string {
	if u.Kind == "fd" {
		return "fd " + u.FD + " -> " + u.Path
	}
	return u.Kind + " -> " + u.Path
}

// User is a process that uses a mount, and how.
type User struct {
	Pid  int
	Comm string
	Argv []string
	Uses []Use // cwd, root, exe, then open files by descriptor, then maps
}

// Kinds returns the kinds of u's uses, each once, in the order of Uses.
func (u User) Kinds() []string {
	var kinds []string
	for _, use := range u.Uses {
		if len(kinds) == 0 || kinds[len(kinds)-1] != use.Kind {
			kinds = append(kinds, use.Kind)
		}
	}
	return kinds
}

// MountUsers lists the processes using m, in pid order. Processes that
// exit meanwhile, and whose /proc entries cannot be read (other users'
// processes for a non-root caller), are left out.
func MountUsers(m Mount) ([]User, error) {
	procs, err := procfs.AllProcs()
	if err != nil {
		return nil, err
	}
	mntID := strconv.Itoa(m.ID)
	under := func(path string) bool {
		return path == m.Point || strings.HasPrefix(path, m.Point+"/")
	}
	var users []User
	for _, p := range procs {
		var uses []Use
		for _, link := range []string{"cwd", "root", "exe"} {
			if t, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(p.PID), link)); err == nil && under(t) {
				uses = append(uses, Use{Kind: link, Path: t})
			}
		}
		if infos, err := p.FileDescriptorsInfo(); err == nil {
			sort.Slice(infos, func(i, j int) bool { return atoi(infos[i].FD) < atoi(infos[j].FD) })
			for _, fi := range infos {
				if fi.MntID == mntID {
					t, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(p.PID), "fd", fi.FD))
					uses = append(uses, Use{Kind: "fd", FD: fi.FD, Path: t})
				}
			}
		}
		if maps, err := p.ProcMaps(); err == nil {
			seen := map[string]bool{}
			for _, pm := range maps {
				if pm.Dev == m.Dev && pm.Pathname != "" && !seen[pm.Pathname] {
					seen[pm.Pathname] = true
					uses = append(uses, Use{Kind: "mmap", Path: pm.Pathname})
				}
			}
		}
		if len(uses) > 0 {
			comm, _ := p.Comm()
			argv, _ := p.CmdLine()
			users = append(users, User{Pid: p.PID, Comm: comm, Argv: argv, Uses: uses})
		}
	}
	sort.Slice(users, func(i, j int) bool { return users[i].Pid < users[j].Pid })
	return users, nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
