// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// blockBuf holds the data of one loaded block. It is shared by the load
// table entry, the reads it is returned to (until go-fuse has written their
// reply), the upload into the page cache and a commit keeping the old data,
// and recycled once all of them let go: fresh 2 MiB buffers cost page faults
// and garbage collections that cut the load throughput by 3-4x.
//
// Every holder owns one reference: take it with ref while the buffer is
// known to be alive (another reference is held, e.g. the load table's under
// bigFile.loadMu), release it with unref exactly once.
type blockBuf struct {
	data []byte
	refs atomic.Int32
}

var blockPools sync.Map // blksize -> *sync.Pool of *blockBuf

// newBlockBuf returns a buffer of size bytes with one reference. Its
// content is unspecified.
func newBlockBuf(size int64) *blockBuf {
	p, _ := blockPools.Load(size)
	if p == nil {
		p, _ = blockPools.LoadOrStore(size, &sync.Pool{})
	}
	b, _ := p.(*sync.Pool).Get().(*blockBuf)
	if b == nil {
		b = &blockBuf{data: make([]byte, size)}
	}
	b.refs.Store(1)
	return b
}

func (b *blockBuf) ref() { b.refs.Add(1) }

func (b *blockBuf) unref() {
	switch n := b.refs.Add(-1); {
	case n == 0:
		p, _ := blockPools.Load(int64(len(b.data)))
		p.(*sync.Pool).Put(b)
	case n < 0:
		panic("blockBuf: unref of a released buffer")
	}
}

// blockResult is a FUSE read reply made of part of a block buffer: go-fuse
// writes it with writev straight from the buffer (no copy) and then calls
// Done, which releases the reply's reference.
type blockResult struct {
	buf  *blockBuf
	data []byte
	done atomic.Bool
}

var _ fuse.ReadResult = (*blockResult)(nil)

func (r *blockResult) Size() int { return len(r.data) }

func (r *blockResult) Bytes(buf []byte) ([]byte, fuse.Status) { return r.data, fuse.OK }

// Slices makes go-fuse write the reply with writev and call Done after it.
func (r *blockResult) Slices() ([][]byte, fuse.Status) { return [][]byte{r.data}, fuse.OK }

func (r *blockResult) Done() {
	if r.done.CompareAndSwap(false, true) {
		r.buf.unref()
	}
}
