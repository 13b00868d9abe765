// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// ZBlk1 block assembly (spec 4.2): the chunk table (IOBTree offset -> ZData)
// and the chunks are loaded directly from the storage, in parallel, and every
// chunk is copied once, straight into the destination.

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"lab.nexedi.com/kirr/go123/mem"
	"lab.nexedi.com/kirr/neo/go/zodb"

	"wendelin.dev/wcfs/gocore/internal/zpickle"
)

// chunk is one entry of a ZBlk1 chunk table.
type chunk struct {
	Off int64    // byte offset in the block
	Oid zodb.Oid // ZData object
}

// maxChunkTabDepth bounds the chunk table walk (int32 keys: a real IOBTree is
// at most a few levels deep; damaged data with a cycle stops here).
const maxChunkTabDepth = 32

// loadParallel is how many records of one block are loaded at once.
var loadParallel = max(16, 4*runtime.GOMAXPROCS(0))

// loadZBlk1 assembles the block of a ZBlk1 whose state is root.
func loadZBlk1(ctx context.Context, stor zodb.Loader, at zodb.Tid, root zpickle.Ref, dst []byte) error {
	if root.Class != "" && root.Class != zpickle.ClassIOBTree {
		return malformedf("state: expected a reference to a BTrees.IOBTree.IOBTree; got %s", root)
	}

	chunks, err := loadChunkTab(ctx, stor, at, root.Oid)
	if err != nil {
		return err
	}
	return assembleChunks(ctx, stor, at, chunks, dst)
}

// loadChunkTab loads the IOBTree rooted at oid, level by level with the
// nodes of a level loaded in parallel, and returns its entries sorted by
// offset. Offsets must be unique, ≥ 0 and int32.
func loadChunkTab(ctx context.Context, stor zodb.Loader, at zodb.Tid, oid zodb.Oid) ([]chunk, error) {
	var (
		mu     sync.Mutex
		chunks []chunk
	)
	level := []zodb.Oid{oid}
	for depth := 0; len(level) > 0; depth++ {
		if depth >= maxChunkTabDepth {
			return nil, malformedf("chunk table %s deeper than %d levels (cycle?)", oid, maxChunkTabDepth)
		}
		var next []zodb.Oid
		err := parallel(ctx, len(level), func(ctx context.Context, i int) error {
			children, entries, err := loadIONode(ctx, stor, at, level[i], depth == 0)
			if err != nil {
				return err
			}
			mu.Lock()
			next = append(next, children...)
			chunks = append(chunks, entries...)
			mu.Unlock()
			return nil
		})
		if err != nil {
			return nil, err
		}
		level = next
	}

	slices.SortFunc(chunks, func(a, b chunk) int {
		switch {
		case a.Off < b.Off:
			return -1
		case a.Off > b.Off:
			return +1
		}
		return 0
	})
	for i := 1; i < len(chunks); i++ {
		if chunks[i].Off == chunks[i-1].Off {
			return nil, malformedf("chunk table %s: offset %d appears twice", oid, chunks[i].Off)
		}
	}
	return chunks, nil
}

// loadIONode loads one IOBTree or IOBucket node of a chunk table and returns
// its child nodes (tree) or its entries (bucket, or tree with an embedded
// bucket). The root must be an IOBTree.
func loadIONode(ctx context.Context, stor zodb.Loader, at zodb.Tid, oid zodb.Oid, root bool) (children []zodb.Oid, entries []chunk, err error) {
	buf, _, err := stor.Load(ctx, zodb.Xid{Oid: oid, At: at})
	if err != nil {
		if isMissing(err) {
			return nil, nil, fmt.Errorf("chunk table node %s: oid missing: %w", oid, err)
		}
		return nil, nil, fmt.Errorf("chunk table node %s: %w", oid, err)
	}
	defer buf.Release()
	defer func() {
		if err != nil {
			err = fmt.Errorf("chunk table node %s: %w", oid, err)
		}
	}()

	n, err := zpickle.DecodeNode(buf.Data, zpickle.IO)
	if err != nil {
		return nil, nil, malformed(err)
	}
	switch {
	case n.Kind == zpickle.Bucket && root:
		return nil, nil, malformedf("class %s, expected %s", zpickle.ClassIOBucket, zpickle.ClassIOBTree)
	case n.Kind == zpickle.Tree && !n.Inline:
		return n.Kids, nil, nil
	}

	entries = make([]chunk, len(n.Entries))
	for i, e := range n.Entries {
		if e.Key < 0 {
			return nil, nil, malformedf("chunk offset %d out of range [0, 2³¹)", e.Key)
		}
		entries[i] = chunk{Off: e.Key, Oid: e.Value}
	}
	return nil, entries, nil
}

