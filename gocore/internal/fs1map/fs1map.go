// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package fs1map gives the data of large FileStorage records without a
// copy: a slice of a read-only memory map of the data file.
//
// The WCFS server hands a whole ZBlk0 block (2 MiB) to the kernel twice: as
// the reply of a READ and as a page cache store (FUSE NOTIFY_STORE), both
// written from the block's memory. Read through neo/go's FileStorage driver,
// that memory is a buffer the record was first copied into by pread; a
// slice of a map of data.fs is the FileStorage's own page cache, and the
// kernel copies from it directly: one memory pass and one long system call
// less per block.
//
// neo/go keeps the positions of records (its index) private, so a File
// keeps its own, small one: for every object that has had a record of at
// least MinSize bytes of data, the position of its latest record. Objects
// with small records only (BTree nodes, ZBigFile, ZBlk1 chunks) are not in
// it, and Load says so: the caller loads them through the driver. From an
// object's latest record, Load walks back the chain of its revisions (as
// neo/go does) to the one visible at the asked revision.
//
// The index is built by a scan of the transaction and data record headers
// (not the data), in the background after Open; until it is done Load
// declines everything. Afterwards it follows the file lazily: a Load at a
// revision the index does not cover yet first indexes the committed
// transactions appended since (a few header reads per commit). Only
// committed transactions (status ' ' or 'p') are indexed and only their
// records are read through the map: FileStorage never rewrites or truncates
// committed data (it truncates only an aborted transaction's tail, and a
// pack writes a new file, while the map keeps the old one), so the mapped
// pages stay valid.
//
// Load declines (ok false), and the caller uses the driver, whenever the
// answer is not a plain data record: objects not indexed, revisions not
// indexed, objects created after the revision or deleted, records beyond
// the mapped range (the map is made once, several times larger than the
// file at Open), or a file whose scan failed. The driver then gives the
// exact answer or error.
package fs1map

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
	"lab.nexedi.com/kirr/neo/go/zodb"
	"lab.nexedi.com/kirr/neo/go/zodb/storage/fs1"
)

// MinSize is the default smallest record data size that a File indexes.
// Smaller records cost little to copy.
const MinSize = 32 << 10

// File is a FileStorage data file mapped for Load.
type File struct {
	path    string
	f       *os.File
	mem     []byte // the map: read-only, shared, len is the mapped range
	minSize int64

	mu      sync.Mutex
	ready   bool               // the initial scan is done
	broken  error              // the scan failed: Load declines everything
	topPos  int64              // the index covers the transactions before topPos
	topTid  zodb.Tid           // the last transaction indexed
	index   map[zodb.Oid]int64 // oid -> position of its latest data record before topPos
	closed  bool
	cancel  context.CancelFunc // stops the initial scan
	scanned chan struct{}      // closed when the initial scan ends

	refs atomic.Int64 // 1 while open, +1 per Load not yet released
}

// Open maps the FileStorage data file at path and starts indexing it in the
// background. Records with at least minSize bytes of data are indexed
// (minSize <= 0: MinSize).
func Open(path string, minSize int64) (_ *File, err error) {
	if minSize <= 0 {
		minSize = MinSize
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("fs1map: open %s: %w", path, err)
		}
	}()
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	var fh fs1.FileHeader
	if err := fh.Load(f); err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, mapLen(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	// record headers are read where they are: no readahead around them
	_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_RANDOM)

	m := &File{
		path:    path,
		f:       f,
		mem:     mem,
		minSize: minSize,
		topPos:  fs1.IndexNew().TopPos, // the first transaction
		index:   make(map[zodb.Oid]int64),
		scanned: make(chan struct{}),
	}
	m.refs.Store(1)
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go m.initialScan(ctx)
	return m, nil
}

