// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package client

import (
	"fmt"
	"io"
	"unsafe"

	"wendelin.dev/wcfs/gocore/internal/procmem"
)

// Mapping is a read-only memory mapping of blocks [BlkStart, BlkStop) of a
// FileH. Its memory shows the file as of the Conn's at; it faults on access
// once the FileH or the Conn is closed. Safe for concurrent use, except
// Unmap, which must not race with accesses to the memory.
type Mapping struct {
	f        *FileH
	blkStart int64
	blkStop  int64
	addr     unsafe.Pointer
	length   int

	// protected by f.mu
	efaulted bool // the memory is PROT_NONE (the FileH was closed)
	unmapped bool // detached from the file (the range may still be reserved)
	released bool // the address range is unmapped
}

// FileH returns the file of the mapping.
func (m *Mapping) FileH() *FileH { return m.f }

// BlkStart returns the first block mapped.
func (m *Mapping) BlkStart() int64 { return m.blkStart }

// BlkStop returns the block after the last one mapped.
func (m *Mapping) BlkStop() int64 { return m.blkStop }

// Mem returns the mapped memory. It is valid until Unmap; reading it after
// the FileH or the Conn was closed faults (SIGSEGV).
//
// Go code must not touch it directly where a pin may be needed (blocks
// changed after the Conn's at): a goroutine blocked in a page fault cannot
// be stopped, so a garbage collection starting meanwhile would wait for it
// forever while the pinner, stopped too, is what it waits for. Read with
// ReadAt instead; threads the Go runtime does not know (C, Python) may
// touch Mem freely.
func (m *Mapping) Mem() []byte { return unsafe.Slice((*byte)(m.addr), m.length) }

// ReadAt copies the mapped memory at off into p (io.ReaderAt) through the
// kernel (process_vm_readv on this process): the goroutine waits for pins in
// a system call, where the Go runtime does not wait for it. Reading memory
// of a closed file fails with EFAULT.
func (m *Mapping) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: read at %d: negative offset", m, off)
	}
	if off >= int64(m.length) {
		return 0, io.EOF
	}
	n := min(len(p), m.length-int(off))
	got, err := procmem.Read(p[:n], unsafe.Add(m.addr, off))
	if err != nil {
		return got, fmt.Errorf("%s: read at %d: %w", m, off+int64(got), err)
	}
	if n < len(p) {
		return got, io.EOF
	}
	return got, nil
}

// Addr returns the address of the memory (for bindings that wrap it).
func (m *Mapping) Addr() uintptr { return uintptr(m.addr) }

// Len returns the length of the memory in bytes.
func (m *Mapping) Len() int { return m.length }

func (m *Mapping) String() string {
	return fmt.Sprintf("%s: mapping [#%d, #%d) @%p", m.f, m.blkStart, m.blkStop, m.addr)
}

// blkAddr returns the address of block blk in the mapping.
func (m *Mapping) blkAddr(blk int64) unsafe.Pointer {
	return unsafe.Add(m.addr, (blk-m.blkStart)*m.f.blksize)
}

// efault replaces the memory with PROT_NONE memory. f.mu held.
func (m *Mapping) efault() error {
	if m.efaulted || m.unmapped {
		return nil
	}
	m.efaulted = true
	if err := mmapNone(m.addr, m.length); err != nil {
		return fmt.Errorf("%s: efault: %w", m, err)
	}
	return nil
}

// Unmap unmaps the memory (idempotent; after UnmapKeepReserved it releases
// the reservation). Accesses to the memory after Unmap are undefined: the
// address range may be reused.
func (m *Mapping) Unmap() error {
	return m.unmap(false)
}

// UnmapKeepReserved detaches the mapping from its file and leaves its
// address range reserved with PROT_NONE memory, so that stale references
// fault instead of seeing whatever is mapped there later. A later Unmap
// releases the range (bindings whose buffers may outlive the Mapping call it
// once the last buffer is gone).
func (m *Mapping) UnmapKeepReserved() error {
	return m.unmap(true)
}

func (m *Mapping) unmap(keepReserved bool) error {
	f := m.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if m.released {
		return nil
	}
	var err error
	switch {
	case m.unmapped && keepReserved:
		return nil
	case keepReserved:
		if !m.efaulted {
			err = mmapNone(m.addr, m.length)
		}
	default:
		err = munmap(m.addr, m.length)
		m.released = true
	}
	delete(f.mmaps, m)
	m.unmapped = true
	if err != nil {
		return fmt.Errorf("%s: unmap: %w", m, err)
	}
	return nil
}
