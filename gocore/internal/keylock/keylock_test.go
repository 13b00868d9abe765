// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package keylock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
)

// One holder per key at a time; every key is gone once nobody holds or
// waits for it.
func TestExclusionByKey(t *testing.T) {
	var m Map[int]
	const keys, workers, rounds = 4, 16, 200
	var inside [keys]atomic.Int32
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				k := (w + r) % keys
				unlock, err := m.Lock(context.Background(), k)
				if err != nil {
					t.Error(err)
					return
				}
				if n := inside[k].Add(1); n != 1 {
					t.Errorf("key %d: %d holders", k, n)
				}
				inside[k].Add(-1)
				unlock()
			}
		}()
	}
	wg.Wait()
	if n := m.Len(); n != 0 {
		t.Errorf("%d keys left after every unlock", n)
	}
}

// A waiter whose context is done gives up with the context's error and
// leaves nothing behind; the holder keeps the lock, the next waiter gets it
// at its unlock.
func TestLockCanceled(t *testing.T) {
	var m Map[string]
	unlock, err := m.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := m.Lock(ctx, "a")
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled wait: %v", err)
	}
	if n := m.Len(); n != 1 {
		t.Fatalf("%d keys while a is held, want 1", n)
	}
	got := make(chan func())
	go func() {
		u, err := m.Lock(context.Background(), "a")
		if err != nil {
			t.Error(err)
		}
		got <- u
	}()
	unlock()
	if u := <-got; u != nil {
		u()
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}