// mapLen is the length of the map of a file of size bytes: room for the
// file to grow 4 times, at least 64 GiB (address space, no memory), at most
// 1 TiB.
func mapLen(size int64) int {
	const page = 4096
	n := max(4*size, 64<<30)
	n = min(n, 1<<40)
	n = max(n, size)
	return int((n + page - 1) / page * page)
}

// Ready returns a channel closed when the initial scan has ended.
func (m *File) Ready() <-chan struct{} { return m.scanned }

// Err returns why the File declines every Load, or nil.
func (m *File) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.broken
}

// initialScan indexes the file as it is, then lets Load use the index.
func (m *File) initialScan(ctx context.Context) {
	defer close(m.scanned)
	idx := make(map[zodb.Oid]int64)
	pos, tid, err := m.scan(ctx, idx, fs1.IndexNew().TopPos, 0)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.index, m.topPos, m.topTid = idx, pos, tid
	m.broken = err
	m.ready = true
}

// scan adds the committed transactions from pos on to idx and returns the
// position after the last one and its tid (tid when there is none). It
// stops without error at the end of the file or at a transaction not
// committed yet; an error means the file is damaged or unreadable.
// idx is updated one whole transaction at a time.
func (m *File) scan(ctx context.Context, idx map[zodb.Oid]int64, pos int64, tid zodb.Tid) (endPos int64, endTid zodb.Tid, err error) {
	// neo/go's record decoders can panic on damaged headers (string
	// lengths overflowing): a damaged file must not take the server down
	defer func() {
		if r := recover(); r != nil {
			endPos, endTid = pos, tid
			err = fmt.Errorf("%s: damaged transaction record after position %d: %v", m.path, pos, r)
		}
	}()
	it := fs1.Iterate(m.f, pos, fs1.IterForward)
	type rec struct {
		oid zodb.Oid
		pos int64
		big bool
	}
	var txn []rec
	for {
		if err := ctx.Err(); err != nil {
			return pos, tid, err
		}
		err := it.NextTxn(fs1.LoadNoStrings)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return pos, tid, nil // end, or a transaction being written
			}
			return pos, tid, err
		}
		if it.Txnh.Status == zodb.TxnInprogress {
			return pos, tid, nil
		}
		txn = txn[:0]
		for {
			err := it.NextData()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					return pos, tid, nil
				}
				return pos, tid, err
			}
			txn = append(txn, rec{it.Datah.Oid, it.Datah.Pos, it.Datah.DataLen >= m.minSize})
		}
		for _, r := range txn {
			if _, known := idx[r.oid]; known || r.big {
				idx[r.oid] = r.pos
			}
		}
		pos, tid = it.Txnh.Pos+it.Txnh.Len, it.Txnh.Tid
	}
}

// catchUp indexes the transactions committed since the last scan; m.mu is
// held.
func (m *File) catchUp() {
	pos, tid, err := m.scan(context.Background(), m.index, m.topPos, m.topTid)
	m.topPos, m.topTid = pos, tid
	if err != nil {
		m.broken = err
	}
}

// Record is a record's data in the map. Data must not be modified (the map
// is read-only: a write faults) and must not be used after Release.
type Record struct {
	Data []byte
	m    *File
}

// Release ends the use of r's data. Calling it again does nothing.
func (r *Record) Release() {
	if r.m != nil {
		r.m.unref()
		r.m = nil
	}
	r.Data = nil
}

// Locate returns the data file and the offset in it of p, a part of r.Data:
// the bytes can be read from there with a file system call instead of the
// map (splice: the page cache pages themselves, not a copy). The file is
// valid until r is released; it must not be closed. ok is false when p is
// not in r.Data.
func (r *Record) Locate(p []byte) (f *os.File, off int64, ok bool) {
	if r.m == nil || len(p) == 0 || len(r.Data) == 0 {
		return nil, 0, false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(r.m.mem)))
	dlo := uintptr(unsafe.Pointer(unsafe.SliceData(r.Data)))
	plo := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	if plo < dlo || plo+uintptr(len(p)) > dlo+uintptr(len(r.Data)) {
		return nil, 0, false
	}
	return r.m.f, int64(plo - base), true
}

