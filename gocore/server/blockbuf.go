// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"

	"wendelin.dev/wcfs/gocore/zdata"
)

// blockBuf holds the data of one block. It is shared by the load table
// entry, the reads it is returned to (until go-fuse has written their
// reply), the upload into the page cache and a commit keeping the old data,
// and its memory is recycled once all of them let go: fresh 2 MiB buffers
// cost page faults and garbage collections that cut the load throughput by
// 3-4x. A loaded block's data comes from zdata.LoadBlkShared: for a full
// ZBlk0 block it is the storage's own read buffer (no copy), given back to
// neo/go's pool at the end.
//
// Every holder owns one reference: take it with ref while the buffer is
// known to be alive (another reference is held, e.g. the load table's under
// bigFile.loadMu), release it with unref exactly once.
type blockBuf struct {
	data   []byte        // the block; set before the load is published
	shared zdata.BlkData // data's memory when it comes from zdata
	own    *[]byte       // data's memory when it is ours (pooled)
	refs   atomic.Int32
}

// newBlockBuf returns a buffer without data yet, with one reference.
func newBlockBuf() *blockBuf {
	b := &blockBuf{}
	b.refs.Store(1)
	return b
}

// memPools: blksize -> *sync.Pool of *[]byte
var memPools sync.Map

// newMemBuf returns a buffer with size bytes of memory of ours (content
// unspecified), with one reference.
func newMemBuf(size int64) *blockBuf {
	p, _ := memPools.Load(size)
	if p == nil {
		p, _ = memPools.LoadOrStore(size, &sync.Pool{})
	}
	mem, _ := p.(*sync.Pool).Get().(*[]byte)
	if mem == nil {
		m := make([]byte, size)
		mem = &m
	}
	b := newBlockBuf()
	b.own, b.data = mem, *mem
	return b
}

func (b *blockBuf) ref() { b.refs.Add(1) }

func (b *blockBuf) unref() {
	switch n := b.refs.Add(-1); {
	case n == 0:
		b.data = nil
		b.shared.Release()
		if b.own != nil {
			p, _ := memPools.Load(int64(len(*b.own)))
			p.(*sync.Pool).Put(b.own)
			b.own = nil
		}
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
