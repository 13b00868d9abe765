// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// NotRespondingError is returned when a filesystem access did not complete
// within its time bound: the server hangs (or is very slow).
type NotRespondingError struct {
	Path    string
	Timeout time.Duration
	Since   time.Time // for an access still pending from an earlier probe
}

func (e *NotRespondingError) Error() string {
	if !e.Since.IsZero() {
		return fmt.Sprintf("%s: no answer since %s (an earlier access is still pending): the server might be stuck",
			e.Path, e.Since.Format(time.TimeOnly))
	}
	return fmt.Sprintf("%s: no answer within %s: the server might be stuck", e.Path, e.Timeout)
}

// isDeadFUSE reports whether err is what accesses to a FUSE mount whose
// server died or whose connection was aborted give.
func isDeadFUSE(err error) bool {
	return errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED)
}

// bounded runs access in its own goroutine and waits at most timeout (or
// until ctx is done) for it. An access that does not return in time is left
// running: a syscall blocked on a hung FUSE server cannot be interrupted. It
// finishes when the server answers or its connection is aborted; then
// release(result) disposes of what it produced. While it is pending, further
// bounded accesses to the same path fail at once instead of piling up
// blocked threads.
func bounded[T any](ctx context.Context, g *Gateway, path string, timeout time.Duration,
	access func() (T, error), release func(T)) (T, error) {
	var zero T
	g.mu.Lock()
	if since, ok := g.stuck[path]; ok {
		g.mu.Unlock()
		return zero, &NotRespondingError{Path: path, Since: since}
	}
	g.mu.Unlock()

	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	abandoned := make(chan struct{})
	start := time.Now()
	go func() {
		v, err := access()
		select {
		case done <- result{v, err}:
		case <-abandoned:
			if err == nil && release != nil {
				release(v)
			}
			g.mu.Lock()
			delete(g.stuck, path)
			g.mu.Unlock()
		}
	}()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case r := <-done:
		return r.v, r.err
	case <-timer.C:
		err = &NotRespondingError{Path: path, Timeout: timeout}
	case <-ctx.Done():
		err = ctx.Err()
	}
	// the access may have completed right now; prefer its result
	select {
	case r := <-done:
		return r.v, r.err
	default:
	}
	g.mu.Lock()
	if g.stuck == nil {
		g.stuck = map[string]time.Time{}
	}
	g.stuck[path] = start
	g.mu.Unlock()
	close(abandoned)
	return zero, err
}

// readFileBounded opens path, reads it (up to 64 KiB) and, if keep, returns
// the still open file, all bounded by timeout.
func (g *Gateway) readFileBounded(ctx context.Context, path string, keep bool) (*os.File, []byte, error) {
	type opened struct {
		f    *os.File
		data []byte
	}
	r, err := bounded(ctx, g, path, orDefault(g.ProbeTimeout, DefaultProbeTimeout),
		func() (opened, error) {
			f, err := os.Open(path)
			if err != nil {
				return opened{}, err
			}
			data, err := io.ReadAll(io.LimitReader(f, 64<<10))
			if err != nil || !keep {
				f.Close()
				return opened{nil, data}, err
			}
			return opened{f, data}, nil
		},
		func(o opened) {
			if o.f != nil {
				o.f.Close()
			}
		})
	return r.f, r.data, err
}

// statBounded stats path, bounded by timeout.
func (g *Gateway) statBounded(ctx context.Context, path string) (*unix.Stat_t, error) {
	return bounded(ctx, g, path, orDefault(g.ProbeTimeout, DefaultProbeTimeout),
		func() (*unix.Stat_t, error) {
			var st unix.Stat_t
			if err := unix.Stat(path, &st); err != nil {
				return nil, &os.PathError{Op: "stat", Path: path, Err: err}
			}
			return &st, nil
		}, nil)
}
