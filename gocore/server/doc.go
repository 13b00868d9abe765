// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

// Package server is the WCFS filesystem: a FUSE filesystem (go-fuse v2, fs
// API) that shows the ZBigFiles of a ZODB database as files, as of the
// latest commit and as of any revision, and keeps following the database.
// The command gocore/cmd/wcfs runs it; the layout and behaviour are those of
// the reference (spec sections 1 and 3), with its admitted gaps closed.
//
// # Tree
//
//	head/at                 revision of head/ (16 hex digits, direct I/O)
//	head/watch              isolation protocol: every open is a watch link
//	head/bigfile/<oid>      ZBigFile data at head/at
//	@<rev>/bigfile/<oid>    ZBigFile data as of rev
//	.wcfs/zurl, pintimeout, stats, debug/zhead (with -debug)
//
// Files and @<rev>/ directories appear at their first lookup. Bad names are
// EINVAL, as are oids of objects that are not ZBigFiles or do not exist at
// the view's revision; storage errors are EIO (errors.go, spec 1.8).
//
// The tree is read-only: every request that would change it, an attribute
// or data (unlink, rmdir, rename, mkdir, mknod, create, symlink, link,
// setattr, fallocate, copy_file_range, xattrs) is refused with EPERM in a
// wrapper of the raw filesystem (readonly.go), as are write opens of
// everything but the streams head/watch and .wcfs/debug/zhead.
// Reads of those streams honour O_NONBLOCK (EAGAIN when there is nothing to
// read: nonblock.go).
//
// # Read path (bigfile.go)
//
// The kernel page cache is the only cache of file data. A FUSE read of a
// bigfile loads the whole blocks it touches, several blocks in parallel
// (zdata.LoadBlkShared: a full ZBlk0 block stays in the storage's read
// buffer, no copy), and replies with writev straight from the block buffer
// (reads within one block). Block buffers are reference counted and
// recycled (blockbuf.go). Concurrent reads of a block share one load
// through the file's load table. After a load, the read leaves the head
// view and pushes the parts of the block it does not return into the page
// cache (NOTIFY_STORE; never into the read's own pages, which the kernel
// keeps locked), then answers; the block leaves the load table once
// uploaded. So a read of block N returns with block N cached, and loads and
// caches nothing else, as the reference (see upload). With -prefetch a
// sequential reader of big blocks also gets the next blocks loaded and
// cached ahead (readahead).
// A load is not canceled by the interrupt of the read that started it
// (others may wait for it); waiting readers can be interrupted. A storage
// error fails that read only (EIO).
//
// # Head view and commits (head.go, follow.go)
//
// head/ reads through one ZODB connection (zdata.ZConn) that moves from
// commit to commit; @<rev>/ views have their own connections and never take
// head locks. The commit follower reads the storage's watch (through an
// unbounded queue, so that it never stalls the storage) and applies commits
// in order, each in two phases under headView.commitMu (write):
//
//  1. Switch, with headView.viewMu write-held (no head read, lookup or
//     getattr runs meanwhile): the block history tells which tracked blocks
//     of served head files changed, the size flag, and epochs; changed
//     blocks leave the load tables (the old data of a block loaded and not
//     uploaded yet is taken from there); the connection resyncs;
//     sizes/blksizes of affected files are recomputed; the old data to keep
//     is planned (preserve.go); a new upload generation starts. Nothing
//     here waits for the kernel.
//  2. Page cache, with viewMu released (reads run, at the new revision):
//     wait for the uploads of the old generation; retrieve the old data of
//     each changed block from the page cache (NOTIFY_RETRIEVE returns only
//     uptodate pages and does not wait for page locks) and store it into
//     @<rev>/bigfile/<oid>, rev = the block's revision before the commit
//     (resolved through the mount, O_PATH, so that the kernel knows the
//     inode), unless a load of the block's new data came first (the plan
//     is published in phase 1 and loads mark it: the pages retrieved could
//     be new); invalidate exactly the changed blocks of head files
//     (NOTIFY_INVAL_INODE waits for the page locks of reads in flight,
//     which is why it must not run with viewMu held: those reads need
//     viewMu), and the region past the old EOF of files that grew (a read
//     past EOF leaves zero-filled pages there that no history knows);
//     invalidate attributes of resized files; advance head/at last; tell
//     .wcfs/debug/zhead readers.
//
// Stores into @<rev>/ files wait for their page locks, which a read of
// them may hold while it is queued in the kernel behind head reads waiting
// for viewMu: that is why old data is not stored in phase 1. The kernel
// work of phase 2 scales with the number of changed blocks, its resources
// do not (preserve.go): at most commitWorkers goroutines (each may block in
// a syscall, which holds an OS thread), consecutive blocks retrieved,
// stored and invalidated together, old data released as soon as it is
// stored (memory: a chunk per worker), each @<rev> file resolved once per
// commit; what a commit too big to keep in full leaves out is loaded from
// the storage by @<rev>/ readers. Pins are bounded likewise (pinFanout), and
// so are idle @<rev>/ views (revViewsMax).
//
// A read served during phase 2 returns new data, so it never leaves stale
// data in the cache whether it lands before or after the invalidation.
// Unchanged blocks and holes stay cached when a file grows. An epoch (the
// ZBigFile object changed: blksize, blktab replaced, deleted) drops that
// file's cache and serves the new content; it does not take the filesystem
// down (spec gap 4). A commit the block history cannot apply (a record it
// needs cannot be read) is retried briefly, then applied with
// history.Recover: the files it may have changed are treated as replaced
// (epoch), and a file the history cannot follow anew gives EIO until a later
// commit makes it readable (refollowFiles).
//
// # Storage outages (zstor.go)
//
// Every load goes through zstor: loads from network storages get
// -zstor.timeout to answer. A failed storage watch, a timeout or a broken
// link puts the storage down: the follower stops, head/ stays at the last
// revision processed, cached data is served, loads fail at once (EIO), and
// .wcfs/zstor says "down since <time>: <cause>". The storage is opened anew
// every second; once that works the server unmounts (lazily if busy, without
// waiting for the detached mount's users) and exits 1 with a message naming
// the storage: neo/go's clients cannot resume the session nor list the
// commits missed, so a new server must follow the storage.
//
// # Locks
//
// Order: headView.commitMu > headView.viewMu > bigFile.loadMu, revViews.mu,
// revView.mu, headView.filesMu, oldRun.mu. viewMu (viewLock) is a
// writer-preferring RW lock whose waits can be canceled by FUSE INTERRUPT;
// readers must not take it recursively. Nothing calls into the kernel (FUSE notifications,
// opening through the mount) while holding a lock a FUSE handler may need.
//
// # @<rev>/ views (rev.go)
//
// A view owns a ZODB connection at rev, opened at the first lookup (a
// lookup of a future rev waits until the database reaches it; FUSE
// INTERRUPT cancels the wait). When a view had no open file and no request
// for -revgc.idle, the server asks the kernel to drop its directory entry
// (NOTIFY_INVAL_ENTRY); when the kernel forgets the nodes (with their page
// cache), the view closes its connection and is removed (spec gap 2). A view
// the kernel still uses reopens its connection if needed. Past revViewsMax
// views, those without an open file are released at once, least recently
// used first.
//
// # Lifecycle (server.go, activity.go; command: gocore/cmd/wcfs)
//
// Open validates options and opens the storage, the database and the head
// connection before anything is mounted; it refuses a mountpoint that the
// mount table shows mounted (two servers must never stack). Mount mounts
// (fstype fuse.wcfs, source = zurl, mount(2) as root,
// ExplicitDataCacheControl, MaxWrite at the kernel's cap), verifies that
// the kernel supports store/retrieve notifications, and starts the
// follower. The command then reports
// readiness (sd_notify READY=1). Wait returns when the filesystem is
// unmounted (SIGTERM/SIGINT, -autoexit, fusermount -u: exit 0) or serving
// failed. Unmounts are non-lazy: a busy mount keeps being served and the log
// names the processes using it. -autoexit counts open handles and client
// requests (the server's own requests excluded) in a wrapper of the raw
// filesystem, and unmounts after the grace period without either. A server
// started with -autoexit (by the gateway) removes its mountpoint directory
// after unmounting itself, under the mountpoint's start lock
// (gocore/internal/startlock, mountpoint.go), and the gateway's log of it if
// it ends without error. One started with -mntpt.create (python -m wcfs
// serve) creates its mountpoint directory under that lock, holds the lock
// until the mount serves, and removes the directory however it ends
// (OwnMountpoint).
//
// # Isolation protocol (watch.go, pin.go, kill.go)
//
// Every open of head/watch is a watch link (spec section 2): a
// wproto.Link in the server role over a wproto.Pipe that the FUSE handlers
// of the open file feed (WRITE → the link's receiver, the link's sends →
// READ, RELEASE → EOF); the opener's process is held by a pidfd. Each watch
// request runs in its own goroutine; a setup holds headView.commitMu (read)
// from the check of at to the last acknowledged pin, so that head/at, the
// history and the page cache stay put, and pins the blocks the history
// reports changed in (at, head] (history.ChangedBlocks) plus @head unpins.
// Reads pin on access through headView.OnBlockLoad: the cheap RevMax bound
// first, history.BlkRevAt only for watches it does not settle, watches in
// parallel, the data returned after the acknowledgements. A client that
// mishandles a pin is killed (SIGBUS, SIGKILL through the pidfd); see
// watch.go for the locks and the decisions where the reference is silent.
// headView.MinWatchAt keeps the history back to the oldest watch; Stats has
// the protocol's counters; Options.PinTimeout is the pin timeout.
package server
