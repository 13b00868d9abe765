// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// Initial pins of new watches at every revision: only blocks read through
// head/ and changed after at, each pinned to its own revision as of at
// (holes and blocks unchanged since the server started: the tail); moving a
// watch forward sends only new pins and @head unpins, and any increasing
// sequence of at on one link ends in the same state as a fresh watch at the
// last at (spec 8.3 test_wcfs_watch_setup).
func TestWatchSetup(t *testing.T) {
	t.Parallel()
	const bs = 8 << 10
	tf := newTFile(t, bs)
	at1 := tf.commit(2)
	at2 := tf.commit(2, 3, 5)
	at3 := tf.commit(0, 2, 5)
	tracked := map[int64]bool{}
	for blk := int64(0); blk < 6; blk++ { // 1, 4: holes
		tf.read(blk)
		tracked[blk] = true
	}
	at4 := tf.commit(0, 3, 6) // 6: the file grows; not read
	at5 := tf.commit(1, 2)
	ats := []zodb.Tid{tf.at0, at1, at2, at3, at4, at5}

	// fresh watches
	for _, at := range ats {
		tl := openLink(t, tf.srv)
		got := tl.mustWatch(tf.oid, at)
		if want := pinsOf(tf.oid, tf.wantPins(tracked, at)); got != want {
			t.Errorf("watch @%s: pins\n  got  %s\n  want %s", at, got, want)
		}
		tl.close()
	}

	// every increasing sequence (with repeats) on one link = a fresh watch
	var seqs [][]zodb.Tid
	var gen func(prefix []zodb.Tid, from int)
	gen = func(prefix []zodb.Tid, from int) {
		if len(prefix) > 0 {
			seqs = append(seqs, append([]zodb.Tid(nil), prefix...))
		}
		if len(prefix) == 3 {
			return
		}
		for i := from; i < len(ats); i++ {
			gen(append(prefix, ats[i]), i)
		}
	}
	gen(nil, 0)
	for _, seq := range seqs {
		tl := openLink(t, tf.srv)
		for _, at := range seq {
			tl.mustWatch(tf.oid, at)
			if got, want := tl.view(tf.oid), pinsOf(tf.oid, tf.wantPins(tracked, at)); got != want {
				t.Errorf("watch sequence %v: at @%s: client view\n  got  %s\n  want %s", seq, at, got, want)
			}
		}
		tl.close()
	}
}
