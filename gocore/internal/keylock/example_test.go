// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package keylock_test

import (
	"context"
	"fmt"
	"time"

	"wendelin.dev/wcfs/gocore/internal/keylock"
)

// One slow path per key at a time; a caller that may not wait longer gives
// up with its context's error.
func ExampleMap() {
	var joins keylock.Map[string]
	unlock, err := joins.Lock(context.Background(), "/dev/shm/wcfs/1")
	fmt.Println(err, joins.Len())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err = joins.Lock(ctx, "/dev/shm/wcfs/1") // held: waits, gives up
	fmt.Println(err)

	other, _ := joins.Lock(context.Background(), "/dev/shm/wcfs/2") // another key: free
	other()
	unlock()
	fmt.Println(joins.Len()) // nobody holds or waits: nothing kept
	// Output:
	// <nil> 1
	// context deadline exceeded
	// 0
}
