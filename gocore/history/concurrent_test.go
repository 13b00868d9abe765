// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package history

import (
	"context"
	"errors"
	"math/rand"
	"sync"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// TestConcurrent runs readers that track blocks and query the history while
// commits are applied, the way the server does it (Update and ForgetPast
// under its head lock held exclusively, Track and head-relative queries
// under it shared, queries about fixed revisions without it), and checks
// every answer with the oracle. Run with -race.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path, foidv := randomDB(t, 5, 30, false)
	stor, cv, o := openOracle(ctx, t, path, foidv)

	h := New(stor, cv[1].rev) // cv[0] creates the database, cv[1] the files
	var headMu sync.RWMutex
	for _, foid := range foidv {
		if _, err := h.Follow(ctx, foid); err != nil {
			t.Fatal(err)
		}
	}
	const keep = 8
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			for {
				select {
				case <-done:
					return
				default:
				}
				foid := foidv[rng.Intn(len(foidv))]
				blk := rng.Int63n(o.nblk[foid])

				headMu.RLock()
				head := o.idx[h.Head()]
				tail := max(1, head-keep)
				v := o.at(foid, head).blocks[blk]
				err := h.Track(foid, blk, v.zblk, o.revs[head])
				if err == nil {
					at := tail + rng.Intn(head-tail+1)
					var rev zodb.Tid
					rev, err = h.BlkRevAt(foid, blk, o.revs[at])
					if want := o.revs[o.blkRevAt(foid, blk, at, tail)]; err == nil && rev != want {
						t.Errorf("f%s #%d: BlkRevAt @%d = @%s; want @%s", foid, blk, at, rev, want)
					}
				}
				if err == nil {
					lo := tail + rng.Intn(head-tail+1)
					var changed []BlkRev
					changed, err = h.ChangedBlocks(foid, o.revs[lo], o.revs[head])
					for _, br := range changed {
						if o.lastChange(foid, br.Blk, head) <= lo || br.Rev != o.revs[o.blkRevAt(foid, br.Blk, lo, tail)] {
							t.Errorf("f%s: ChangedBlocks (%d, %d]: %v", foid, lo, head, br)
						}
					}
				}
				headMu.RUnlock()
				if err != nil {
					t.Errorf("reader: %s", err)
					return
				}

				// the answer about the past does not depend on head
				rev, err := h.BlkRevAt(foid, blk, o.revs[head])
				if err != nil {
					if errors.Is(err, ErrOutOfWindow) {
						continue // forgotten meanwhile
					}
					t.Errorf("reader: %s", err)
					return
				}
				if want := o.revs[o.blkRevAt(foid, blk, head, tail)]; rev != want && rev != h.Tail() {
					t.Errorf("f%s #%d: BlkRevAt @%d = @%s; want @%s", foid, blk, head, rev, want)
				}
			}
		}(int64(r))
	}
	for i := 2; i < len(cv); i++ {
		headMu.Lock()
		_, err := h.Update(ctx, &zodb.EventCommit{Tid: cv[i].rev, Changev: cv[i].oids})
		if err == nil && i-keep > 1 {
			h.ForgetPast(cv[i-keep].rev)
		}
		headMu.Unlock()
		if err != nil {
			t.Error(err)
			break
		}
	}
	close(done)
	wg.Wait()
}
