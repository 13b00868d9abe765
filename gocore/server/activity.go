// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	log "github.com/golang/glog"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/mountprocs"
)

// activity wraps the raw FUSE filesystem to see every request: it counts
// open handles (files and directories; an mmap keeps its file open until
// munmap) and remembers when a client last made a request. Requests of the
// server process itself (storing old data into @<rev>/ files) are not client
// activity.
type activity struct {
	fuse.RawFileSystem
	pid     uint32
	last    atomic.Int64 // unix ns
	handles atomic.Int64

	autoExited atomic.Bool // -autoexit unmounted the filesystem
}

func newActivity(fs fuse.RawFileSystem) *activity {
	a := &activity{RawFileSystem: fs, pid: uint32(os.Getpid())}
	a.last.Store(time.Now().UnixNano())
	return a
}

func (a *activity) saw(h *fuse.InHeader) {
	if h.Pid != a.pid {
		a.last.Store(time.Now().UnixNano())
	}
}

// idle returns for how long there was no open handle and no client request.
func (a *activity) idle() time.Duration {
	if a.handles.Load() > 0 {
		return 0
	}
	return time.Duration(time.Now().UnixNano() - a.last.Load())
}

func (a *activity) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	a.saw(h)
	return a.RawFileSystem.Lookup(cancel, h, name, out)
}

func (a *activity) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	a.saw(&in.InHeader)
	return a.RawFileSystem.GetAttr(cancel, in, out)
}

func (a *activity) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	a.saw(&in.InHeader)
	return a.RawFileSystem.Access(cancel, in)
}

func (a *activity) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	a.saw(&in.InHeader)
	st := a.RawFileSystem.Open(cancel, in, out)
	if st.Ok() {
		a.handles.Add(1)
	}
	return st
}

func (a *activity) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	a.saw(&in.InHeader)
	return a.RawFileSystem.Read(cancel, in, buf)
}

func (a *activity) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	a.RawFileSystem.Release(cancel, in)
	a.handles.Add(-1)
	a.last.Store(time.Now().UnixNano())
}

func (a *activity) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	a.saw(&in.InHeader)
	st := a.RawFileSystem.OpenDir(cancel, in, out)
	if st.Ok() {
		a.handles.Add(1)
	}
	return st
}

func (a *activity) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	a.saw(&in.InHeader)
	return a.RawFileSystem.ReadDir(cancel, in, out)
}

func (a *activity) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	a.saw(&in.InHeader)
	return a.RawFileSystem.ReadDirPlus(cancel, in, out)
}

func (a *activity) ReleaseDir(in *fuse.ReleaseIn) {
	a.RawFileSystem.ReleaseDir(in)
	a.handles.Add(-1)
	a.last.Store(time.Now().UnixNano())
}

func (a *activity) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	a.saw(h)
	return a.RawFileSystem.StatFs(cancel, h, out)
}

func (a *activity) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	a.saw(&in.InHeader)
	return a.RawFileSystem.Statx(cancel, in, out)
}

// autoExitLoop unmounts the filesystem (non-lazily) once no client used it
// for the grace period. If the kernel says the mount is busy (a process
// has its cwd there, ...), the server stays up and tries again after
// another grace period.
func (s *Server) autoExitLoop(ctx context.Context) {
	grace := s.opt.AutoExitGrace
	every(ctx, max(grace/10, 50*time.Millisecond), func() bool {
		if s.act.idle() < grace {
			return true
		}
		log.Infof("autoexit: no client activity for %s: unmounting %s", grace, s.opt.Mountpoint)
		err := s.Unmount()
		if err == nil {
			s.act.autoExited.Store(true)
			return false // serving ends: the server exits
		}
		log.Infof("autoexit: %s; staying up%s", err, s.busyReport())
		s.act.last.Store(time.Now().UnixNano())
		return true
	})
}

// busyReport names the processes that keep the mount busy, for logs.
func (s *Server) busyReport() string {
	holders := busyHolders(s.opt.Mountpoint)
	if len(holders) == 0 {
		return ""
	}
	return "; in use by: " + strings.Join(holders, ", ")
}

// busyHolders lists the processes that use the server's mount at mnt (open
// files, mappings, cwd, root, exe: gocore/internal/mountprocs), without touching
// the mount itself.
func busyHolders(mnt string) []string {
	m, ok := ownMount(mnt)
	if !ok {
		return nil
	}
	users, err := mountprocs.MountUsers(m)
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var holders []string
	for _, u := range users {
		if u.Pid != self {
			holders = append(holders, fmt.Sprintf("pid %d (%s: %s)", u.Pid, u.Comm, strings.Join(u.Kinds(), ",")))
		}
	}
	sort.Strings(holders)
	return holders
}

// ownMount finds the server's mount at mnt in the mount table: the lowest
// mount there, since the server never mounts over a mount (checkNotMounted).
// The mount table shows the path with the symlinks of its parent
// directories resolved.
func ownMount(mnt string) (mountprocs.Mount, bool) {
	paths := []string{mnt}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(mnt)); err == nil {
		paths = append(paths, filepath.Join(dir, filepath.Base(mnt)))
	}
	infos, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		return !slices.Contains(paths, i.Mountpoint), false
	})
	if err != nil {
		return mountprocs.Mount{}, false
	}
	here := map[int]bool{}
	for _, i := range infos {
		here[i.ID] = true
	}
	for _, i := range infos {
		if !here[i.Parent] {
			dev := unix.Mkdev(uint32(i.Major), uint32(i.Minor))
			return mountprocs.Mount{ID: i.ID, Dev: dev, Point: i.Mountpoint}, true
		}
	}
	return mountprocs.Mount{}, false
}

// BusyReport is busyReport for the command (SIGTERM on a busy mount).
func (s *Server) BusyReport() string { return s.busyReport() }
