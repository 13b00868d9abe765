// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package pybind is the Go API that gopy compiles into the CPython extension
// behind the Python package wendelin.wcfs (wendelin_wcfs/). It is a thin
// adapter: logic lives in gocore; here values are only converted to what gopy
// binds well (strings, numbers, bools, errors, pointers to structs with
// methods).
//
// Conventions:
//
//   - timeouts are float64 seconds; a value <= 0 means "the default";
//   - lists (environment, options) cross as JSON arrays of strings, one C
//     string per call (gopy slices cost one call per element);
//   - a returned error becomes a Python RuntimeError with its text, ending in
//     " [errno N]" when an errno caused it; the Python layer re-raises it with
//     the reference's exception types;
//   - every blocking call runs with the GIL released (gopy does this for every
//     call), so other Python threads run meanwhile;
//   - log records of the gateway are queued here and taken by Python
//     (TakeLog) after each call, to be emitted through the "wcfs" logger.
//
// One file per area: gateway.go (join/start/serve/stop/status); the client
// (Conn, FileH, Mapping, WatchLink) goes beside it in client.go.
package pybind

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ---- configuration ----

// Configure sets where the server binary is and, if root is not empty,
// the directory of mountpoints. The Python package calls it at import.
func Configure(exe, root string) {
	gw.Exe = exe
	gw.Root = root
}

// ---- contexts ----

// Ctx is a context that Python cancels: the Go side of a pygolang context
// (its deadline, and its cancellation forwarded by a watcher in Python), or
// of a plain timeout. Blocking calls that take a Ctx return when it is done.
type Ctx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// NewCtx returns a context that is done sec seconds from now (never if
// sec <= 0) or when Cancel is called. Python calls Cancel when the call is
// over, to release it.
func NewCtx(sec float64) *Ctx {
	ctx, cancel := timeoutCtx(sec)
	return &Ctx{ctx, cancel}
}

// Cancel cancels c. It may be called any number of times, from any thread.
func (c *Ctx) Cancel() { c.cancel() }

// context returns c's context; a nil Ctx is the background.
func (c *Ctx) context() context.Context {
	if c == nil {
		return context.Background()
	}
	return c.ctx
}

// ---- conversions ----

// timeoutCtx returns a context with the given timeout in seconds (none if
// sec <= 0).
func timeoutCtx(sec float64) (context.Context, context.CancelFunc) {
	if sec <= 0 {
		return context.WithCancel(context.Background())
	}
	return context.WithTimeout(context.Background(), seconds(sec))
}

func seconds(sec float64) time.Duration {
	if sec <= 0 {
		return 0
	}
	return time.Duration(sec * float64(time.Second))
}

// strlist decodes a JSON array of strings; "" is nil.
func strlist(what, js string) ([]string, error) {
	if js == "" {
		return nil, nil
	}
	var v []string
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		return nil, fmt.Errorf("pybind: %s: want a JSON list of strings: %w", what, err)
	}
	return v, nil
}

// pyerr appends " [errno N]" to the text of an error caused by an errno.
func pyerr(err error) error {
	var errno unix.Errno
	if err != nil && errors.As(err, &errno) {
		return fmt.Errorf("%w [errno %d]", err, int(errno))
	}
	return err
}

// ---- logging ----

// logQueue collects the gateway's log records until Python takes them.
type logQueue struct {
	mu      sync.Mutex
	records []logRecord // mu
	dropped int         // mu
}

type logRecord struct {
	Level int    `json:"level"` // Python logging level
	Msg   string `json:"msg"`
}

const maxQueuedLogs = 10000

var logs logQueue

// TakeLog returns the queued log records as a JSON array of
// {"level": <Python logging level>, "msg": ...}, or "" if there are none.
func TakeLog() string {
	logs.mu.Lock()
	rv, dropped := logs.records, logs.dropped
	logs.records, logs.dropped = nil, 0
	logs.mu.Unlock()
	if len(rv) == 0 && dropped == 0 {
		return ""
	}
	if dropped > 0 {
		rv = append(rv, logRecord{30, fmt.Sprintf("%d log records dropped (not taken in time)", dropped)})
	}
	js, _ := json.Marshal(rv)
	return string(js)
}

// queueHandler is the slog.Handler of the gateway's logger.
type queueHandler struct{ attrs []slog.Attr }

func (h queueHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h queueHandler) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	var extra []string
	add := func(a slog.Attr) bool {
		extra = append(extra, a.String())
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	if len(extra) > 0 {
		msg += " " + strings.Join(extra, " ")
	}
	level := 10 // logging.DEBUG
	switch {
	case r.Level >= slog.LevelError:
		level = 40
	case r.Level >= slog.LevelWarn:
		level = 30
	case r.Level >= slog.LevelInfo:
		level = 20
	}
	logs.mu.Lock()
	if len(logs.records) < maxQueuedLogs {
		logs.records = append(logs.records, logRecord{level, msg})
	} else {
		logs.dropped++
	}
	logs.mu.Unlock()
	return nil
}

func (h queueHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return queueHandler{append(append([]slog.Attr(nil), h.attrs...), attrs...)}
}

func (h queueHandler) WithGroup(string) slog.Handler { return h }
