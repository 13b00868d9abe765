// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

// Package history keeps the block history of the ZBigFiles a WCFS server
// follows: for every block, at which revisions its data changed, inside a
// window of recent revisions. It is what the reference implementation calls
// δFtail (with ΔBtail below it), built differently.
//
// # Revisions and the window
//
// A History is created at the database head at0 and advanced commit by
// commit with Update(δZ), where δZ = (tid, changed oids) is a storage watch
// event (zodb.EventCommit). It covers the window (Tail, Head] of revisions:
// Head is the last commit applied, Tail starts at at0 and moves forward only,
// by ForgetPast. Answers are exact inside the window.
//
// A block changes at revision rev when the commit rev
//
//   - changed its blktab entry: the key was added (a hole filled, the file
//     extended), removed (a hole punched, the file truncated), or set to
//     another ZBlk object (a format change), or
//   - changed the ZBlk object the block maps to after the commit.
//
// ZData chunks are not looked at: wendelin.core writers mark a ZBlk1
// changed whenever one of its chunks changes (spec 4.3). A ZBlk rewritten
// with the same data is a change (its record, hence its serial, is new).
// Moving entries between buckets (splits, merges) is not a change.
//
// # Files and epochs
//
// Follow(foid) starts following a ZBigFile. Following rebuilds the file's
// history over the whole window, not only from now on: the history keeps the
// raw changes δZ of the window (see Memory), replays those that concern the
// file, and so knows every block's changes since Tail, also the changes that
// happened before the file was followed or the block first read.
//
// An epoch of a file is a commit that changed its ZBigFile object itself in
// a way that makes it another file: created, blksize changed, blktab
// replaced. (A ZBigFile record rewritten with the same blksize and blktab is
// not an epoch.) The reference treats an epoch of a followed file as fatal;
// here Update reports it (FileDelta.Epoch), drops what was tracked of the
// file, and goes on following the new file from the epoch; if the object is
// no longer a ZBigFile at all (FileDelta.Gone) the file is not followed any
// more. The history of a file starts at its file tail, max(Tail, last epoch
// in the window): queries about revisions before the last epoch fail with
// an *EpochError (a watch "before create": spec 2.3's "file epoch detected").
//
// # Tracking
//
// Only blocks that may be in the kernel page cache of head files matter:
// those read through head/, holes included. Track(foid, blk, zblk, head)
// records such a read, with the ZBlk the block maps to (0 for a hole). Update
// reports changes of tracked blocks only, BlkRevAt answers for tracked blocks,
// and ChangedBlocks lists tracked blocks. The tracked set of a file only
// grows (until an epoch or Unfollow); this matches the page cache, which may
// keep any block that was ever read.
//
// # Queries
//
// BlkRevAt(foid, blk, at) is the revision that produced the block's data as
// seen at at: the last revision ≤ at that changed it, or the file tail if it
// did not change in (file tail, at]. Either way the data is the same at every
// revision of [rev, at], which is what pins need: clients at different at
// pin to the same @rev and share its page cache (spec 2.4, 9.4).
//
// ChangedBlocks(foid, lo, hi) lists the tracked blocks that changed in
// (lo, hi], each with BlkRevAt(lo): the pins of a watch set up (or moved) to
// lo when head is hi (spec 2.4).
//
// Info(foid) gives blksize and size as of Head. Update says which files'
// size changed: only when the largest blktab key changed (the reference
// flags every change of the tree's shape).
//
// # How it works
//
// For every followed file the history keeps an index of its blktab as of
// Head: every interior node with its children, and the set of bucket oids. A
// global route maps every such oid (and ZBigFile oid) to the files it
// belongs to, so that Update finds the files a commit concerns with one map
// lookup per changed oid, whatever the number of files.
//
// For a file concerned by a commit, Update diffs the blktab between Head and
// tid by loading only the changed nodes, at both revisions, straight from the
// storage (decoded by gocore/internal/zpickle; no zodb.Connection, no live
// objects): an unchanged bucket has the same entries at both revisions, an
// unchanged subtree with no changed node below it is the same subtree
// wherever it hangs, and the entries of the remaining buckets are compared
// key by key. This gives the exact key changes of every commit, for every
// key of the file, not only tracked ones, at a cost proportional to the
// changed nodes.
//
// A tracked block's history is a sorted list of revisions, kept up to date
// by Update from the key changes and from a route of ZBlk oids to the tracked
// blocks mapping to them. When a block is first tracked, its history is
// rebuilt from the file's key changes (which ZBlk the key mapped to, when) and
// the raw change log δZ of the window (when each of those ZBlks changed).
//
// # Memory
//
// Per followed file: its interior nodes (a 1 TiB file of 2 MiB blocks has
// ~17,000 buckets under a few dozen interior nodes) and one route entry per
// bucket (tens of bytes); per tracked block, its map entry and its changes
// inside the window; per key change inside the window, two entries. Bucket
// contents are never kept. The raw log of the window costs 12 bytes per
// changed oid per commit plus a map entry per distinct oid. ForgetPast frees
// what falls out of the window, in time proportional to what it frees. See
// BENCHMARKS.md for figures.
//
// # Concurrency and the caller's contract
//
// History is safe for concurrent use. Queries (BlkRevAt, ChangedBlocks,
// Info, Head, Tail) run in parallel with each other and with the loads of
// Update and Follow; they wait only while a writer installs its result, and
// take one read lock and a few map lookups and binary searches.
//
// The WCFS server calls it under its head lock (spec 1.7, 2.4, 2.5):
//
//   - Update(ctx, δZ) for every commit, in order, under the head lock held
//     exclusively, before zhead moves to δZ.Tid; then, for each file of the
//     delta: invalidate FileDelta.Blocks (BlkRevAt(foid, blk, old head) is
//     the @rev to keep the old data in), the attributes if SizeChanged, the
//     whole file if Epoch (forget it if Gone); then ForgetPast(revCut) with
//     revCut ≤ head - 1 minute and ≤ the at of every watch.
//   - Follow(ctx, foid) when head/bigfile/<foid> is looked up, and
//     Track(foid, blk, zblk, zhead.At()) for every block read from head/, with
//     the ZBlk loaded there (zdata.BlkInfo.ZBlk), under the head lock shared,
//     so that Head equals the revision the data was loaded at.
//   - BlkRevAt and ChangedBlocks for pins and watch setups, under the head
//     lock shared when they are about Head (a query about a fixed revision in
//     the window needs no lock).
//
// Update returns an error, leaving the history unchanged, when a record it
// needs cannot be loaded or decoded; the caller cannot know what the commit
// changed then. Errors name the file, the node and the revision; ErrCorrupt
// marks blktab data that is not a valid LOBTree. Recover (recover.go) then
// applies the commit anyway: every followed file it may have changed is
// reported as an epoch (the caller drops its cache) and followed anew, and
// the history goes on with the next commits. A file whose records cannot be
// read at the commit is left unfollowed (FileDelta.NotFollowed) until a
// later Follow works.
package history
