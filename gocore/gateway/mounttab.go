// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/zurl"
)

// FSType is the filesystem type of WCFS mounts.
const FSType = "fuse.wcfs"

// Mount is one entry of the mount table.
type Mount struct {
	ID           int
	Major, Minor int    // device; Minor is the FUSE connection number
	Point        string // mountpoint
	FSType       string
	Source       string // for WCFS: the zurl the server was started with
	UserID       int    // FUSE user_id= (the uid of the mounter), -1 if none
	Stacked      int    // number of other mounts at the same point
}

// Dev returns the device number of the mounted filesystem.
func (m *Mount) Dev() uint64 {
	return unix.Mkdev(uint32(m.Major), uint32(m.Minor))
}

func (m *Mount) String() string {
	return fmt.Sprintf("%s on %s (mount %d, dev %d:%d, user_id %d)", m.FSType, m.Point, m.ID, m.Major, m.Minor, m.UserID)
}

// AbortPath is the FUSE connection's abort file in fusectl.
func (m *Mount) AbortPath() string {
	return fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", m.Minor)
}

// topMountAt returns the top (visible) mount at point, or nil. It reads the
// mount table only and never touches point itself.
func topMountAt(point string) (*Mount, error) {
	infos, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		return i.Mountpoint != point, false
	})
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	if len(infos) == 0 {
		return nil, nil
	}
	// the top mount is the one no other mount at point is mounted on
	isParent := map[int]bool{}
	for _, i := range infos {
		isParent[i.Parent] = true
	}
	top := infos[len(infos)-1]
	for _, i := range infos {
		if !isParent[i.ID] {
			top = i
		}
	}
	m := &Mount{
		ID: top.ID, Major: top.Major, Minor: top.Minor, Point: top.Mountpoint,
		FSType: top.FSType, Source: top.Source, UserID: -1, Stacked: len(infos) - 1,
	}
	for _, o := range strings.Split(top.VFSOptions, ",") {
		if v, ok := strings.CutPrefix(o, "user_id="); ok {
			if uid, err := strconv.Atoi(v); err == nil {
				m.UserID = uid
			}
		}
	}
	return m, nil
}

// stillTop reports whether m is still the top mount at its point.
func (m *Mount) stillTop() (bool, error) {
	cur, err := topMountAt(m.Point)
	if err != nil {
		return false, err
	}
	return cur != nil && cur.ID == m.ID, nil
}

// checkOurs returns an error describing why m is not a WCFS mount this
// process may use for z: fstype, owner and source (a zurl equivalent to z)
// must all match.
func (m *Mount) checkOurs(z zurl.ZURL) error {
	if m.FSType != FSType {
		return fmt.Errorf("%s is a %s mount (source %q), not a wcfs server: refusing to use it", m.Point, m.FSType, m.Source)
	}
	if uid := os.Geteuid(); m.UserID != uid {
		return fmt.Errorf("%s is a wcfs mount of uid %d, not of uid %d: refusing to use it", m.Point, m.UserID, uid)
	}
	if !servesZurl(m.Source, z) {
		return fmt.Errorf("%s is a wcfs mount serving %q: refusing to use it", m.Point, m.Source)
	}
	return nil
}

// servesZurl reports whether a server's zurl (its mount source, its
// .wcfs/zurl), which is absolute, designates the storage z.
func servesZurl(served string, z zurl.ZURL) bool {
	s, err := zurl.ParseIn(served, "/")
	return err == nil && s.Equivalent(z)
}
