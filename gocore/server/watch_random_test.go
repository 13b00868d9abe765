// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"math/rand"
	"sync"
	"testing"
	"time"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// Random interleavings of commits, reads, evictions and watch moves on
// several links, checked against a model of the pins each client must have
// received. Between commits, reads and watch requests run concurrently: the
// resulting pins do not depend on their order.
//
// Model: T is the set of blocks read through head/ (inside the file).
// A watch moved to at (head H) has exactly the pins of the tracked blocks
// changed after at, each to its revision as of at; a read of block b adds
// that pin to every watch whose at is before b's last change.
func TestWatchRandom(t *testing.T) {
	t.Parallel()
	const bs = 4 << 10
	const nblk = 10
	const nlink = 3
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewSource(seed))

	tf := newTFile(t, bs)
	stat(t, tf.path()) // looked up: watches may start
	revs := []zodb.Tid{tf.at0}
	tracked := map[int64]bool{}
	size := int64(0) // blocks in the file
	links := make([]*tLink, nlink)
	ats := make([]zodb.Tid, nlink)             // 0: no watch
	model := make([]map[int64]zodb.Tid, nlink) // expected pins
	for i := range links {
		links[i] = openLink(t, tf.srv)
		model[i] = map[int64]zodb.Tid{}
	}

	for round := 0; round < 15; round++ {
		var blks []int64
		for k := 1 + rng.Intn(3); k > 0; k-- {
			blks = append(blks, rng.Int63n(nblk))
		}
		head := tf.commit(blks...)
		revs = append(revs, head)
		for _, b := range blks {
			size = max(size, b+1)
		}

		// concurrently: reads, evictions, watch moves (one goroutine per link)
		var reads []int64
		for k := rng.Intn(6); k > 0; k-- {
			reads = append(reads, rng.Int63n(nblk))
		}
		newAt := make([]zodb.Tid, nlink)
		copy(newAt, ats)
		var ops [nlink][]zodb.Tid // watch requests per link (0: "-")
		for i := range links {
			switch r := rng.Intn(10); {
			case ats[i] == 0 && r < 6: // start anywhere in the history
				ops[i] = append(ops[i], revs[rng.Intn(len(revs))])
			case ats[i] != 0 && r < 1: // stop
				ops[i] = append(ops[i], 0)
			case ats[i] != 0 && r < 6: // move forward, maybe twice
				at := ats[i]
				for k := 1 + rng.Intn(2); k > 0; k-- {
					at = laterRev(rng, revs, at)
					ops[i] = append(ops[i], at)
				}
			}
			if n := len(ops[i]); n > 0 {
				newAt[i] = ops[i][n-1]
			}
		}
		var wg sync.WaitGroup
		for _, b := range reads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if rng2 := b%3 == 0; rng2 {
					evict(t, tf.path(), b, bs)
				}
				tf.read(b)
			}()
		}
		for i := range links {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, at := range ops[i] {
					if err := links[i].watch(tf.oid, at); err != nil {
						t.Errorf("link %d: watch @%s: %v", i, at, err)
					}
					if at == 0 {
						links[i].mu.Lock()
						delete(links[i].pinned, tf.oid) // the client forgets its pins
						links[i].mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}

		// the model
		for _, b := range reads {
			if b < size {
				tracked[b] = true
			}
		}
		for i := range links {
			switch {
			case newAt[i] == 0:
				model[i] = map[int64]zodb.Tid{}
			case len(ops[i]) > 0: // moved: as a fresh watch, reads included
				model[i] = tf.wantPins(tracked, newAt[i])
			default: // reads pin what changed after at
				for _, b := range reads {
					if b < size && tf.revAt(b, head) > ats[i] && ats[i] != 0 {
						model[i][b] = tf.revAt(b, ats[i])
					}
				}
			}
		}
		copy(ats, newAt)
		npinned := int64(0)
		for i, tl := range links {
			tl.takePins()
			if got, want := tl.view(tf.oid), pinsOf(tf.oid, model[i]); got != want {
				t.Fatalf("round %d: link %d @%s (ops %v, reads %v): pins\n  got  %s\n  want %s", round, i, ats[i], ops[i], reads, got, want)
			}
			npinned += int64(len(model[i]))
		}
		waitStats(t, tf.srv, map[string]int64{"PinnedBlk": npinned})
	}
	t.Logf("%d pins", stats(t, tf.srv)["pin"])
}

// laterRev returns a revision of revs ≥ at, at random.
func laterRev(rng *rand.Rand, revs []zodb.Tid, at zodb.Tid) zodb.Tid {
	var later []zodb.Tid
	for _, r := range revs {
		if r >= at {
			later = append(later, r)
		}
	}
	return later[rng.Intn(len(later))]
}
