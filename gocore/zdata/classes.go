// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package zdata

// Persistent classes of wendelin.bigfile.file_zodb (spec section 4.1).

import (
	"context"
	"fmt"
	"reflect"

	pickle "github.com/kisielk/og-rek"

	"lab.nexedi.com/kirr/neo/go/zodb"
	"lab.nexedi.com/kirr/neo/go/zodb/btree"

	"wendelin.dev/wcfs/gocore/internal/zpickle"
)

// Class paths as written by wendelin.core.
const (
	ClassZBigFile = zpickle.ClassZBigFile
	ClassZBlk0    = zpickle.ClassZBlk0
	ClassZBlk     = zpickle.ClassZBlk // legacy alias of ZBlk0
	ClassZBlk1    = zpickle.ClassZBlk1
	ClassZData    = zpickle.ClassZData
)

// MaxBlkSize is the largest blksize this package accepts. wendelin.core uses
// 2 MiB; a larger value in the database is treated as malformed so that a
// damaged record cannot make a reader allocate arbitrary amounts of memory.
const MaxBlkSize = 1 << 30

// ZBigFile mirrors wendelin.bigfile.file_zodb.ZBigFile: a file made of
// blksize blocks whose data objects (ZBlk0/ZBlk1) are found in blktab.
//
// Its state is (blksize, blktab). BlkSize and BlkTab read that state: f must
// be activated (PActivate) or have its state kept in the live cache
// (CacheControl). LoadBlk, Size and Params activate f themselves.
type ZBigFile struct {
	zodb.Persistent

	blksize int64
	blktab  *btree.LOBTree // LOBTree{} blk -> ZBlk*
}

type zBigFileState ZBigFile // hides state methods from the public API

// BlkSize returns the block size of the file. f must be activated.
func (f *ZBigFile) BlkSize() int64 { return f.blksize }

// BlkTab returns the file's block table (int64 block number -> ZBlk0|ZBlk1).
// f must be activated.
func (f *ZBigFile) BlkTab() *btree.LOBTree { return f.blktab }

// Params activates f and returns its blksize and blktab.
//
// ctx must carry the transaction of f's connection (see ZConn.Ctx).
func (f *ZBigFile) Params(ctx context.Context) (blksize int64, blktab *btree.LOBTree, err error) {
	at, stor, err := f.view(ctx)
	if err == nil {
		err = f.activate(ctx, stor, at)
	}
	if err != nil {
		return 0, nil, f.errf(at, "%w", err)
	}
	defer f.PDeactivate()
	return f.blksize, f.blktab, nil
}

// DropState implements zodb.Ghostable.
func (f *zBigFileState) DropState() {
	f.blksize = 0
	f.blktab = nil
}

// PyGetState implements zodb.PyStateful.
func (f *zBigFileState) PyGetState() any {
	return pickle.Tuple{f.blksize, f.blktab}
}

// PySetState implements zodb.PyStateful.
func (f *zBigFileState) PySetState(pystate any) error {
	t, ok := pystate.(pickle.Tuple)
	if !ok || len(t) != 2 {
		return malformedf("ZBigFile state: expected (blksize, blktab); got %s", pyTypeName(pystate))
	}
	blksize, err := pickle.AsInt64(t[0])
	if err != nil {
		return malformedf("ZBigFile state: blksize: expected int; got %s", pyTypeName(t[0]))
	}
	if err := checkBlkSize(blksize); err != nil {
		return err
	}
	blktab, ok := t[1].(*btree.LOBTree)
	if !ok {
		return malformedf("ZBigFile state: blktab must be a BTrees.LOBTree.LOBTree; got %s", persistentTypeName(t[1]))
	}
	f.blksize = blksize
	f.blktab = blktab
	return nil
}

// checkBlkSize verifies a decoded blksize.
func checkBlkSize(blksize int64) error {
	if blksize <= 0 || blksize > MaxBlkSize {
		return malformedf("ZBigFile state: blksize %d out of range (0, %d]", blksize, MaxBlkSize)
	}
	return nil
}

// persistentTypeName names a value decoded by neo/go that should have been a
// persistent object.
func persistentTypeName(x any) string {
	if obj, ok := x.(zodb.IPersistent); ok {
		return fmt.Sprintf("%s(%s)", className(obj), obj.POid())
	}
	return pyTypeName(x)
}

// pyTypeName returns a Python-like name of a value decoded by neo/go
// (og-rek) for error messages.
func pyTypeName(x any) string {
	switch x := x.(type) {
	case nil:
		return "nothing"
	case pickle.None:
		return "None"
	case bool:
		return "bool"
	case int64:
		return "int"
	case float64:
		return "float"
	case string:
		return "unicode"
	case pickle.Bytes:
		return "bytes"
	case pickle.ByteString:
		return "str"
	case pickle.Tuple:
		return fmt.Sprintf("tuple[%d]", len(x))
	case []any:
		return "list"
	case pickle.Dict, map[any]any:
		return "dict"
	case pickle.Class:
		return "class " + x.Module + "." + x.Name
	case pickle.Ref:
		return "persistent reference"
	case pickle.Call:
		return "call " + x.Callable.Module + "." + x.Callable.Name
	}
	return fmt.Sprintf("%T", x)
}

