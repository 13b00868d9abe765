// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"bytes"
	"testing"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/testdb"
	"wendelin.dev/wcfs/gocore/wproto"
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

	// every increasing sequence on one link (each step also repeated:
	// at_i -> at_i) = a fresh watch at every step
	var seqs [][]zodb.Tid
	for mask := 1; mask < 1<<len(ats); mask++ {
		var seq []zodb.Tid
		for i, at := range ats {
			if mask&(1<<i) != 0 {
				seq = append(seq, at, at)
			}
		}
		seqs = append(seqs, seq)
	}
	for _, seq := range seqs {
		tl := openLink(t, tf.srv)
		prev := map[int64]zodb.Tid{}
		for _, at := range seq {
			cur := tf.wantPins(tracked, at)
			diff := map[int64]zodb.Tid{} // only what changes is sent
			for blk, rev := range cur {
				if prev[blk] != rev {
					diff[blk] = rev
				}
			}
			for blk := range prev {
				if _, ok := cur[blk]; !ok {
					diff[blk] = wproto.TidHead
				}
			}
			if got, want := tl.mustWatch(tf.oid, at), pinsOf(tf.oid, diff); got != want {
				t.Errorf("watch sequence %v: at @%s: pins sent\n  got  %s\n  want %s", seq, at, got, want)
			}
			if got, want := tl.view(tf.oid), pinsOf(tf.oid, cur); got != want {
				t.Errorf("watch sequence %v: at @%s: client view\n  got  %s\n  want %s", seq, at, got, want)
			}
			prev = cur
		}
		tl.close()
	}
}

// Pins on access with several links (spec 8.3 test_wcfs_watch_vs_access):
// a read pins exactly the watches whose at is before the block's last
// change, to the block's revision as of their at, never twice, and returns
// only after the acknowledgements.
func TestWatchVsAccess(t *testing.T) {
	t.Parallel()
	const bs = 4 << 10
	tf := newTFile(t, bs)
	f := tf.oid
	at1 := tf.commit(0, 1, 2)
	at2 := tf.commit(1)
	at3 := tf.commit(2)
	for blk := int64(0); blk < 4; blk++ { // 3: a hole
		tf.read(blk)
	}
	A, B, C := openLink(t, tf.srv), openLink(t, tf.srv), openLink(t, tf.srv)
	A.mustWatch(f, at3)
	B.mustWatch(f, at3)
	if got, want := C.mustWatch(f, at2), pinsOf(f, map[int64]zodb.Tid{2: at1}); got != want {
		t.Fatalf("C: watch @at2: pins %s, want %s", got, want)
	}
	check := func(what string, tl *tLink, want map[int64]zodb.Tid) {
		t.Helper()
		if got, want := tl.takePins(), pinsOf(f, want); got != want {
			t.Errorf("%s: pins\n  got  %s\n  want %s", what, got, want)
		}
	}
	none := map[int64]zodb.Tid{}

	at4 := tf.commit(0, 2, 3)
	tf.read(0) // changed at at1 and at4
	check("read #0: A", A, map[int64]zodb.Tid{0: at1})
	check("read #0: B", B, map[int64]zodb.Tid{0: at1})
	check("read #0: C", C, map[int64]zodb.Tid{0: at1})
	tf.read(2) // C has it pinned @at1 already
	check("read #2: A", A, map[int64]zodb.Tid{2: at3})
	check("read #2: B", B, map[int64]zodb.Tid{2: at3})
	check("read #2: C", C, none)
	tf.read(1) // unchanged since at2: nobody
	tf.read(3) // a hole before: pinned to the tail
	check("read #1, #3: A", A, map[int64]zodb.Tid{3: tf.at0})
	check("read #1, #3: B", B, map[int64]zodb.Tid{3: tf.at0})
	check("read #1, #3: C", C, map[int64]zodb.Tid{3: tf.at0})
	tf.read(5) // past EOF: nothing loaded
	evict(t, tf.path(), 0, bs)
	tf.read(0) // loaded again: already pinned
	check("read #0 again: A", A, none)
	check("read #0 again: C", C, none)
	waitStats(t, tf.srv, map[string]int64{"WatchLink": 3, "Watch": 3, "PinnedBlk": 3 + 3 + 3})

	// a read waits for the acknowledgements
	hold := make(chan struct{})
	A.mu.Lock()
	A.hold = hold
	A.mu.Unlock()
	at5 := tf.commit(1)
	done := make(chan []byte)
	go func() { done <- readBlk(t, tf.path(), 1, bs) }()
	time.Sleep(100 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("read #1 returned before A acknowledged its pin")
	default:
	}
	close(hold)
	if data := <-done; !bytes.Equal(data, tf.db.ReadBlock("f", 1)) {
		t.Errorf("read #1: wrong data")
	}
	A.mu.Lock()
	A.hold = nil
	A.mu.Unlock()
	check("read #1 @at5: A", A, map[int64]zodb.Tid{1: at2})
	check("read #1 @at5: B", B, map[int64]zodb.Tid{1: at2})
	check("read #1 @at5: C", C, map[int64]zodb.Tid{1: at2})
	_ = at4
	_ = at5

	// a stopped watch and a closed link get nothing
	B.mustWatch(f, 0)
	C.close()
	at6 := tf.commit(0)
	tf.read(0)
	check("read #0 @at6: A", A, none) // pinned @at1 already
	check("read #0 @at6: B", B, none)
	waitStats(t, tf.srv, map[string]int64{"WatchLink": 2, "Watch": 1, "PinnedBlk": 4})

	// advancing A unpins what did not change after its new at, pins what did
	if got, want := A.mustWatch(f, at5), pinsOf(f, map[int64]zodb.Tid{0: at4, 1: wproto.TidHead, 2: wproto.TidHead, 3: wproto.TidHead}); got != want {
		t.Errorf("A: watch @at5: pins\n  got  %s\n  want %s", got, want)
	}
	// a block never read, changed after A's at, is pinned when first read
	at7 := tf.commit(7)
	tf.read(7)
	check("read #7 (never read before): A", A, map[int64]zodb.Tid{7: tf.at0})
	if got, want := A.mustWatch(f, at7), pinsOf(f, map[int64]zodb.Tid{0: wproto.TidHead, 7: wproto.TidHead}); got != want {
		t.Errorf("A: watch @at7: pins\n  got  %s\n  want %s", got, want)
	}
	_ = at6
	waitStats(t, tf.srv, map[string]int64{"PinnedBlk": 0})
}

