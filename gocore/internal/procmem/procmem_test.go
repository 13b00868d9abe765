// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package procmem

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Readable pages read, a PROT_NONE page faults (EFAULT, no SIGSEGV), and a
// read across it stops there.
func TestReadAndFaults(t *testing.T) {
	mem, err := unix.Mmap(-1, 0, 3*pageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = byte(i / pageSize * 7)
	}
	if err := unix.Mprotect(mem[pageSize:2*pageSize], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	addr := unsafe.Pointer(unsafe.SliceData(mem))
	if got := Faults(addr, len(mem)); got != "010" {
		t.Errorf("Faults = %q, want 010", got)
	}
	buf := make([]byte, 2*pageSize)
	n, err := Read(buf, addr)
	if n != pageSize || !errors.Is(err, unix.EFAULT) {
		t.Errorf("read across the PROT_NONE page: %d, %v; want %d, EFAULT", n, err, pageSize)
	}
	if !bytes.Equal(buf[:n], mem[:n]) {
		t.Errorf("read: wrong data")
	}
	n, err = Read(buf[:pageSize], unsafe.Add(addr, 2*pageSize))
	if n != pageSize || err != nil || buf[0] != 14 {
		t.Errorf("read of the last page: %d, %v, byte %d", n, err, buf[0])
	}
}
