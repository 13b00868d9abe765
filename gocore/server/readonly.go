// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"github.com/hanwen/go-fuse/v2/fuse"
)

// readOnlyFS wraps the raw filesystem of the node tree and refuses every
// request that would change the tree, attributes or data: unlink, rmdir,
// rename (and exchange), mkdir, mknod, create, O_TMPFILE, symlink, link,
// setattr (chmod, chown, truncate and O_TRUNC, utimes), fallocate,
// copy_file_range, setxattr and removexattr all answer EPERM.
//
// Without it go-fuse's fs bridge answers unlink and rmdir of a node that
// implements neither NodeUnlinker nor NodeRmdirer with success and drops
// the child from the tree: `rm -rf` of a mount emptied it (head/at,
// head/watch, .wcfs/zurl gone until a restart, every client broken). The
// other requests got ENOTSUP or EROFS from the bridge, depending on the
// request. The reference (go-fuse v1 nodefs defaults) answered ENOSYS,
// which the kernel turns into EOPNOTSUPP for some requests and remembers
// for the whole connection for others; EPERM is what go-fuse v1's read-only
// filesystem answered and what write opens already get here (bigfile.go,
// nodes.go), so a user sees one error, "operation not permitted", for
// every change tried. Write opens are refused by the nodes themselves:
// head/watch and .wcfs/debug/zhead are opened for writing by design.
// Extended attributes stay disabled as in the reference (go-fuse answers
// ENOSYS, the kernel gives EOPNOTSUPP); the methods below refuse them
// anyway should they ever be enabled.
//
// Refusing at the raw level (rather than in every node type) keeps the
// rule in one place, whatever nodes the tree gets.
type readOnlyFS struct {
	fuse.RawFileSystem
}

func (readOnlyFS) SetAttr(cancel <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	return fuse.EPERM
}

func (readOnlyFS) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	return fuse.EPERM
}

func (readOnlyFS) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	return fuse.EPERM
}

func (readOnlyFS) Unlink(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fuse.EPERM
}

func (readOnlyFS) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return fuse.EPERM
}

func (readOnlyFS) Rename(cancel <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	return fuse.EPERM
}

func (readOnlyFS) Link(cancel <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	return fuse.EPERM
}

func (readOnlyFS) Symlink(cancel <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	return fuse.EPERM
}

func (readOnlyFS) SetXAttr(cancel <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	return fuse.EPERM
}

func (readOnlyFS) RemoveXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	return fuse.EPERM
}

func (readOnlyFS) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	return fuse.EPERM
}

func (readOnlyFS) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	return fuse.EPERM
}

func (readOnlyFS) Fallocate(cancel <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	return fuse.EPERM
}

func (readOnlyFS) CopyFileRange(cancel <-chan struct{}, in *fuse.CopyFileRangeIn) (uint32, fuse.Status) {
	return 0, fuse.EPERM
}
