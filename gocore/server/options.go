// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"wendelin.dev/wcfs/gocore/zurl"
)

// Options configure a Server. The zero value of every optional field means
// "default" (see the constants below).
type Options struct {
	// ZURL is the storage, parsed from the command line; its storage URL
	// (the zurl as given, relative FileStorage paths resolved: see package
	// zurl) is the mount source and the content of .wcfs/zurl.
	ZURL zurl.ZURL

	// Mountpoint is the directory to mount on. It must exist.
	Mountpoint string

	// PinTimeout is the time a client has to handle a pin notification
	// (isolation protocol); shown in .wcfs/pintimeout.
	PinTimeout time.Duration

	// Debug adds .wcfs/debug/ (the zhead stream).
	Debug bool

	// TraceFUSE logs every FUSE message (go-fuse debug output).
	TraceFUSE bool

	// AutoExit makes the server unmount and exit once no client has used
	// the mount for AutoExitGrace (non-lazy unmount; stays up when busy).
	AutoExit      bool
	AutoExitGrace time.Duration

	// RevIdle is how long an @<rev>/ view may stay unused (no open file,
	// no request) before the server asks the kernel to forget it; its
	// ZODB connection is closed when the kernel does.
	RevIdle time.Duration

	// OpenTimeout bounds opening the storage at startup.
	OpenTimeout time.Duration

	// ZStorTimeout is the time a network storage has to answer a load;
	// without an answer the load fails (EIO) and the storage is considered
	// down (see zstor.go).
	ZStorTimeout time.Duration

	// Prefetch is how far ahead of a sequential reader of big blocks
	// (>= 512 KiB) the server loads blocks and uploads them into the page
	// cache, in bytes; 0 (the default) turns prefetch off: a read of block
	// N loads and uploads block N only, as the reference server does.
	// Prefetch makes cold sequential reads faster but loads storage data
	// nobody asked for (network storages pay for it), leaves more in the
	// page cache than was read, and is off anyway for files with a watch
	// behind head (see watch.go).
	Prefetch int64

	// Status, if set, is told the server's state when it changes (the
	// storage went down): the command sends it as sd_notify STATUS=.
	Status func(state string)
}

// Defaults.
const (
	DefaultPinTimeout    = 30 * time.Second
	DefaultAutoExitGrace = 30 * time.Second
	DefaultRevIdle       = 2 * time.Minute
	DefaultOpenTimeout   = time.Minute
	DefaultZStorTimeout  = 30 * time.Second
)

// ErrUsage is wrapped by option errors that are the caller's mistake.
var ErrUsage = errors.New("invalid usage")

// normalize checks opt and fills defaults; Mountpoint becomes absolute.
func (opt *Options) normalize() error {
	if opt.ZURL.IsZero() {
		return fmt.Errorf("%w: no zurl", ErrUsage)
	}
	if opt.Mountpoint == "" {
		return fmt.Errorf("%w: empty mountpoint", ErrUsage)
	}
	mnt, err := filepath.Abs(opt.Mountpoint)
	if err != nil {
		return fmt.Errorf("mountpoint %q: %w", opt.Mountpoint, err)
	}
	// the mount table first: a stat of a (hung) mount there could hang
	if err := checkNotMounted(mnt); err != nil {
		return err
	}
	st, err := os.Stat(mnt)
	if err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("mountpoint %s: not a directory", mnt)
	}
	opt.Mountpoint = mnt

	if opt.PinTimeout == 0 {
		opt.PinTimeout = DefaultPinTimeout
	}
	if opt.PinTimeout < 0 {
		return fmt.Errorf("%w: negative pin timeout %s", ErrUsage, opt.PinTimeout)
	}
	if opt.AutoExitGrace == 0 {
		opt.AutoExitGrace = DefaultAutoExitGrace
	}
	if opt.RevIdle == 0 {
		opt.RevIdle = DefaultRevIdle
	}
	if opt.OpenTimeout == 0 {
		opt.OpenTimeout = DefaultOpenTimeout
	}
	if opt.ZStorTimeout == 0 {
		opt.ZStorTimeout = DefaultZStorTimeout
	}
	if opt.Prefetch < 0 {
		return fmt.Errorf("%w: negative prefetch %d", ErrUsage, opt.Prefetch)
	}
	if opt.AutoExitGrace < 0 || opt.RevIdle < 0 || opt.OpenTimeout < 0 || opt.ZStorTimeout < 0 {
		return fmt.Errorf("%w: negative duration", ErrUsage)
	}
	return nil
}