// Load returns the data of object xid.Oid as of revision xid.At and the tid
// of the transaction that wrote it (its serial), like IStorage.Load, or ok
// false when it does not know the answer (see the package documentation);
// it never fails: what it cannot read, the driver will report.
// The caller must Release a returned record.
func (m *File) Load(xid zodb.Xid) (rec Record, serial zodb.Tid, ok bool) {
	m.mu.Lock()
	if !m.ready || m.broken != nil || m.closed {
		m.mu.Unlock()
		return Record{}, 0, false
	}
	if xid.At > m.topTid {
		m.catchUp()
		if xid.At > m.topTid || m.broken != nil {
			m.mu.Unlock()
			return Record{}, 0, false
		}
	}
	pos, indexed := m.index[xid.Oid]
	if !indexed {
		m.mu.Unlock()
		return Record{}, 0, false
	}
	top := m.topPos
	m.refs.Add(1) // the map stays until this load is released
	m.mu.Unlock()

	data, serial, ok := m.find(xid, pos, top)
	if !ok {
		m.unref()
		return Record{}, 0, false
	}
	return Record{Data: data, m: m}, serial, true
}

// find walks from the object's latest record at pos to the one visible at
// xid.At; all of it lies before top (committed, indexed).
func (m *File) find(xid zodb.Xid, pos, top int64) (data []byte, serial zodb.Tid, ok bool) {
	defer func() {
		if r := recover(); r != nil { // neo/go's decoders on a damaged chain
			data, serial, ok = nil, 0, false
		}
	}()
	if !Safe(func() { data, serial, ok = m.walk(xid, pos, top) }) {
		return nil, 0, false
	}
	return data, serial, ok
}

func (m *File) walk(xid zodb.Xid, pos, top int64) (data []byte, serial zodb.Tid, ok bool) {
	r := &memReader{mem: m.mem[:min(top, int64(len(m.mem)))], name: m.path}
	dh := fs1.DataHeader{Oid: xid.Oid, Tid: zodb.TidMax, PrevRevPos: pos}
	for {
		if err := dh.LoadPrevRev(r); err != nil {
			return nil, 0, false // created after xid.At (EOF), or damaged
		}
		if dh.Tid <= xid.At {
			break
		}
	}
	serial = dh.Tid
	for dh.DataLen == 0 {
		if err := dh.LoadBack(r); err != nil {
			return nil, 0, false // deleted (EOF), or damaged
		}
	}
	start := dh.Pos + fs1.DataHeaderSize
	end := start + dh.DataLen
	if end > int64(len(r.mem)) {
		return nil, 0, false
	}
	return r.mem[start:end:end], serial, true
}

// Safe runs fn, which reads records of a File, and tells whether it
// completed: false when it touched a page of the map that the file no
// longer has (SIGBUS: the file was truncated below its committed data by
// something other than FileStorage), instead of crashing the process.
func Safe(fn func()) (completed bool) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			completed = false
		}
	}()
	fn()
	return true
}

// Close stops the scan; the map goes when the last record is released.
func (m *File) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	<-m.scanned
	m.unref()
	return nil
}

func (m *File) unref() {
	switch n := m.refs.Add(-1); {
	case n == 0:
		if err := unix.Munmap(m.mem); err != nil {
			panic(fmt.Sprintf("fs1map: %s: munmap: %s", m.path, err))
		}
		m.mem = nil
		m.f.Close()
	case n < 0:
		panic("fs1map: release of a released record")
	}
}

// memReader reads the committed part of the map (headers for fs1's
// decoders).
type memReader struct {
	mem  []byte
	name string
}

func (r *memReader) Name() string { return r.name }

func (r *memReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	if off >= int64(len(r.mem)) {
		return 0, io.EOF
	}
	n := copy(p, r.mem[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
