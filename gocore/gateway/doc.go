// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package gateway starts, joins, checks and stops WCFS servers: the logic
// behind the Python package wendelin.wcfs (join/start/serve/stop/status) and
// its command line.
//
// There is one server per storage. It is mounted at z.Mountpoint() =
// /dev/shm/wcfs/<sha1 of the normalized zurl>, so every process finds it
// without coordination. The exported calls take the zurl as given and parse
// it once (zurl.Parse: a relative FileStorage path is resolved against this
// process's working directory); everything below takes the zurl.ZURL, and the
// server is given its StorageURL. A Gateway holds the per-process state: the
// registry of joined servers (one WCFS per mountpoint with a join count) and
// the configuration (server binary, timeouts, logger).
//
// # Security of the mount root
//
// The root of mountpoints is shared by all users (sticky, mode 1777).
// Before anything is created in it (dirs.go), every directory above it must
// be owned by root or by us (sticky where others may write), and the root
// itself by root or by us: the owner of a directory may rename any entry in
// it, so another owner could swap our mountpoint for a symlink between its
// creation and the mount. Root takes over a root of another user (fchown and
// fchmod through its descriptor, then checks it is still the one at the
// path); other users refuse it. Under such a root, paths are safe to use as
// paths. A file of another user at a lock path is removed where the kernel
// allows, else a start fails and a stop goes on without the lock
// (gocore/internal/startlock). Nothing mounted in the root is touched before
// the mount table is read. docs/gateway.md has the table of rules.
//
// # Trust and classification
//
// Nothing at a mountpoint is used before it is classified, and classification
// never touches the FUSE filesystem first (a hung server would hang the
// caller): the mount table (/proc/thread-self/mountinfo) is read first, and the
// top mount at the mountpoint is
//
//   - absent: nothing mounted;
//   - foreign: not fuse.wcfs, or mounted by another uid, or serving another
//     storage: refused with an error, never touched;
//   - ours: fuse.wcfs mounted by our uid for an equivalent zurl; then a probe,
//     bounded in time and run in its own goroutine, opens and reads
//     .wcfs/zurl, which must match. ENOTCONN/ECONNABORTED mean the server
//     died (a stale mount, cleaned before a new start); no answer within the
//     probe timeout means it hangs (reported, never waited for).
//
// Attaching is that probe: the opened .wcfs/zurl stays open as long as the
// WCFS is joined, which keeps the mount busy so an -autoexit server stays up.
//
// A registered WCFS whose server process exited (crashed, killed, ended
// after losing its storage) leaves the registry at the next join, which then
// attaches to or starts a new server; the joins holding the old WCFS keep it
// until they close it. The process is the child this registry spawned, or,
// for a server it attached to, the one found in the process table in the
// background after attaching (a pidfd, checked without touching the mount).
//
// # Start lock
//
// Starting, cleaning a stale mount and stopping are serialized across processes
// by an exclusive flock on <root>/<id>.lock (gocore/internal/startlock, shared
// with the server, which takes it to remove its mountpoint directory after an
// -autoexit), taken with the caller's context.
// Under the lock the state is classified again, so that N processes joining one
// zurl at once start exactly one server: the first starts it, the others find
// it running. Joins of a running server take no lock. The lock file is unlinked
// by its holder before release; a locker checks that the file it locked is
// still the one at the path (else it retries), so nothing is left behind.
//
// # Start and readiness
//
// The server is spawned in its own session with cwd "/" and
// NOTIFY_SOCKET pointing to an abstract unix datagram socket created for this
// start (sd_notify protocol, the same a systemd Type=notify unit uses); it
// closes the descriptors it inherited (gocore/cmd/wcfs), so that none of
// the caller's stays open in a server that outlives it. Only
// datagrams whose SCM_CREDENTIALS name the child are accepted. The starter
// waits, without polling, for READY=1, for the child's exit (STATUS= and
// ERRNO= sent before a startup failure become the error), for the context, or
// for the start timeout ($WENDELIN_CORE_WCFS_START_TIMEOUT, default 60s); a
// slow start gets the kernel stacks of the child logged and SIGQUIT (Go
// goroutine dump to the server's stderr) before it is stopped. Until it is
// ready, what the server says it does (STATUS=, e.g. opening storage) and
// the last line of its log are logged every 10s and put in the error of a
// start that times out or is cancelled; the error of a server that exited
// before it was ready has its STATUS= and what programs it ran wrote
// (fusermount's reason). A user who is not root without read-write access
// to /dev/fuse is told so before anything is spawned. After READY
// the mount must be in the mount table as ours, .wcfs/zurl must read back the
// zurl, and the FUSE connection's abort file
// (/sys/fs/fuse/connections/<minor>/abort) is opened; any failure stops what
// was started.
//
// A spawned server's stdout and stderr go to its log <root>/<id>.log
// (unless Gateway.ServerOutput says otherwise): created anew at each start
// (the previous log's last lines are logged first: a server that ended
// normally removed it, so a log left tells how the previous server ended),
// named in the error of a failed start and by Status, removed by a clean
// Stop and by an -autoexit server ending normally. Servers log to stderr by
// default, so nothing goes to $TMPDIR.
//
// # Leftovers
//
// A process killed while it holds a start lock leaves the lock file and
// maybe an empty mountpoint directory. Every start lock taken sweeps the
// root (sweep.go): a lock file of ours that nobody holds, an empty
// mountpoint directory of ours with nothing mounted, are removed under their
// lock, taken without waiting (a busy lock is somebody at work). Failed
// starts keep the logs of the last keepLogs. Serve with exec cannot hold the
// lock across the exec: the server creates and removes its mountpoint itself
// (-mntpt.create).
//
// # Stop escalation
//
// Server.Stop works within the context's deadline (default 20s), with a share
// of the remaining time T per step: unmount (non-lazy); if that fails, the
// processes holding the mount are logged and named in the error, the server
// gets SIGTERM and the FUSE connection is aborted; wait 0.4T for the server
// to exit; kernel stacks + SIGQUIT, wait 0.2T; SIGKILL, wait 0.2T; lazy
// unmount if still mounted; remove the mountpoint directory. Every unmount by
// path first checks that the top mount there is still the one being stopped.
// Processes are signalled and waited through pidfds (no PID reuse races, no
// polling).
//
// # Processes and diagnostics
//
// A server not started by this process is found in the process table: same
// uid as the mount's user_id, argv ending in "ZURL MOUNTPOINT" and an open
// /dev/fuse. Processes keeping a mount busy are found without touching it:
// fdinfo mnt_id equal to the mount's id, memory maps on its device, cwd, root
// or executable under it (gocore/internal/mountprocs, which the server's own
// busy report uses too).
package gateway