// A block pinned once is not pinned again when it is evicted from the page
// cache and read again (spec 8.3 test_wcfs_no_pin_twice).
func TestWatchNoPinTwice(t *testing.T) {
	t.Parallel()
	const bs = 4 << 10
	tf := newTFile(t, bs)
	at1 := tf.commit(0)
	tf.read(0)
	tl := openLink(t, tf.srv)
	tl.mustWatch(tf.oid, at1)
	tf.commit(0)
	tf.read(0)
	if got, want := tl.takePins(), pinsOf(tf.oid, map[int64]zodb.Tid{0: at1}); got != want {
		t.Fatalf("pins %s, want %s", got, want)
	}
	pins := stats(t, tf.srv)["pin"]
	for i := 0; i < 3; i++ {
		evict(t, tf.path(), 0, bs)
		tf.read(0)
	}
	if got := tl.takePins(); got != "" {
		t.Errorf("pinned again: %s", got)
	}
	if n := stats(t, tf.srv)["pin"]; n != pins {
		t.Errorf("pin counter %d -> %d", pins, n)
	}
}

// One link watching two files (one created after the server started) gets
// the pins of each independently (spec 8.3 test_wcfs_watch_2files).
func TestWatch2Files(t *testing.T) {
	t.Parallel()
	const bs = 4 << 10
	tf := newTFile(t, bs)
	at1 := tf.commit(0, 1)
	goid := tf.db.CreateFile("g", bs, testdb.ZBlk1)
	tf.db.WriteBlock("g", 0, randData(100, bs))
	tf.db.WriteBlock("g", 2, randData(101, bs))
	at2 := tf.db.Commit("create g")
	tf.waitTid(at2)
	gpath := tf.srv.Path("head", "bigfile", goid.String())
	for blk := int64(0); blk < 3; blk++ {
		tf.read(blk)
		readBlk(t, gpath, blk, bs)
	}
	tf.db.WriteBlock("f", 1, randData(102, bs))
	tf.db.WriteBlock("g", 2, randData(103, bs))
	at3 := tf.db.Commit("f#1 g#2")
	tf.waitTid(at3)

	tl := openLink(t, tf.srv)
	if got, want := tl.mustWatch(tf.oid, at2), pinsOf(tf.oid, map[int64]zodb.Tid{1: at1}); got != want {
		t.Errorf("watch f @at2: %s, want %s", got, want)
	}
	if got, want := tl.mustWatch(goid, at2), pinsOf(goid, map[int64]zodb.Tid{2: at2}); got != want {
		t.Errorf("watch g @at2: %s, want %s", got, want)
	}
	tf.db.WriteBlock("f", 0, randData(104, bs))
	tf.db.WriteBlock("g", 0, randData(105, bs))
	at4 := tf.db.Commit("f#0 g#0")
	tf.waitTid(at4)
	tf.read(0)
	readBlk(t, gpath, 0, bs)
	want := pinsText([]wproto.Pin{{Foid: tf.oid, Blk: 0, Rev: at1}, {Foid: goid, Blk: 0, Rev: at2}})
	if got := tl.takePins(); got != want {
		t.Errorf("reads of f#0, g#0: %s, want %s", got, want)
	}
	// moving one file's watch leaves the other's alone
	if got, want := tl.mustWatch(goid, at4), pinsOf(goid, map[int64]zodb.Tid{0: wproto.TidHead, 2: wproto.TidHead}); got != want {
		t.Errorf("watch g @at4: %s, want %s", got, want)
	}
	if got, want := tl.view(tf.oid), pinsOf(tf.oid, map[int64]zodb.Tid{0: at1, 1: at1}); got != want {
		t.Errorf("f view: %s, want %s", got, want)
	}
	waitStats(t, tf.srv, map[string]int64{"Watch": 2, "PinnedBlk": 2})
}
