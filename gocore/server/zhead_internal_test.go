// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"context"
	"fmt"
	"syscall"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// A .wcfs/debug/zhead reader that does not read cannot block the server:
// once its queue is full it is detached; it reads what was queued, then EOF.
func TestZheadBounded(t *testing.T) {
	z := &zheadFile{srv: &Server{stats: &Stats{}}}
	ctx := context.Background()
	slow, _, e := z.Open(ctx, syscall.O_RDONLY)
	if e != 0 {
		t.Fatal(e)
	}
	for tid := zodb.Tid(1); tid <= zheadQueueLen+10; tid++ {
		z.publish(tid) // must not block
	}
	if len(z.links) != 0 {
		t.Fatalf("the reader that does not keep up was not detached")
	}
	buf := make([]byte, 100)
	for tid := zodb.Tid(1); tid <= zheadQueueLen; tid++ {
		res, e := z.Read(ctx, slow, buf, 0)
		if e != 0 {
			t.Fatal(e)
		}
		got, _ := res.Bytes(nil)
		if want := fmt.Sprintf("%s\n", tid); string(got) != want {
			t.Fatalf("line %d: %q, want %q", tid, got, want)
		}
	}
	res, e := z.Read(ctx, slow, buf, 0)
	if got, _ := res.Bytes(nil); e != 0 || len(got) != 0 {
		t.Fatalf("after the queued lines: %q, %v; want EOF", got, e)
	}

	// a reader opened later gets what is published after its open
	fresh, _, _ := z.Open(ctx, syscall.O_RDONLY)
	z.publish(100000)
	res, _ = z.Read(ctx, fresh, buf, 0)
	if got, _ := res.Bytes(nil); string(got) != zodb.Tid(100000).String()+"\n" {
		t.Fatalf("new reader: %q", got)
	}
	z.Release(ctx, fresh)
	z.Release(ctx, slow)
	if n := z.srv.stats.zheadLink.Load(); n != 0 {
		t.Fatalf("ZHeadLink = %d after releases", n)
	}
}
