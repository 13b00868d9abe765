// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package pidfd waits for processes through pidfds (pidfd_open(2)), for the
// gateway (a server it did not start) and the server (the client of a watch
// link it kills).
//
// A pidfd names one process: waits and signals through it (unix.PidfdOpen,
// unix.PidfdSendSignal) can never reach a process that got the same pid
// after the first one exited, and a wait is a poll(2) of the pidfd, which
// becomes readable once the process exited (a zombie has exited), not a
// loop of kill(pid, 0).
package pidfd

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Wait waits up to timeout (0: no wait) for the process of pidfd to exit
// and reports whether it did. The poll is resumed after a signal
// interrupted it (EINTR); another poll error (e.g. a closed pidfd) is
// returned with exited false.
func Wait(pidfd int, timeout time.Duration) (exited bool, err error) {
	deadline := time.Now().Add(timeout)
	for {
		ms := max(int(time.Until(deadline)/time.Millisecond), 0)
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return false, fmt.Errorf("poll pidfd %d: %w", pidfd, err)
		case n > 0 && fds[0].Revents&unix.POLLNVAL != 0:
			return false, fmt.Errorf("poll pidfd %d: %w", pidfd, unix.EBADF)
		case n > 0:
			return true, nil
		case ms == 0:
			return false, nil
		}
		// the poll timed out a little before the deadline: wait for the rest
	}
}