// loadZData loads ZData oid as of at and returns its data, which aliases buf
// (release it after use).
func loadZData(ctx context.Context, stor zodb.Loader, at zodb.Tid, oid zodb.Oid) (data []byte, buf *mem.Buf, err error) {
	buf, _, err = stor.Load(ctx, zodb.Xid{Oid: oid, At: at})
	if err != nil {
		if isMissing(err) {
			return nil, nil, fmt.Errorf("ZData %s: oid missing: %w", oid, err)
		}
		return nil, nil, fmt.Errorf("ZData %s: %w", oid, err)
	}
	data, err = decodeZData(buf.Data)
	if err != nil {
		buf.Release()
		return nil, nil, fmt.Errorf("ZData %s: %w", oid, err)
	}
	return data, buf, nil
}

// decodeZData decodes a raw ZData record; the result aliases rec.
func decodeZData(rec []byte) ([]byte, error) {
	class, data, err := zpickle.DecodeBytes(rec)
	if class != "" && class != ClassZData {
		return nil, malformedf("class %s, expected %s", class, ClassZData)
	}
	if err != nil {
		return nil, malformed(err)
	}
	return data, nil
}

// assembleChunks writes the block made of chunks (sorted by offset) into
// dst: each chunk is loaded (in parallel) and copied to its offset; the gaps
// and the tail are zeroed.
//
// Chunks must not overlap: chunk i must end at or before chunk i+1 starts,
// and the data must fit into dst (blksize): violations are ErrMalformed.
func assembleChunks(ctx context.Context, stor zodb.Loader, at zodb.Tid, chunks []chunk, dst []byte) error {
	blksize := int64(len(dst))
	if n := len(chunks); n > 0 && chunks[n-1].Off > blksize {
		return malformedf("chunk @%d starts beyond blksize %d", chunks[n-1].Off, blksize)
	}
	ends := make([]int64, len(chunks))
	err := parallel(ctx, len(chunks), func(ctx context.Context, i int) error {
		c := chunks[i]
		data, buf, err := loadZData(ctx, stor, at, c.Oid)
		if err != nil {
			return err
		}
		defer buf.Release()
		end := c.Off + int64(len(data))
		if i+1 < len(chunks) && end > chunks[i+1].Off {
			return malformedf("invalid data: chunk @%d (%d bytes) overlaps chunk @%d", c.Off, len(data), chunks[i+1].Off)
		}
		if end > blksize {
			return malformedf("data longer than blksize %d: chunk @%d is %d bytes", blksize, c.Off, len(data))
		}
		copy(dst[c.Off:end], data)
		ends[i] = end
		return nil
	})
	if err != nil {
		return err
	}

	var prev int64
	for i, c := range chunks {
		clear(dst[prev:c.Off])
		prev = ends[i]
	}
	clear(dst[prev:])
	return nil
}

// parallel runs f(ctx, i) for i in [0, n) on up to loadParallel goroutines.
// The first failure cancels the others; the error returned is the one of the
// smallest i that failed for a reason of its own (not the cancellation), so
// that results do not depend on scheduling.
func parallel(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	if n == 0 {
		return ctx.Err()
	}
	if n == 1 {
		if err := ctx.Err(); err != nil {
			return err
		}
		return f(ctx, 0)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	errv := make([]error, n)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for w := min(n, loadParallel); w > 0; w-- {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					errv[i] = err
					cancel()
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()

	var ctxErr error
	for _, err := range errv {
		if err == nil {
			continue
		}
		if isCtxErr(err) {
			if ctxErr == nil {
				ctxErr = err
			}
			continue
		}
		return err
	}
	if ctxErr != nil {
		return ctxErr
	}
	if done.Load() == int64(n) {
		return nil
	}
	return ctx.Err() // parent canceled before all work was done
}
