// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"errors"
	"os"
	"syscall"

	log "github.com/golang/glog"
	"github.com/hanwen/go-fuse/v2/fuse"

	"wendelin.dev/wcfs/gocore/internal/fusesplice"
)

// Page cache stores (FUSE NOTIFY_STORE) of loaded blocks: the upload of a
// block after a read or a prefetch, and the old data of a changed block
// kept for @<rev>/. A block that is a FileStorage record in place (see
// zdata.BlkData.Source) is spliced from data.fs into /dev/fuse: the kernel
// copies the FileStorage's page cache pages into the file's without first
// pinning them through our map of data.fs (package fusesplice). Any other
// block, or a range the splice could not send, is written from memory
// (go-fuse's Inode.WriteCache). WCFS_NO_SPLICE=1 turns the splice off.

// newStorer returns the splice storer of a mounted server, nil when it is
// turned off or unavailable (logged).
func newStorer(srv *fuse.Server) *fusesplice.Storer {
	if os.Getenv("WCFS_NO_SPLICE") != "" {
		log.Infof("page cache stores: write (WCFS_NO_SPLICE)")
		return nil
	}
	dev, err := fusesplice.DevConn(srv)
	if err != nil {
		log.Warningf("page cache stores: write, not splice: %s", err)
		return nil
	}
	st, err := fusesplice.New(dev)
	if err != nil {
		log.Warningf("page cache stores: write, not splice: %s", err)
		return nil
	}
	return st
}

// storeCache stores b.data[lo:hi] into f's page cache at offset off+lo,
// where off is the offset of the block b holds. It returns the kernel's
// answer (ENOENT: the kernel forgot the inode).
func (f *bigFile) storeCache(off int64, b *blockBuf, lo, hi int64) syscall.Errno {
	srv := f.server()
	if st := srv.storer; st != nil {
		if src, srcOff, ok := b.shared.Source(); ok {
			n, err := st.Store(f.StableAttr().Ino, off+lo, src, srcOff+lo, hi-lo)
			srv.stats.StoredSplice.Add(n)
			if err == nil {
				return 0
			}
			var errno syscall.Errno
			if errors.As(err, &errno) {
				return errno
			}
			if srv.ctx.Err() != nil {
				return syscall.ENOENT // shutting down: nothing to cache
			}
			srv.spliceWarnOnce.Do(func() {
				log.Warningf("%s: page cache store by splice failed, writing instead (logged once): %s", f.path(), err)
			})
			lo += n
		}
	}
	errno := f.WriteCache(off+lo, b.data[lo:hi])
	if errno == 0 {
		srv.stats.StoredWrite.Add(hi - lo)
	}
	return errno
}
