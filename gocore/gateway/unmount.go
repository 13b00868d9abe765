// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// BusyError is the error of an unmount refused because processes use the
// mount; it names them.
type BusyError struct {
	Point   string
	Holders []Holder
}

func (e *BusyError) Error() string {
	s := fmt.Sprintf("unmount %s: device or resource busy", e.Point)
	if len(e.Holders) == 0 {
		return s + " (no process found using it)"
	}
	s += "; used by:"
	for _, h := range e.Holders {
		s += "\n  " + strings.ReplaceAll(h.String(), "\n", "\n  ")
	}
	return s
}

func (e *BusyError) Unwrap() error { return unix.EBUSY }

// errNotTop is returned when the mount to unmount is not (any more) the top
// mount at its point: another mount replaced it, which must not be touched.
var errNotTop = errors.New("not the top mount there any more")

// unmount unmounts m, lazily (MNT_DETACH) if lazy. It first checks that m is
// still the top mount at its point: an unmount by path acts on the top mount.
// As root it calls umount2; otherwise it runs fusermount3 (or fusermount).
// The call is bounded by ctx.
// busyWait is how long unmount retries a busy mount: a mount can be busy
// for a moment while its last users are letting go of it (seen with no
// process holding anything right after the caller closed its last file of
// the mount, on a loaded machine: the kernel drops a closed file's mount
// reference after close(2) returns in some paths).
const busyWait = 600 * time.Millisecond

func (g *Gateway) unmount(ctx context.Context, m *Mount, lazy bool) error {
	return g.unmountWithin(ctx, m, lazy, busyWait)
}

// unmountWithin is unmount that retries a busy mount for up to wait (with
// backoff from 20 ms) before it reports it busy, naming its holders.
func (g *Gateway) unmountWithin(ctx context.Context, m *Mount, lazy bool, wait time.Duration) error {
	if ok, err := m.stillTop(); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("unmount %s (mount %d): %w", m.Point, m.ID, errNotTop)
	}
	umount := func() error {
		if os.Geteuid() != 0 {
			return fusermount(ctx, m.Point, lazy)
		}
		flags := unix.UMOUNT_NOFOLLOW
		if lazy {
			flags |= unix.MNT_DETACH
		}
		_, err := bounded(ctx, g, "umount "+m.Point, orDefault(g.ProbeTimeout, DefaultProbeTimeout),
			func() (struct{}, error) { return struct{}{}, unix.Unmount(m.Point, flags) }, nil)
		return err
	}
	var err error
	deadline := time.Now().Add(wait)
	for delay := 20 * time.Millisecond; ; delay = min(2*delay, 200*time.Millisecond) {
		err = umount()
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		select {
		case <-time.After(min(delay, left)):
		case <-ctx.Done():
			left = 0
		}
		if left <= 0 {
			break
		}
	}
	if errors.Is(err, unix.EBUSY) {
		hv, _ := holders(m)
		return &BusyError{Point: m.Point, Holders: hv}
	}
	if err != nil {
		return fmt.Errorf("unmount %s: %w", m.Point, err)
	}
	return nil
}

// fusermount runs "fusermount3 -u [-z] point" (or fusermount).
func fusermount(ctx context.Context, point string, lazy bool) error {
	prog := lookSystemProg("fusermount3", "fusermount")
	if prog == "" {
		return fmt.Errorf("neither fusermount3 nor fusermount found in $PATH:/bin:/usr/bin")
	}
	argv := []string{"-u"}
	if lazy {
		argv = append(argv, "-z")
	}
	out, err := exec.CommandContext(ctx, prog, append(argv, point)...).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "busy") {
			return fmt.Errorf("%s: %w", msg, unix.EBUSY)
		}
		return fmt.Errorf("%s: %w: %s", prog, err, msg)
	}
	return nil
}

// lookSystemProg returns the path of the first of names found in $PATH or,
// for restricted environments, in /bin and /usr/bin; "" if none is.
func lookSystemProg(names ...string) string {
	dirs := append(filepath.SplitList(os.Getenv("PATH")), "/bin", "/usr/bin")
	for _, name := range names {
		for _, dir := range dirs {
			path := filepath.Join(dir, name)
			if unix.Access(path, unix.X_OK) == nil {
				return path
			}
		}
	}
	return ""
}
