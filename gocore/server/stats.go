// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"fmt"
	"strings"
	"sync/atomic"
)

// Stats are the counters shown in .wcfs/stats (spec 1.9).
//
// Capitalised names are gauges (current number of instances), lower-case
// names are counters (never decrease). BigFile, RevHead and ZHeadLink are
// maintained by the filesystem; WatchLink, Watch, PinnedBlk, Pin and PinKill
// belong to the isolation protocol, which updates them directly.
type Stats struct {
	WatchLink atomic.Int64 // open head/watch links
	Watch     atomic.Int64 // watches established or being established
	PinnedBlk atomic.Int64 // blocks currently pinned, summed over watches
	Pin       atomic.Int64 // pin requests issued
	PinKill   atomic.Int64 // clients killed for mishandling a pin

	// Bytes stored into the page cache (uploads of loaded blocks, old
	// data kept for @<rev>/), by splice from data.fs and by write from
	// memory. Not shown in .wcfs/stats (its keys are the reference's).
	StoredSplice atomic.Int64
	StoredWrite  atomic.Int64

	// Blocks loaded from the storage for head/ and @<rev>/ files (reads,
	// prefetches). Not in .wcfs/stats either.
	Loaded atomic.Int64

	zheadLink atomic.Int64 // open .wcfs/debug/zhead handles
}

// statsText renders .wcfs/stats: always the same 8 keys in this order.
func (s *Server) statsText() []byte {
	st := s.stats
	var b strings.Builder
	for _, kv := range []struct {
		key string
		val int64
	}{
		{"BigFile", int64(s.head.nfiles())},
		{"RevHead", int64(s.root.nrevs())},
		{"ZHeadLink", st.zheadLink.Load()},
		{"WatchLink", st.WatchLink.Load()},
		{"Watch", st.Watch.Load()},
		{"PinnedBlk", st.PinnedBlk.Load()},
		{"pin", st.Pin.Load()},
		{"pinkill", st.PinKill.Load()},
	} {
		fmt.Fprintf(&b, "%s\t: %d\n", kv.key, kv.val)
	}
	return []byte(b.String())
}
