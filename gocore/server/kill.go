// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	log "github.com/golang/glog"
	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/pidfd"
)

// clientProc is the process of a watch link's client, held by a pidfd: a
// signal through it reaches that process or nobody, never a process that
// got its PID after it died (the reference kills by PID, spec gap 16).
// It is alive until it exits: a zombie is not alive (the pidfd polls
// readable once the process has exited).
type clientProc struct {
	pid int // thread group id

	mu    sync.Mutex
	pidfd int // -1 once closed
}

// openClient returns the process of thread tid (the FUSE caller of an open).
// The calling thread is blocked in open(2) meanwhile, so its process exists;
// it must not have exited (spec 2.1).
func openClient(tid int) (*clientProc, error) {
	pid, err := callerTgid(tid)
	if err != nil {
		return nil, fmt.Errorf("client pid %d: %w", tid, err)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("client pid %d: pidfd_open: %w", pid, err)
	}
	c := &clientProc{pid: pid, pidfd: fd}
	if !c.alive() {
		c.close()
		return nil, fmt.Errorf("client pid %d: %w", pid, syscall.ESRCH)
	}
	return c, nil
}

// callerTgid returns the process (thread group) of thread tid: FUSE
// requests carry the id of the calling thread.
func callerTgid(tid int) (int, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(tid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Tgid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no Tgid", tid)
}

// waitExit waits up to d for the process to exit; it reports whether it
// did (or cannot be watched any more).
func (c *clientProc) waitExit(d time.Duration) bool {
	// poll a duplicate, made under c.mu: a close meanwhile must not leave
	// the poll on a closed descriptor, or on another file that got its
	// number
	c.mu.Lock()
	fd := -1
	var err error
	if c.pidfd >= 0 {
		fd, err = unix.FcntlInt(uintptr(c.pidfd), unix.F_DUPFD_CLOEXEC, 0)
	}
	c.mu.Unlock()
	if fd < 0 {
		if err != nil {
			log.Errorf("pid%d: dup pidfd: %s", c.pid, err)
			return false
		}
		return true // closed: cannot be watched any more
	}
	defer unix.Close(fd)
	exited, err := pidfd.Wait(fd, d)
	if err != nil {
		log.Errorf("pid%d: %s", c.pid, err)
	}
	return exited
}

// alive tells whether the process has not exited.
func (c *clientProc) alive() bool { return !c.waitExit(0) }

// signal sends sig to the process.
func (c *clientProc) signal(sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pidfd < 0 {
		return syscall.ESRCH
	}
	return unix.PidfdSendSignal(c.pidfd, sig, nil, 0)
}

// kill is the kill procedure of a faulty client (spec 2.8): SIGBUS, wait up
// to timeout/6 for it to exit, then SIGKILL and wait until timeout/3 after
// the start. An error means the process is still alive.
func (c *clientProc) kill(timeout time.Duration) error {
	t0 := time.Now()
	log.Errorf("pid%d: <- SIGBUS", c.pid)
	if err := c.signal(syscall.SIGBUS); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGBUS: %w", err)
	}
	if c.waitExit(timeout / 6) {
		return nil
	}
	log.Errorf("pid%d:    is still alive after SIGBUS", c.pid)
	log.Errorf("pid%d: <- SIGKILL", c.pid)
	if err := c.signal(syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGKILL: %w", err)
	}
	if c.waitExit(timeout/3 - time.Since(t0)) {
		return nil
	}
	return errors.New("still alive after SIGKILL")
}

// close releases the pidfd.
func (c *clientProc) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pidfd >= 0 {
		unix.Close(c.pidfd)
		c.pidfd = -1
	}
}
