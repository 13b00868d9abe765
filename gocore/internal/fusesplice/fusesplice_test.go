// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package fusesplice

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// fileSize is the size of the test mount's file.
const fileSize = 8 << 20

// cacheOnly is a file whose content exists only in its page cache: its
// reads fail, so what a read returns was stored.
type cacheOnly struct {
	fs.Inode
	reads sync.WaitGroup
}

var _ = (fs.NodeOpener)((*cacheOnly)(nil))
var _ = (fs.NodeReader)((*cacheOnly)(nil))
var _ = (fs.NodeGetattrer)((*cacheOnly)(nil))

func (f *cacheOnly) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *cacheOnly) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	return nil, syscall.EIO
}

func (f *cacheOnly) Getattr(ctx context.Context, fh fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = 0o444
	out.Size = fileSize
	return 0
}

type testRoot struct{ fs.Inode }

// mount mounts a filesystem with the file "f" (a cacheOnly) in a temporary
// directory, and returns the file open, its node id and the server.
func mount(t *testing.T) (file *os.File, node uint64, srv *fuse.Server) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no FUSE: %s", err)
	}
	dir := t.TempDir()
	root := &testRoot{}
	f := &cacheOnly{}
	opts := &fs.Options{
		MountOptions: fuse.MountOptions{
			Name:                     "fusesplice-test",
			ExplicitDataCacheControl: true,
			DirectMountStrict:        os.Geteuid() == 0,
		},
		ExternalNodeID: true,
		OnAdd: func(ctx context.Context) {
			ch := root.NewPersistentInode(ctx, f, fs.StableAttr{Mode: syscall.S_IFREG})
			root.AddChild("f", ch, false)
		},
	}
	srv, err := fs.Mount(dir, root, opts)
	if err != nil {
		t.Skipf("cannot mount FUSE here: %s", err)
	}
	t.Cleanup(func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %s", err)
		}
	})
	file, err = os.Open(filepath.Join(dir, "f")) // the kernel knows the node now
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { file.Close() }) // before the unmount
	return file, f.StableAttr().Ino, srv
}

// source writes n random bytes to a file and returns it open.
func source(t *testing.T, n int) (*os.File, []byte) {
	t.Helper()
	data := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(data)
	p := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, data
}

func newStorer(t *testing.T, srv *fuse.Server) *Storer {
	t.Helper()
	dev, err := DevConn(srv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// cached returns n bytes of file at off, which must all be in the page
// cache (the file's reads fail).
func cached(t *testing.T, file *os.File, off, n int64) []byte {
	t.Helper()
	buf := make([]byte, n)
	if _, err := file.ReadAt(buf, off); err != nil {
		t.Fatalf("read [%d, +%d): %s (not stored)", off, n, err)
	}
	return buf
}

func TestDevConn(t *testing.T) {
	_, _, srv := mount(t)
	dev, err := DevConn(srv)
	if err != nil {
		t.Fatal(err)
	}
	var link string
	if err := dev.Control(func(fd uintptr) {
		link, err = os.Readlink(filepath.Join("/proc/self/fd", strconv.Itoa(int(fd))))
	}); err != nil {
		t.Fatal(err)
	}
	if err != nil || link != "/dev/fuse" {
		t.Fatalf("DevConn's descriptor is %q (%v), want /dev/fuse", link, err)
	}
	if _, err := DevConn(nil); err == nil {
		t.Error("DevConn(nil): no error")
	}
}

// TestStore stores ranges from page-aligned and unaligned source offsets,
// of less than one message and of several, and reads them back from the
// page cache.
func TestStore(t *testing.T) {
	file, node, srv := mount(t)
	src, data := source(t, 6<<20)
	s := newStorer(t, srv)
	if s.Chunk() < 14*PageSize {
		t.Fatalf("chunk %d: too small", s.Chunk())
	}
	for _, c := range []struct{ off, srcOff, n int64 }{
		{0, 0, 64 << 10},                    // aligned, one message
		{64 << 10, 123, 3 << 20},            // unaligned source, several messages
		{4 << 20, 4095, s.Chunk()},          // exactly one message, unaligned
		{5 << 20, 8192, 2*s.Chunk() + 4096}, // aligned, three messages
	} {
		got, err := s.Store(node, c.off, src, c.srcOff, c.n)
		if err != nil || got != c.n {
			t.Fatalf("Store(%+v): %d, %v", c, got, err)
		}
		if back := cached(t, file, c.off, c.n); !bytes.Equal(back, data[c.srcOff:c.srcOff+c.n]) {
			t.Fatalf("Store(%+v): the page cache holds other data", c)
		}
	}
}

// TestStoreErrors: the kernel's answers come back as errnos and leave the
// Storer usable; local failures wrap ErrNoSplice and never hang.
func TestStoreErrors(t *testing.T) {
	file, node, srv := mount(t)
	src, data := source(t, 1<<20)
	s := newStorer(t, srv)

	if _, err := s.Store(node+1000, 0, src, 0, 64<<10); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("store to an unknown node: %v, want ENOENT", err)
	}
	// past the source's end: the splice from it comes up short
	n, err := s.Store(node, 0, src, 1<<20-4096, 2*s.Chunk())
	if !errors.Is(err, ErrNoSplice) {
		t.Errorf("store past the source's end: %d, %v, want ErrNoSplice", n, err)
	}
	if _, err := s.Store(node, 0, src, -1, 10); err == nil {
		t.Error("negative source offset: no error")
	}
	// still usable
	if _, err := s.Store(node, 0, src, 0, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cached(t, file, 0, 1<<20), data) {
		t.Fatal("page cache content differs")
	}
	s.Close()
	if _, err := s.Store(node, 0, src, 0, 4096); !errors.Is(err, ErrNoSplice) {
		t.Errorf("store after Close: %v, want ErrNoSplice", err)
	}
}

// TestStoreConcurrent: concurrent stores of different ranges, each
// through a pipe of its own.
func TestStoreConcurrent(t *testing.T) {
	file, node, srv := mount(t)
	src, data := source(t, fileSize)
	s := newStorer(t, srv)
	const parts = 16
	var wg sync.WaitGroup
	for i := range parts {
		wg.Go(func() {
			off := int64(i) * fileSize / parts
			if _, err := s.Store(node, off, src, off, fileSize/parts); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if !bytes.Equal(cached(t, file, 0, fileSize), data) {
		t.Fatal("page cache content differs")
	}
}

// TestPipeLimits: pipes of the size the system gives unprivileged
// processes are usable; a Storer whose pipes shrank refuses, no hang.
func TestPipeLimits(t *testing.T) {
	p, slots, err := newPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if slots < minSlots {
		t.Fatalf("%d slots", slots)
	}
	if !p.empty() {
		t.Fatal("a new pipe is not empty")
	}
	if _, err := unix.Write(p.w, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if p.empty() {
		t.Fatal("a pipe holding a byte is empty")
	}
}
