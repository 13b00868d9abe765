// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package client

import (
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Memory primitives. Every mapping the client makes is read-only, MAP_FIXED
// over an address range it reserved first, and marked MADV_DONTFORK: a child
// forked without exec does not inherit it (an access there faults instead of
// showing data that nobody keeps isolated), and fork does not copy its page
// tables.

// pageSize is the system page size.
var pageSize = os.Getpagesize()

// reserve reserves length bytes of address space: PROT_NONE anonymous
// memory that takes no RAM and faults on access.
func reserve(length int) (unsafe.Pointer, error) {
	addr, err := unix.MmapPtr(-1, 0, nil, uintptr(length), unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("reserve %d bytes of address space: %w", length, err)
	}
	if err := dontfork(addr, length); err != nil {
		unix.MunmapPtr(addr, uintptr(length))
		return nil, err
	}
	return addr, nil
}

// mmapFile maps length bytes of fd at off over addr, read-only and shared.
func mmapFile(addr unsafe.Pointer, length int, fd int, off int64) error {
	return mmapFixed("mmap", addr, length, unix.PROT_READ, unix.MAP_SHARED, fd, off)
}

// devZero is /dev/zero, opened once.
var devZero struct {
	once sync.Once
	fd   int
	err  error
}

// mmapZero maps length bytes of zeros over addr: /dev/zero, shared,
// MAP_NORESERVE. Reading it takes no memory (the kernel maps its zero
// page; verified by TestZeroMappingTakesNoMemory).
func mmapZero(addr unsafe.Pointer, length int) error {
	devZero.once.Do(func() {
		devZero.fd, devZero.err = unix.Open("/dev/zero", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if devZero.err != nil {
			devZero.err = fmt.Errorf("open /dev/zero: %w", devZero.err)
		}
	})
	if devZero.err != nil {
		return devZero.err
	}
	return mmapFixed("mmap /dev/zero", addr, length, unix.PROT_READ, unix.MAP_SHARED|unix.MAP_NORESERVE, devZero.fd, 0)
}

// mmapNone replaces length bytes at addr with PROT_NONE memory: any access
// faults (SIGSEGV). This is how closed files' mappings are "efaulted".
func mmapNone(addr unsafe.Pointer, length int) error {
	return mmapFixed("mmap PROT_NONE", addr, length, unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE, -1, 0)
}

// mmapFixed maps over [addr, addr+length) (MAP_FIXED) and marks the new
// mapping MADV_DONTFORK.
func mmapFixed(what string, addr unsafe.Pointer, length int, prot, flags, fd int, off int64) error {
	got, err := unix.MmapPtr(fd, off, addr, uintptr(length), prot, flags|unix.MAP_FIXED)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if got != addr {
		// MAP_FIXED never does this; be sure not to leave a stray mapping
		unix.MunmapPtr(got, uintptr(length))
		return fmt.Errorf("%s: kernel chose %p instead of %p", what, got, addr)
	}
	return dontfork(addr, length)
}

// munmap unmaps length bytes at addr.
func munmap(addr unsafe.Pointer, length int) error {
	if err := unix.MunmapPtr(addr, uintptr(length)); err != nil {
		return fmt.Errorf("munmap: %w", err)
	}
	return nil
}

// dontfork marks the mapping at addr not to be inherited by forked children.
func dontfork(addr unsafe.Pointer, length int) error {
	if err := unix.Madvise(unsafe.Slice((*byte)(addr), length), unix.MADV_DONTFORK); err != nil {
		return fmt.Errorf("madvise MADV_DONTFORK: %w", err)
	}
	return nil
}
