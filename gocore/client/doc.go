// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package client gives a process isolated, zero-copy memory views of
// ZBigFile data as of a database revision, through a WCFS mount: the client
// of the isolation protocol (spec sections 2.6, 2.7 and 5; it replaces the
// reference's C++ client).
//
//	wc := client.New(mountpoint)       // per mount (the gateway joined it)
//	conn, _ := wc.Connect(ctx, at)     // a view as of at, like a ZODB connection
//	f, _ := conn.Open(ctx, foid)       // a ZBigFile in that view
//	m, _ := f.Mmap(blkStart, blkLen)   // read-only memory of blocks
//	data := m.Mem()
//	conn.Resync(ctx, at2)              // move the view forward
//
// # Memory
//
// A Mapping is an address range reserved with PROT_NONE memory over which
// pieces are mapped with MAP_FIXED, all read-only and MAP_SHARED:
//
//   - blocks inside the head file: head/bigfile/<oid>, so that every client
//     shares the kernel's page cache of head/ (one copy of unchanged data
//     for any number of processes at any revisions);
//   - blocks beyond the end of the head file as last seen: /dev/zero
//     (MAP_NORESERVE; reading it takes no memory). Accessing a file mapping
//     past EOF would be SIGBUS, and head/ growing later must not show
//     through; Resync maps the blocks that came inside the file;
//   - pinned blocks: @<rev>/bigfile/<oid> (zeros where that file ends before
//     the block does), one mmap per block, replacing the block in place.
//
// Every piece is marked MADV_DONTFORK. Closing a FileH (or its Conn)
// "efaults" its mappings: their ranges become PROT_NONE, so a stale
// reference faults (SIGSEGV) instead of showing data nobody keeps isolated.
//
// # Pins
//
// The server guarantees (spec 2.6) that a client watching a file at at
// never gets data of a block changed after at from head/ without first
// receiving, and acknowledging, "pin <foid> #<blk> @<rev>". One goroutine
// per Conn, the pinner, receives pins and remaps the block in every mapping
// of the file before replying "ack"; "@head" maps head/ back. The pinner
// needs nothing that a caller may hold while it waits for the server (the
// Conn's at lock, or a Python GIL in the bindings): a thread faulting on a
// mapping is blocked in the kernel until the pin is acknowledged. A pin
// that cannot be applied leaves the block faulting, is answered "nak" (the
// server then kills the process, as for the reference) and closes the Conn.
// @<rev> files are opened once per (rev, file) and shared by every block
// pinned to them, in every Conn of the WCFS, until the last such pin goes.
//
// # Conn, Open, Resync
//
// Connect opens a watch link and does not wait for head/at: the server makes
// each watch request wait until head/at reaches its at, so Open and Resync
// wait there, without polling (the reference polls head/at every 1 ms).
// Open opens head/bigfile/<oid>, sends "watch <oid> @<at>" (the pins of the
// setup arrive before "ok"), then takes the size of the head file, which
// is at least the size as of at. An Open that fails once the request went
// (its ctx ended: the server still sets the watch up when head/at gets
// there) leaves the FileH in the Conn, closing, until "watch <oid> -" is
// answered in the background: the pins of that watch are acknowledged
// without effect instead of being unexpected (nak, and a kill). Resync checks that at does not go back,
// moves every watch (in parallel) and then maps the blocks that files grew
// by. Open and FileH.Close hold the Conn's at lock shared and Resync
// exclusively, so a watch request always carries the Conn's current at and
// a resync never watches a file being closed (it skips those whose failed
// open is being unwatched). Any error of Resync
// closes the Conn, as in the reference.
//
// Lock order: Conn.atMu > Conn.mu > FileH.mu > WCFS.mu. Requests to the
// server are never sent with Conn.mu or FileH.mu held.
//
// # Go readers
//
// A thread that touches a block needing a pin sleeps in the kernel (in the
// page fault) until the pinner of its own process has acknowledged the pin.
// A goroutine sleeping there cannot be stopped: a garbage collection that
// starts meanwhile waits for it, with every other goroutine stopped, the
// pinner included, and the process hangs until the server's pin timeout
// kills it. So Go code reads mappings with Mapping.ReadAt, which copies
// through the kernel (process_vm_readv on this process: the goroutine waits
// in a system call, which the runtime does not wait for), and touches
// Mapping.Mem directly only where no pin can be needed (a Conn at head/at
// with no commit since). Threads the Go runtime does not know (Python's, C)
// have no such limit: the Python bindings hand Mem to Python as is.
//
// # Fork
//
// Go does not run in a child forked without exec, so nothing of this
// package runs there: mappings are not inherited (MADV_DONTFORK, an access
// faults), descriptors are close-on-exec, and WCFS.Fds lists the descriptors
// a binding closes in the child (the Python package does, and reserves the
// ranges of its mappings with PROT_NONE so that they keep faulting). The
// child sends nothing to the server; the parent is unaffected.
package client
