// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package history

import (
	"context"
	"errors"
	"sync"
	"testing"

	"lab.nexedi.com/kirr/go123/mem"
	"lab.nexedi.com/kirr/neo/go/zodb"
)

// failingStorage fails every load of the oids in fail (a record that cannot
// be read), until healed.
type failingStorage struct {
	zodb.IStorage
	mu   sync.Mutex
	fail map[zodb.Oid]bool
}

var errInjected = errors.New("injected: record unreadable")

func (s *failingStorage) Load(ctx context.Context, xid zodb.Xid) (*mem.Buf, zodb.Tid, error) {
	s.mu.Lock()
	fail := s.fail[xid.Oid]
	s.mu.Unlock()
	if fail {
		return nil, 0, &zodb.OpError{URL: s.URL(), Op: "load", Args: xid, Err: errInjected}
	}
	return s.IStorage.Load(ctx, xid)
}

func (s *failingStorage) setFail(oids []zodb.Oid) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = make(map[zodb.Oid]bool)
	for _, oid := range oids {
		s.fail[oid] = true
	}
}

// After Update fails on a commit, Recover applies it: the files it may
// have changed get an epoch there and are followed anew (or later, when
// their records can be read again), the others keep their history, and the
// history goes on with the next commits. Checked against a History that
// applied every commit normally, for every commit of small.fs.
func TestRecover(t *testing.T) {
	ctx := context.Background()
	stor, foidv := smallFixture(ctx, t)
	cv := readCommits(ctx, t, stor)
	o := newOracle(ctx, t, stor, cv, foidv)

	recovered, notFollowed := 0, 0
	for i := 2; i < len(cv); i++ {
		for _, heal := range []bool{true, false} { // before Recover, or only after it
			fs := &failingStorage{IStorage: stor}
			h, ref := New(fs, cv[1].rev), New(stor, cv[1].rev)
			for _, hh := range []*History{h, ref} {
				for _, foid := range foidv {
					if !o.at(foid, 1).exists {
						continue
					}
					if _, err := hh.Follow(ctx, foid); err != nil {
						t.Fatal(err)
					}
					for blk := int64(0); blk < o.nblk[foid]; blk++ {
						if err := hh.Track(foid, blk, o.at(foid, 1).blocks[blk].zblk, cv[1].rev); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			for j := 2; j < i; j++ {
				for _, hh := range []*History{h, ref} {
					if _, err := hh.Update(ctx, &zodb.EventCommit{Tid: cv[j].rev, Changev: cv[j].oids}); err != nil {
						t.Fatal(err)
					}
				}
			}

			// commit i: its records cannot be read
			δZ := &zodb.EventCommit{Tid: cv[i].rev, Changev: cv[i].oids}
			refδ, err := ref.Update(ctx, δZ)
			if err != nil {
				t.Fatal(err)
			}
			fs.setFail(cv[i].oids)
			if _, err := h.Update(ctx, δZ); err == nil {
				continue // no record of the commit needed (e.g. ZBlks changed in place)
			}
			recovered++
			if heal {
				fs.setFail(nil)
			}
			δ, err := h.Recover(ctx, δZ)
			if err != nil {
				t.Fatalf("commit %d: recover: %v", i, err)
			}
			fs.setFail(nil)
			if !δ.Recovered || δ.Rev != δZ.Tid || h.Head() != δZ.Tid {
				t.Fatalf("commit %d: recover: %+v, head @%s", i, δ, h.Head())
			}
			// every file the commit changed is reported, as an epoch
			for foid, rd := range refδ.Files {
				if d := δ.Files[foid]; d == nil || !d.Epoch || d.Gone != rd.Gone {
					t.Errorf("commit %d: f%s: recovered delta %+v; reference %+v", i, foid, d, rd)
				}
			}
			for foid, d := range δ.Files {
				if d.Gone {
					continue
				}
				if heal && d.NotFollowed != nil {
					t.Errorf("commit %d: f%s: follow anew with its records readable: %v", i, foid, d.NotFollowed)
				}
				notFollowed += btoi(d.NotFollowed != nil)
				if d.NotFollowed != nil {
					if !errors.Is(d.NotFollowed, errInjected) {
						t.Errorf("commit %d: f%s: NotFollowed = %v", i, foid, d.NotFollowed)
					}
					if _, err := h.Info(foid); !errors.Is(err, ErrNotFollowed) {
						t.Errorf("commit %d: f%s: info of a file not followed anew: %v", i, foid, err)
					}
					if _, err := h.Follow(ctx, foid); err != nil { // its records are readable again
						t.Fatalf("commit %d: f%s: follow after recovery: %v", i, foid, err)
					}
				}
				// its history is known since the window's tail if the
				// window could be replayed, else since the commit
				epochAtRecovery := d.NotFollowed != nil
				want := must(ref.Info(foid))
				if epochAtRecovery {
					want.Epoch = δZ.Tid
				}
				if fi, err := h.Info(foid); err != nil || fi != want {
					t.Errorf("commit %d: f%s: info after recovery %+v (%v); want %+v", i, foid, fi, err, want)
				}
				var ee *EpochError
				if _, err := h.BlkRevAt(foid, 0, cv[i-1].rev); epochAtRecovery && (!errors.As(err, &ee) || ee.Rev != δZ.Tid) {
					t.Errorf("commit %d: f%s: BlkRevAt before the recovered commit: %v; want an epoch @%s", i, foid, err, δZ.Tid)
				}
				if _, err := h.BlkRevAt(foid, 0, δZ.Tid); !errors.Is(err, ErrNotTracked) {
					t.Errorf("commit %d: f%s: BlkRevAt of a block not tracked since recovery: %v", i, foid, err)
				}
				for blk := int64(0); blk < o.nblk[foid]; blk++ {
					if err := h.Track(foid, blk, o.at(foid, i).blocks[blk].zblk, δZ.Tid); err != nil {
						t.Fatal(err)
					}
					for j := 1; j <= i; j++ {
						if epochAtRecovery && j < i {
							continue
						}
						got, err := h.BlkRevAt(foid, blk, cv[j].rev)
						ref, rerr := ref.BlkRevAt(foid, blk, cv[j].rev)
						if epochAtRecovery && j == i {
							ref = δZ.Tid // the file's tail
						}
						if err != nil || rerr != nil || got != ref {
							t.Errorf("commit %d: f%s #%d @%d: BlkRevAt after recovery %s (%v); want %s (%v)", i, foid, blk, j, got, err, ref, rerr)
						}
					}
				}
			}
			// the other files keep their history
			for _, foid := range foidv {
				if δ.Files[foid] != nil || !o.at(foid, i).exists || !o.at(foid, 1).exists {
					continue
				}
				for blk := int64(0); blk < o.nblk[foid]; blk++ {
					for j := 1; j <= i; j++ {
						got, err := h.BlkRevAt(foid, blk, cv[j].rev)
						want, werr := ref.BlkRevAt(foid, blk, cv[j].rev)
						if got != want || (err == nil) != (werr == nil) {
							t.Fatalf("commit %d: f%s #%d @%d: BlkRevAt %s (%v); reference %s (%v)", i, foid, blk, j, got, err, want, werr)
						}
					}
				}
			}

			// and the history goes on
			for j := i + 1; j < len(cv); j++ {
				d, err := h.Update(ctx, &zodb.EventCommit{Tid: cv[j].rev, Changev: cv[j].oids})
				if err != nil {
					t.Fatalf("commit %d after recovering %d: %v", j, i, err)
				}
				rd, _ := ref.Update(ctx, &zodb.EventCommit{Tid: cv[j].rev, Changev: cv[j].oids})
				for foid, fd := range d.Files {
					if r := rd.Files[foid]; r == nil || r.Epoch != fd.Epoch || r.Gone != fd.Gone || r.SizeChanged != fd.SizeChanged {
						t.Errorf("commit %d after recovering %d: f%s: delta %+v; reference %+v", j, i, foid, fd, r)
					}
				}
			}
		}
	}
	if recovered < 4 || notFollowed == 0 {
		t.Errorf("Update failed and Recover ran for %d commits only, %d follows failed anew", recovered, notFollowed)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
