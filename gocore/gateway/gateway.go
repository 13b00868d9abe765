// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"wendelin.dev/wcfs/gocore/internal/keylock"
	"wendelin.dev/wcfs/gocore/internal/startlock"
	"wendelin.dev/wcfs/gocore/zurl"
)

// Environment variables read at call time from the caller's environment.
const (
	// EnvAutostart is "yes" (default) or "no": whether Join starts a server
	// when none runs and the caller did not say.
	EnvAutostart = "WENDELIN_CORE_WCFS_AUTOSTART"
	// EnvOptions holds server options (white-space separated) prepended to
	// the options of every server started or served.
	EnvOptions = "WENDELIN_CORE_WCFS_OPTIONS"
	// EnvStartTimeout bounds the wait for a spawned server's readiness: a Go
	// duration ("90s") or a number of seconds.
	EnvStartTimeout = "WENDELIN_CORE_WCFS_START_TIMEOUT"
)

// Defaults of the Gateway's timeouts.
const (
	DefaultStartTimeout = 60 * time.Second
	DefaultProbeTimeout = 10 * time.Second
	DefaultStopTimeout  = 20 * time.Second
	DefaultCloseTimeout = 5 * time.Second
)

// Gateway starts, joins and stops WCFS servers. Its exported fields are
// configuration, set before first use; the zero value of each means its
// default. A Gateway holds the per-process registry of joined servers, so a
// program normally has one.
type Gateway struct {
	// Exe is the server binary (default: "wcfs" beside the executable).
	Exe string
	// Root is the directory of mountpoints (default zurl.MountRoot).
	Root string
	// StartTimeout bounds the wait for readiness of a spawned server, unless
	// $WENDELIN_CORE_WCFS_START_TIMEOUT or the caller says otherwise.
	StartTimeout time.Duration
	// ProbeTimeout bounds every access to a mount made to classify it.
	ProbeTimeout time.Duration
	// StopTimeout is the budget of a stop whose context has no deadline.
	StopTimeout time.Duration
	// CloseTimeout bounds the wait of WCFS.Close for the server's answer
	// to the FLUSH of .wcfs/zurl (see WCFS.Close).
	CloseTimeout time.Duration
	// Log receives what the gateway does (default slog.Default()).
	Log *slog.Logger
	// ServerOutput is the stdout and stderr of spawned servers (default:
	// this process's stderr; stdout is never inherited, so that a server
	// outliving its starter does not hold the starter's stdout pipe).
	ServerOutput *os.File

	joining keylock.Map[string] // mountpoint -> lock of the slow join path

	mu       sync.Mutex
	reg      map[string]*WCFS     // mu; mountpoint -> joined WCFS
	stuck    map[string]time.Time // mu; path -> start of a probe that did not return
	serialno uint64               // mu
}

// Autostart says whether Join may start a server.
type Autostart int

const (
	// AutostartEnv follows $WENDELIN_CORE_WCFS_AUTOSTART (yes by default),
	// read at the time of the call.
	AutostartEnv Autostart = iota
	AutostartYes
	AutostartNo
)

func (g *Gateway) log() *slog.Logger {
	if g.Log != nil {
		return g.Log
	}
	return slog.Default()
}

func (g *Gateway) infof(format string, argv ...any) {
	g.log().Info(fmt.Sprintf(format, argv...))
}

func (g *Gateway) warnf(format string, argv ...any) {
	g.log().Warn(fmt.Sprintf(format, argv...))
}

func (g *Gateway) root() string {
	if g.Root != "" {
		return g.Root
	}
	return zurl.MountRoot
}

