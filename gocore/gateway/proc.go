// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/mountprocs"
	"wendelin.dev/wcfs/gocore/internal/pidfd"
	"wendelin.dev/wcfs/gocore/zurl"
)

// process is a server process: a child spawned by this process (waited by
// a reaper goroutine), or another process found in the process table
// (watched through a pidfd). Either way signals and waits cannot hit a
// recycled pid.
type process struct {
	pid int

	cmd    *exec.Cmd     // child only
	exited chan struct{} // child only: closed once reaped
	state  *os.ProcessState

	pidfd int         // non-child only; -1 once released
	gone  atomic.Bool // non-child only: seen exited
}

// startChild starts cmd and a goroutine that reaps it.
func startChild(cmd *exec.Cmd) (*process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{pid: cmd.Process.Pid, cmd: cmd, exited: make(chan struct{}), pidfd: -1}
	go func() {
		cmd.Wait()
		p.state = cmd.ProcessState
		close(p.exited)
	}()
	return p, nil
}

// openProcess returns a handle on the running process pid, provided that
// match still accepts it once the handle is open (the pid was not recycled
// in between).
func openProcess(pid int, match func(procfs.Proc) bool) (*process, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	p, err := procfs.NewProc(pid)
	if err != nil || !match(p) {
		unix.Close(fd)
		return nil, fmt.Errorf("process %d went away", pid)
	}
	return &process{pid: pid, pidfd: fd}, nil
}

func (p *process) isChild() bool { return p.cmd != nil }

// signal sends sig to the process.
func (p *process) signal(sig syscall.Signal) error {
	if p.isChild() {
		return p.cmd.Process.Signal(sig)
	}
	return unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
}

// wait waits up to d (and at most until ctx is done) for the process to
// exit, and reports whether it did.
func (p *process) wait(ctx context.Context, d time.Duration) bool {
	if p.isChild() {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-p.exited:
			return true
		case <-t.C:
		case <-ctx.Done():
		}
		return p.hasExited()
	}
	if p.gone.Load() || p.pidfd < 0 {
		return p.gone.Load()
	}
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl))
	}
	if exited, _ := pidfd.Wait(p.pidfd, d); exited {
		p.gone.Store(true)
	}
	return p.gone.Load()
}

// hasExited reports whether the process exited (without waiting).
func (p *process) hasExited() bool {
	if p.isChild() {
		select {
		case <-p.exited:
			return true
		default:
			return false
		}
	}
	return p.wait(context.Background(), 0)
}

// exitStatus describes how a child exited.
func (p *process) exitStatus() string {
	if p.state == nil {
		return "unknown status"
	}
	if ws, ok := p.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return "signal " + ws.Signal().String()
	}
	return fmt.Sprintf("status %d", p.state.ExitCode())
}

func (p *process) release() {
	if !p.isChild() && p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
}

// findServer finds the process serving mount m: uid equal to the mount's
// user_id, argv ending in "ZURL MOUNTPOINT" with a zurl (resolved in the
// process's working directory) equivalent to z, and an open /dev/fuse. It
// returns nil if there is none (it died).
func findServer(m *Mount, z zurl.ZURL) (*process, error) {
	procs, err := procfs.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("process table: %w", err)
	}
	match := func(p procfs.Proc) bool {
		argv, err := p.CmdLine()
		if err != nil || len(argv) < 3 || argv[len(argv)-1] != m.Point {
			return false
		}
		cwd, err := p.Cwd()
		if err != nil {
			return false
		}
		if pz, err := zurl.ParseIn(argv[len(argv)-2], cwd); err != nil || !pz.Equivalent(z) {
			return false
		}
		st, err := p.NewStatus()
		if err != nil || int(st.UIDs[1]) != m.UserID {
			return false
		}
		targets, _ := p.FileDescriptorTargets()
		for _, t := range targets {
			if t == "/dev/fuse" {
				return true
			}
		}
		return false
	}
	var pids []int
	for _, p := range procs {
		if p.PID != os.Getpid() && match(p) {
			pids = append(pids, p.PID)
		}
	}
	switch len(pids) {
	case 0:
		return nil, nil
	case 1:
		return openProcess(pids[0], match)
	}
	return nil, fmt.Errorf("several processes serve %s: %s", m.Point, describePids(pids))
}

// describePid returns "pid N (argv)".
func describePid(pid int) string {
	s := fmt.Sprintf("pid %d", pid)
	if p, err := procfs.NewProc(pid); err == nil {
		if argv, err := p.CmdLine(); err == nil && len(argv) > 0 {
			s += " (" + strings.Join(argv, " ") + ")"
		}
	}
	if pid == os.Getpid() {
		s += " [this process]"
	}
	return s
}

func describePids(pids []int) string {
	if len(pids) == 0 {
		return "unknown process"
	}
	var v []string
	for _, pid := range pids {
		v = append(v, describePid(pid))
	}
	return strings.Join(v, ", ")
}

// Holder is a process that keeps a mount busy, and how.
type Holder struct {
	Pid  int
	Argv []string
	Uses []string // "fd 3 -> /path", "cwd -> /path", "mmap -> /path", ...
}

func (h Holder) String() string {
	s := describePid(h.Pid)
	for _, u := range h.Uses {
		s += "\n\t" + u
	}
	return s
}

// holders lists the processes using mount m (gocore/internal/mountprocs: from
// /proc only, never touching the mount, which may hang).
func holders(m *Mount) ([]Holder, error) {
	users, err := mountprocs.MountUsers(mountprocs.Mount{ID: m.ID, Dev: m.Dev(), Point: m.Point})
	if err != nil {
		return nil, fmt.Errorf("process table: %w", err)
	}
	var hv []Holder
	for _, u := range users {
		h := Holder{Pid: u.Pid, Argv: u.Argv}
		for _, use := range u.Uses {
			h.Uses = append(h.Uses, use.String())
		}
		hv = append(hv, h)
	}
	return hv, nil
}

// kernelStacks returns the kernel stack of every thread of pid
// (/proc/PID/task/TID/stack; needs root).
func kernelStacks(pid int) string {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return fmt.Sprintf("pid %d: %s\n", pid, errors.Unwrap(err))
	}
	var b strings.Builder
	for _, t := range tasks {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/comm", pid, t.Name()))
		stack, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stack", pid, t.Name()))
		fmt.Fprintf(&b, "pid %d tid %s (%s):\n", pid, t.Name(), strings.TrimSpace(string(comm)))
		if err != nil {
			fmt.Fprintf(&b, "\t%s\n", err)
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(string(stack)), "\n") {
			b.WriteString("\t" + line + "\n")
		}
	}
	return b.String()
}