// className returns the ZODB class of obj; for objects of classes unknown to
// Go (zodb.Broken) it returns the Python class path.
func className(obj zodb.IPersistent) string {
	class := zodb.ClassOf(obj)
	const pre, suf = `ZODB.Broken("`, `")`
	if len(class) > len(pre)+len(suf) && class[:len(pre)] == pre && class[len(class)-len(suf):] == suf {
		return class[len(pre) : len(class)-len(suf)]
	}
	return class
}

// ZBlk0 mirrors wendelin.bigfile.file_zodb.ZBlk0 (and its legacy name ZBlk):
// the block data as one bytes object, trailing zeros stripped.
//
// The block path (ZBigFile.LoadBlk) does not activate ZBlk objects: it reads
// their records directly. Activation works too, for inspection.
type ZBlk0 struct {
	zodb.Persistent
	data []byte
}

type zBlk0State ZBlk0

// Data returns the stored (stripped) block data. b must be activated.
func (b *ZBlk0) Data() []byte { return b.data }

func (b *zBlk0State) DropState()      { b.data = nil }
func (b *zBlk0State) PyGetState() any { return pickle.Bytes(b.data) }
func (b *zBlk0State) PySetState(pystate any) (err error) {
	b.data, err = bytesState("ZBlk0", pystate)
	return err
}

// bytesState converts the decoded state of ZBlk0/ZData.
func bytesState(class string, pystate any) ([]byte, error) {
	data, err := pickle.AsBytes(pystate)
	if err != nil {
		return nil, malformedf("%s state: expected bytes; got %s", class, pyTypeName(pystate))
	}
	return []byte(data), nil
}

// ZBlk is the legacy name of ZBlk0 (early wendelin.core versions wrote
// records and references under it); it reads exactly as ZBlk0.
//
// It is a distinct Go type, not a zodb.RegisterClassAlias: neo/go checks the
// class of a reference against the class of the object already in the live
// cache without resolving aliases, so an aliased ZBlk reference would fail to
// decode the second time its bucket is loaded.
type ZBlk struct {
	ZBlk0
}

type zBlkState ZBlk

func (b *zBlkState) DropState()      { b.data = nil }
func (b *zBlkState) PyGetState() any { return pickle.Bytes(b.data) }
func (b *zBlkState) PySetState(pystate any) (err error) {
	b.data, err = bytesState("ZBlk", pystate)
	return err
}

// ZBlk1 mirrors wendelin.bigfile.file_zodb.ZBlk1: the block data split into
// ZData chunks kept in an IOBTree (int32 offset -> ZData).
type ZBlk1 struct {
	zodb.Persistent
	chunktab *btree.IOBTree
}

type zBlk1State ZBlk1

// ChunkTab returns the chunk table. b must be activated.
func (b *ZBlk1) ChunkTab() *btree.IOBTree { return b.chunktab }

func (b *zBlk1State) DropState()      { b.chunktab = nil }
func (b *zBlk1State) PyGetState() any { return b.chunktab }
func (b *zBlk1State) PySetState(pystate any) error {
	t, ok := pystate.(*btree.IOBTree)
	if !ok {
		return malformedf("ZBlk1 state: expected a BTrees.IOBTree.IOBTree; got %s", persistentTypeName(pystate))
	}
	b.chunktab = t
	return nil
}

// ZData mirrors wendelin.bigfile.file_zodb.ZData: one chunk of ZBlk1 data,
// trailing zeros stripped.
type ZData struct {
	zodb.Persistent
	data []byte
}

type zDataState ZData

// Data returns the chunk data. d must be activated.
func (d *ZData) Data() []byte { return d.data }

func (d *zDataState) DropState()      { d.data = nil }
func (d *zDataState) PyGetState() any { return pickle.Bytes(d.data) }
func (d *zDataState) PySetState(pystate any) (err error) {
	d.data, err = bytesState("ZData", pystate)
	return err
}

func init() {
	t := reflect.TypeOf
	zodb.RegisterClass(ClassZBigFile, t(ZBigFile{}), t(zBigFileState{}))
	zodb.RegisterClass(ClassZBlk0, t(ZBlk0{}), t(zBlk0State{}))
	zodb.RegisterClass(ClassZBlk1, t(ZBlk1{}), t(zBlk1State{}))
	zodb.RegisterClass(ClassZData, t(ZData{}), t(zDataState{}))
	zodb.RegisterClass(ClassZBlk, t(ZBlk{}), t(zBlkState{}))
}