func (g *Gateway) exe() string {
	if g.Exe != "" {
		return g.Exe
	}
	if self, err := os.Executable(); err == nil {
		return filepath.Join(filepath.Dir(self), "wcfs")
	}
	return "wcfs"
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// Mountpoint returns the mountpoint of zurl under the Gateway's root. It
// creates nothing.
func (g *Gateway) Mountpoint(zurlStr string) (string, error) {
	z, err := zurl.Parse(zurlStr)
	if err != nil {
		return "", err
	}
	return g.mountpoint(z), nil
}

// mountpoint returns the mountpoint of z under the Gateway's root.
func (g *Gateway) mountpoint(z zurl.ZURL) string {
	return z.MountpointIn(g.root())
}

// MakeMountpoint returns the mountpoint of zurl and makes sure the
// directory exists, as the reference's _mntpt_4zurl does (its callers,
// wendelin.core's tests among them, rely on it): the root is checked (or
// created) as for a start, and the mountpoint directory is created if
// missing. An existing one is left as it is, be something mounted there
// or not (it is not looked into: a hung server cannot block this).
func (g *Gateway) MakeMountpoint(zurlStr string) (string, error) {
	mntpt, err := g.Mountpoint(zurlStr)
	if err != nil {
		return "", err
	}
	if err := g.ensureRoot(); err != nil {
		return "", err
	}
	if err := os.Mkdir(mntpt, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", err
	}
	return mntpt, nil
}

// lockPath is the start lock of a mountpoint.
func lockPath(mntpt string) string {
	return startlock.Path(mntpt)
}

// env is the caller's environment (Python passes os.environ, which the Go
// runtime of a shared library does not see change).
type env []string

func (e env) lookup(key string) (string, bool) {
	if e == nil {
		return os.LookupEnv(key)
	}
	for i := len(e) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(e[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

func (e env) list() []string {
	if e == nil {
		return os.Environ()
	}
	return e
}

// autostart resolves a.
func (e env) autostart(a Autostart) (bool, error) {
	switch a {
	case AutostartYes:
		return true, nil
	case AutostartNo:
		return false, nil
	}
	v, _ := e.lookup(EnvAutostart)
	switch strings.ToLower(v) {
	case "", "yes":
		return true, nil
	case "no":
		return false, nil
	}
	return false, fmt.Errorf("$%s=%q: want yes or no", EnvAutostart, v)
}

// serverOptions returns $WENDELIN_CORE_WCFS_OPTIONS followed by optv.
func (e env) serverOptions(optv []string) []string {
	v, _ := e.lookup(EnvOptions)
	return append(strings.Fields(v), optv...)
}

// DefaultAutostart says whether Join starts a server when its caller does
// not say (AutostartEnv), by $WENDELIN_CORE_WCFS_AUTOSTART of environ ("K=V"
// strings; nil: this process's environment): "yes" (any case) or unset, or
// "no"; anything else is an error naming the value. The one parser of the
// variable: the Python package asks it too.
func DefaultAutostart(environ []string) (bool, error) {
	return env(environ).autostart(AutostartEnv)
}

// ServerOptions returns the options of a server started or served with
// options optv: $WENDELIN_CORE_WCFS_OPTIONS of environ (nil: this process's
// environment), split on white space, then optv. The one parser of the
// variable: the Python package asks it too.
func ServerOptions(environ, optv []string) []string {
	return env(environ).serverOptions(optv)
}

// startTimeout returns the readiness timeout: explicit, else from the
// environment, else the Gateway's.
func (g *Gateway) startTimeout(e env, explicit time.Duration) (time.Duration, error) {
	if explicit > 0 {
		return explicit, nil
	}
	if v, ok := e.lookup(EnvStartTimeout); ok && v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			sec, err2 := strconv.ParseFloat(v, 64)
			if err2 != nil {
				return 0, fmt.Errorf("$%s=%q: want a duration such as 90s", EnvStartTimeout, v)
			}
			d = time.Duration(sec * float64(time.Second))
		}
		if d <= 0 {
			return 0, fmt.Errorf("$%s=%q: want a positive duration", EnvStartTimeout, v)
		}
		return d, nil
	}
	return orDefault(g.StartTimeout, DefaultStartTimeout), nil
}

// opError prefixes err with "wcfs: <op> <zurl>: ".
func opError(op, zurlStr string, err error) error {
	return fmt.Errorf("wcfs: %s %s: %w", op, zurlStr, err)
}

// ErrNotRunning is wrapped by the error of Join without autostart when no
// server runs.
var ErrNotRunning = errors.New("server not running")

// ErrAlreadyRunning is wrapped by the error of Start and Serve when a server
// already runs.
var ErrAlreadyRunning = errors.New("already running")

// withDefaultTimeout returns ctx with a deadline d from now unless it has one.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}
