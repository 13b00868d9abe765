// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package client

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ReadFaults reads the first byte of every page of [addr, addr+n) and
// returns, per page, '1' if the read faulted and '0' if it did not: tests
// (also the Python ones, through the bindings) check with it that mappings
// of closed files fault. The reads go through the kernel (see
// Mapping.ReadAt), so a page that needs a pin is fine too.
func ReadFaults(addr unsafe.Pointer, n int) string {
	res := make([]byte, 0, (n+pageSize-1)/pageSize)
	var b [1]byte
	for off := 0; off < n; off += pageSize {
		if _, err := readMem(b[:], unsafe.Add(addr, off)); err != nil {
			res = append(res, '1')
		} else {
			res = append(res, '0')
		}
	}
	return string(res)
}

// readMem copies memory at addr of this process into p through the kernel
// (process_vm_readv): the calling goroutine waits in a system call, not in a
// page fault. It returns the bytes copied before a fault (EFAULT if none).
func readMem(p []byte, addr unsafe.Pointer) (int, error) {
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
