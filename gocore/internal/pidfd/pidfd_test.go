// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package pidfd

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Wait on a real process: running, exited (a zombie, not reaped yet),
// reaped; and on a descriptor that is not open.
func TestWait(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reaped := false
	t.Cleanup(func() {
		if !reaped {
			cmd.Process.Kill() // by its pid, a child of ours not reaped yet
			cmd.Wait()
		}
	})
	fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	if exited, err := Wait(fd, 0); exited || err != nil {
		t.Fatalf("running process: Wait(0) = %v, %v", exited, err)
	}
	if exited, err := Wait(fd, 20*time.Millisecond); exited || err != nil {
		t.Fatalf("running process: Wait(20ms) = %v, %v", exited, err)
	}
	if err := unix.PidfdSendSignal(fd, syscall.SIGKILL, nil, 0); err != nil {
		t.Fatal(err)
	}
	if exited, err := Wait(fd, 30*time.Second); !exited || err != nil {
		t.Fatalf("killed process: Wait = %v, %v", exited, err)
	}
	if exited, err := Wait(fd, 0); !exited || err != nil {
		t.Fatalf("zombie: Wait(0) = %v, %v", exited, err)
	}
	cmd.Wait()
	reaped = true
	if exited, err := Wait(fd, 0); !exited || err != nil {
		t.Fatalf("reaped process: Wait(0) = %v, %v", exited, err)
	}
	unix.Close(fd)
	// not open (a number no open reuses, unlike fd's)
	if exited, err := Wait(1<<20, 0); exited || !errors.Is(err, unix.EBADF) {
		t.Fatalf("closed pidfd: Wait = %v, %v; want EBADF", exited, err)
	}
}
