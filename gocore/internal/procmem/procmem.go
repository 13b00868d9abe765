// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package procmem reads memory of this process through the kernel
// (process_vm_readv on itself) instead of touching it: the calling goroutine
// waits in a system call, not in a page fault, and memory that is not
// readable (PROT_NONE, unmapped, a mapping of a closed WCFS file) gives
// EFAULT instead of SIGSEGV.
//
// The client reads mappings with it (client.Mapping.ReadAt: a goroutine
// blocked in a page fault that needs a pin would stall the Go runtime's
// stop-the-world while the pinner waits), and its tests check with Faults
// that mappings of closed files fault, without crashing the test process
// (the Python tests do the same with process_vm_readv through ctypes).
package procmem

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

var pageSize = os.Getpagesize()

// Read copies memory at addr of this process into p through the kernel. It
// returns the bytes copied before a fault (EFAULT if none).
func Read(p []byte, addr unsafe.Pointer) (int, error) {
	done := 0
	for done < len(p) {
		local := []unix.Iovec{{Base: &p[done]}}
		local[0].SetLen(len(p) - done)
		remote := []unix.RemoteIovec{{Base: uintptr(addr) + uintptr(done), Len: len(p) - done}}
		n, err := unix.ProcessVMReadv(os.Getpid(), local, remote, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		if n == 0 {
			return done, unix.EFAULT
		}
		done += n
	}
	return done, nil
}

// Faults reads the first byte of every page of [addr, addr+n) with Read and
// returns, per page, '1' if the read faulted and '0' if it did not. A page
// that needs a pin is fine too: the read waits for it in the kernel.
func Faults(addr unsafe.Pointer, n int) string {
	res := make([]byte, 0, (n+pageSize-1)/pageSize)
	var b [1]byte
	for off := 0; off < n; off += pageSize {
		if _, err := Read(b[:], unsafe.Add(addr, off)); err != nil {
			res = append(res, '1')
		} else {
			res = append(res, '0')
		}
	}
	return string(res)
}
