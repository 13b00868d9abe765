// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// ZBlk1 block assembly (spec 4.2): the chunk table (IOBTree offset -> ZData)
// and the chunks are loaded directly from the storage, in parallel, and every
// chunk is copied once, straight into the destination.

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	pickle "github.com/kisielk/og-rek"

	"lab.nexedi.com/kirr/neo/go/zodb"
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

// loadZBlk1 assembles the block of a ZBlk1 whose decoded state is x.
func loadZBlk1(ctx context.Context, stor zodb.Loader, at zodb.Tid, x any, dst []byte) error {
	root, ok := x.(zref)
	if !ok {
		return malformedf("state: expected a reference to a BTrees.IOBTree.IOBTree; got %s", pyTypeName(x))
	}
	if root.Class != "" && root.Class != classIOBTree {
		return malformedf("state: expected a reference to a BTrees.IOBTree.IOBTree; got %s", root)
	}

	chunks, err := loadChunkTab(ctx, stor, at, root.Oid)
	if err != nil {
		return err
	}
	return assembleChunks(ctx, chunks, dst, func(ctx context.Context, oid zodb.Oid, use func(data []byte) error) error {
		return loadZData(ctx, stor, at, oid, use)
	})
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

	class, x, err := decodeRecord(buf.Data)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case class == classIOBTree:
		return decodeIOTree(x)
	case class == classIOBucket && !root:
		entries, err := decodeIOBucket(x)
		return nil, entries, err
	}
	want := classIOBTree
	if !root {
		want += " or " + classIOBucket
	}
	return nil, nil, malformedf("class %s, expected %s", class, want)
}

// decodeIOTree decodes the state of an IOBTree (BTrees' __getstate__):
//
//	None                                   empty tree
//	((bucket_state,),)                     one bucket stored inline
//	((child0, k1, child1, ..., kN, childN), firstbucket)
func decodeIOTree(x any) (children []zodb.Oid, entries []chunk, err error) {
	if _, ok := x.(pickle.None); ok {
		return nil, nil, nil
	}
	t, ok := x.(pickle.Tuple)
	if !ok || !(len(t) == 1 || len(t) == 2) {
		return nil, nil, malformedf("IOBTree state: expected None or tuple[1..2]; got %s", pyTypeName(x))
	}
	if len(t) == 1 {
		t1, ok := t[0].(pickle.Tuple)
		if !ok || len(t1) != 1 {
			return nil, nil, malformedf("IOBTree state: inline bucket: expected tuple[1]; got %s", pyTypeName(t[0]))
		}
		entries, err := decodeIOBucket(t1[0])
		return nil, entries, err
	}
	kids, ok := t[0].(pickle.Tuple)
	if !ok || len(kids)%2 != 1 {
		return nil, nil, malformedf("IOBTree state: expected (child0, key1, child1, ...); got %s", pyTypeName(t[0]))
	}
	for i := 0; i < len(kids); i += 2 {
		ref, ok := kids[i].(zref)
		if !ok {
			return nil, nil, malformedf("IOBTree state: child %d is %s, not a persistent reference", i/2, pyTypeName(kids[i]))
		}
		if i > 0 {
			if _, err := pickle.AsInt64(kids[i-1]); err != nil {
				return nil, nil, malformedf("IOBTree state: key %d is %s, not int", i/2, pyTypeName(kids[i-1]))
			}
		}
		children = append(children, ref.Oid)
	}
	return children, nil, nil
}

// decodeIOBucket decodes the state of an IOBucket: ((k0, v0, k1, v1, ...),
// [next]) where values are references to ZData.
func decodeIOBucket(x any) ([]chunk, error) {
	t, ok := x.(pickle.Tuple)
	if !ok || !(len(t) == 1 || len(t) == 2) {
		return nil, malformedf("IOBucket state: expected tuple[1..2]; got %s", pyTypeName(x))
	}
	kv, ok := t[0].(pickle.Tuple)
	if !ok || len(kv)%2 != 0 {
		return nil, malformedf("IOBucket state: expected (k0, v0, k1, v1, ...); got %s", pyTypeName(t[0]))
	}
	entries := make([]chunk, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		off, err := pickle.AsInt64(kv[i])
		if err != nil {
			return nil, malformedf("IOBucket state: key %d is %s, not int", i/2, pyTypeName(kv[i]))
		}
		if off < 0 || off > math.MaxInt32 {
			return nil, malformedf("chunk offset %d out of range [0, 2³¹)", off)
		}
		ref, ok := kv[i+1].(zref)
		if !ok {
			return nil, malformedf("chunk @%d is %s, not a reference to ZData", off, pyTypeName(kv[i+1]))
		}
		if ref.Class != "" && ref.Class != ClassZData {
			return nil, malformedf("chunk @%d is %s, not ZData", off, ref)
		}
		entries = append(entries, chunk{Off: off, Oid: ref.Oid})
	}
	return entries, nil
}

// loadZData loads ZData oid as of at and calls use with its data (valid only
// during the call).
func loadZData(ctx context.Context, stor zodb.Loader, at zodb.Tid, oid zodb.Oid, use func(data []byte) error) (err error) {
	buf, _, err := stor.Load(ctx, zodb.Xid{Oid: oid, At: at})
	if err != nil {
		if isMissing(err) {
			return fmt.Errorf("ZData %s: oid missing: %w", oid, err)
		}
		return fmt.Errorf("ZData %s: %w", oid, err)
	}
	defer buf.Release()
	data, err := decodeZData(buf.Data)
	if err != nil {
		return fmt.Errorf("ZData %s: %w", oid, err)
	}
	return use(data)
}

// decodeZData decodes a raw ZData record; the result aliases rec.
func decodeZData(rec []byte) ([]byte, error) {
	class, data, err := decodeBytesRecord(rec)
	if err != nil {
		return nil, err
	}
	if class != ClassZData {
		return nil, malformedf("class %s, expected %s", class, ClassZData)
	}
	return data, nil
}

// assembleChunks writes the block made of chunks (sorted by offset) into
// dst: each chunk is fetched by load (in parallel) and copied to its offset;
// the gaps and the tail are zeroed.
//
// Chunks must not overlap: chunk i must end at or before chunk i+1 starts,
// and the data must fit into dst (blksize): violations are ErrMalformed.
func assembleChunks(ctx context.Context, chunks []chunk, dst []byte, load func(ctx context.Context, oid zodb.Oid, use func(data []byte) error) error) error {
	blksize := int64(len(dst))
	if n := len(chunks); n > 0 && chunks[n-1].Off > blksize {
		return malformedf("chunk @%d starts beyond blksize %d", chunks[n-1].Off, blksize)
	}
	ends := make([]int64, len(chunks))
	err := parallel(ctx, len(chunks), func(ctx context.Context, i int) error {
		c := chunks[i]
		return load(ctx, c.Oid, func(data []byte) error {
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
