// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/startlock"
	"wendelin.dev/wcfs/gocore/zurl"
)

// Server is a running WCFS server: one spawned by this process (Start,
// Join with autostart), or one found running (Stop by zurl).
type Server struct {
	g     *Gateway
	zurl  zurl.ZURL
	mntpt string
	proc  *process // nil if no server process was found (it died)
	mount *Mount   // its mount, once known
	log   string   // its log file ("" if its output goes elsewhere)

	mu    sync.Mutex
	abort *os.File // mu; the FUSE connection's abort file, opened at start

	stopOnce sync.Once
	stopErr  error
}

// Zurl returns the zurl the server was started for, as given.
func (s *Server) Zurl() string { return s.zurl.String() }

// Mountpoint returns where the server is mounted.
func (s *Server) Mountpoint() string { return s.mntpt }

// Pid returns the server's process id, 0 if there is no server process.
func (s *Server) Pid() int {
	if s.proc == nil {
		return 0
	}
	return s.proc.pid
}

// LogPath returns the file the server's stdout and stderr go to, "" when
// they go elsewhere (Serve, Gateway.ServerOutput).
func (s *Server) LogPath() string { return s.log }

// Exited reports whether the server process exited.
func (s *Server) Exited() bool {
	return s.proc == nil || s.proc.hasExited()
}

// DupAbortFd returns a new descriptor (close-on-exec, owned by the caller)
// of the FUSE abort file of the server's connection (writing "1\n" to it
// aborts the connection), or -1 once the server was stopped. The descriptor
// is duplicated under the lock that Stop takes to close the file, so it
// never duplicates a closed descriptor or one reused by another open.
func (s *Server) DupAbortFd() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.abort == nil {
		return -1, nil
	}
	rc, err := s.abort.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("dup the FUSE abort file: %w", err)
	}
	nfd := -1
	cerr := rc.Control(func(fd uintptr) {
		nfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	if err = cmp.Or(cerr, err); err != nil {
		return -1, fmt.Errorf("dup the FUSE abort file: %w", err)
	}
	return nfd, nil
}

// spawnOptions say how to spawn a server.
type spawnOptions struct {
	env        env
	optv       []string      // server options (after $WENDELIN_CORE_WCFS_OPTIONS)
	timeout    time.Duration // readiness
	keep       bool          // return .wcfs/zurl open
	foreground bool          // same session and stdio as the caller (serve)
}

// spawn starts a server for zurl at mntpt and waits until it serves. The
// caller holds the start lock and made sure nothing is mounted at mntpt.
// On failure whatever was started is stopped.
func (g *Gateway) spawn(ctx context.Context, z zurl.ZURL, mntpt string, o spawnOptions) (*Server, *os.File, error) {
	if err := g.ensureRoot(); err != nil {
		return nil, nil, err
	}
	if err := checkFUSEAccess(); err != nil {
		return nil, nil, err
	}
	if err := startlock.MakeMountpoint(mntpt); err != nil {
		return nil, nil, err
	}
	nl, err := listenNotify()
	if err != nil {
		removeMountpoint(mntpt)
		return nil, nil, err
	}
	defer nl.Close()

	exe := g.exe()
	cmd := exec.Command(exe, append(o.env.serverOptions(o.optv), z.StorageURL(), mntpt)...)
	cmd.Env = childEnv(o.env.list(), nl.Addr)
	logp := ""
	if o.foreground {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := g.retireServerLog(mntpt); err != nil {
			removeMountpoint(mntpt)
			return nil, nil, err
		}
	} else {
		out := g.ServerOutput
		if out == nil {
			lf, err := g.createServerLog(mntpt)
			if err != nil {
				removeMountpoint(mntpt)
				return nil, nil, err
			}
			defer lf.Close() // the child has its own descriptor
			out, logp = lf, lf.Name()
		}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Dir = "/" // do not pin the caller's cwd
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	}
	g.infof("starting for %s ...", z)
	proc, err := startChild(cmd)
	if err != nil {
		removeMountpoint(mntpt)
		return nil, nil, fmt.Errorf("spawn server: %w", err)
	}
	nl.Start(proc.pid)
	srv := &Server{g: g, zurl: z, mntpt: mntpt, proc: proc, log: logp}

	f, err := func() (*os.File, error) {
		if err := g.waitReady(ctx, srv, nl, o.timeout); err != nil {
			return nil, err
		}
		return srv.verifyStarted(ctx, o.keep)
	}()
	if err != nil {
		// stop what was started, even if ctx is done
		sctx, cancel := context.WithTimeout(context.Background(), orDefault(g.StopTimeout, DefaultStopTimeout))
		defer cancel()
		if serr := srv.stopLocked(sctx); serr != nil {
			err = fmt.Errorf("%w; stopping it: %w", err, serr)
		}
		if logp != "" {
			err = fmt.Errorf("%w (server log: %s)", err, logp)
			g.pruneLogs(mntpt)
		}
		return nil, nil, err
	}
	g.infof("started pid%d @ %s", proc.pid, mntpt)
	return srv, f, nil
}

// progressEvery is how often a start that is not ready yet is reported.
const progressEvery = 10 * time.Second

// waitReady waits for READY=1 from the server, its exit, ctx or the timeout.
// Until then it reports every progressEvery what the server says it does
// (its STATUS=, e.g. "opening storage ...") and the last line of its log
// (e.g. the storage client's connection errors); the error of a start that
// failed or timed out says the same.
func (g *Gateway) waitReady(ctx context.Context, srv *Server, nl *notifyListener, timeout time.Duration) error {
	pid := srv.proc.pid
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	slow := time.NewTicker(min(progressEvery, timeout/2))
	defer slow.Stop()
	for {
		select {
		case <-nl.Changed():
			if nl.State().Ready {
				return nil
			}
		case <-srv.proc.exited:
			st := nl.Close() // what it said before exiting is queued: drained by Close
			msg := fmt.Sprintf("server pid%d exited with %s before it was ready", pid, srv.proc.exitStatus())
			if st.Status != "" {
				msg += ": " + st.Status
			}
			if out := srv.outputLines(); out != "" {
				msg += " (its output: " + out + ")"
			}
			if st.Errno != 0 {
				return &startError{msg, unix.Errno(st.Errno)}
			}
			return errors.New(msg)
		case <-slow.C:
			g.warnf("wcfs: start %s: server pid%d not ready after %s (start timeout %s)%s",
				srv.zurl, pid, time.Since(start).Round(time.Second), timeout, srv.progress(nl.State()))
		case <-deadline.C:
			progress := srv.progress(nl.Close()) // what it said so far, drained
			g.warnf("wcfs: start %s: server pid%d not ready within %s%s; its kernel stacks:\n%s",
				srv.zurl, pid, timeout, progress, kernelStacks(pid))
			g.warnf("-> kill -QUIT wcfs pid%d (goroutine dump to its stderr)", pid)
			srv.proc.signal(unix.SIGQUIT)
			srv.proc.wait(context.Background(), time.Second)
			return fmt.Errorf("server pid%d not ready within %s (start timeout, see $%s)%s; "+
				"its goroutine dump went to its stderr", pid, timeout, EnvStartTimeout, progress)
		case <-ctx.Done():
			return fmt.Errorf("waiting for server pid%d to be ready%s: %w", pid, srv.progress(nl.Close()), ctx.Err())
		}
	}
}

// startError is the error of a server that exited before it was ready,
// with the errno it reported: its message already says what the errno
// means (so the errno's text is not repeated), errors.Is finds the errno.
type startError struct {
	msg   string
	errno unix.Errno
}

func (e *startError) Error() string { return e.msg }
func (e *startError) Unwrap() error { return e.errno }

// progress describes what a server that is not ready yet is doing: its
// STATUS= and the last line of its log, "" if nothing is known.
func (s *Server) progress(st notifyState) string {
	var v []string
	if st.Status != "" {
		v = append(v, st.Status)
	}
	if s.log != "" {
		if tail, err := readLogTail(s.log, 1); err == nil && strings.TrimSpace(tail) != "" {
			v = append(v, "its log ends with: "+strings.TrimSpace(tail))
		}
	}
	if len(v) == 0 {
		return ""
	}
	return ": " + strings.Join(v, "; ")
}

// outputLines returns the first lines of the server's log that are not log
// records (glog lines): what programs it ran (fusermount), the Go runtime
// (a panic) or the flag package wrote, which the server's STATUS= may not
// say; "" if there are none or the output went elsewhere.
func (s *Server) outputLines() string {
	if s.log == "" {
		return ""
	}
	text, err := readLogTail(s.log, 200)
	if err != nil {
		return ""
	}
	var v []string
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || glogLine.MatchString(line) {
			continue
		}
		if v = append(v, line); len(v) == 3 {
			break
		}
	}
	return strings.Join(v, "; ")
}

// glogLine matches the header of a glog record: Lmmdd hh:mm:ss.uuuuuu.
var glogLine = regexp.MustCompile(`^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} `)

// checkFUSEAccess fails with the reason when this process could not mount
// a FUSE filesystem: a user who is not root mounts through fusermount,
// which needs read and write access to /dev/fuse (root opens it anyway).
func checkFUSEAccess() error {
	const dev = "/dev/fuse"
	if os.Geteuid() == 0 {
		if _, err := os.Stat(dev); err != nil {
			return fmt.Errorf("FUSE is not available: %w (is the fuse module loaded? in a container, is %s passed?)", err, dev)
		}
		return nil
	}
	if err := unix.Access(dev, unix.R_OK|unix.W_OK); err != nil {
		what := "FUSE is not available"
		var st unix.Stat_t
		if unix.Stat(dev, &st) == nil {
			what = fmt.Sprintf("uid %d may not use FUSE: %s is mode %o, owner uid %d, group %d", os.Geteuid(), dev, st.Mode&0o777, st.Uid, st.Gid)
		}
		return fmt.Errorf("%s: %w (mounting needs read and write access to %s)", what, &os.PathError{Op: "access", Path: dev, Err: err}, dev)
	}
	return nil
}

// verifyStarted checks a server that said it is ready: its mount is in the
// mount table as ours, .wcfs/zurl reads back the zurl, and the FUSE abort
// file opens. It returns .wcfs/zurl still open if keep.
func (s *Server) verifyStarted(ctx context.Context, keep bool) (*os.File, error) {
	m, err := topMountAt(s.mntpt)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("server pid%d reported ready, but nothing is mounted at %s", s.proc.pid, s.mntpt)
	}
	if err := m.checkOurs(s.zurl); err != nil {
		return nil, err
	}
	s.mount = m
	f, data, err := s.g.readFileBounded(ctx, s.mntpt+"/.wcfs/zurl", keep)
	if err != nil {
		return nil, err
	}
	if string(data) != s.zurl.StorageURL() {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf(".wcfs/zurl != zurl  (%q != %q)", data, s.zurl.StorageURL())
	}
	abort, err := os.OpenFile(m.AbortPath(), os.O_WRONLY, 0)
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, fmt.Errorf("open the FUSE connection's abort file: %w "+
			"(is fusectl mounted? mount -t fusectl none /sys/fs/fuse/connections)", err)
	}
	s.mu.Lock()
	s.abort = abort
	s.mu.Unlock()
	return f, nil
}

// Stop stops the server (see the package doc for the escalation) within
// ctx's deadline, StopTimeout if it has none. It runs at most once; later
// calls return the first result. It takes the start lock of the mountpoint
// so that nobody starts a server there meanwhile.
func (s *Server) Stop(ctx context.Context) error {
	return s.StopWith(ctx, StopHooks{})
}

// StopHooks let the caller of a stop take over some of its steps, as the
// reference's Server._stop(ctx, _on_wcfs_stuck, _on_fs_busy,
// _on_last_unmount_try) lets wendelin.core's tests do. Each nil hook keeps
// the default. Hooks run on the stopping goroutine with the start lock held:
// they must not start or stop a server of the same mountpoint (an unmount,
// Gateway.Unmount, is fine).
type StopHooks struct {
	// OnStuck is called when the server does not exit even after SIGKILL
	// (stuck in the kernel). Default: nothing more; the stop fails.
	OnStuck func()
	// OnBusy is called, once the server exited, with the processes that
	// still use its mount. Default: they are logged (they get ENOTCONN on
	// access once the mount is detached; clients are never killed).
	OnBusy func(holders []Holder)
	// LastUnmountTry replaces the last step for a mount still there after
	// the server exited. Default: a lazy unmount (MNT_DETACH).
	LastUnmountTry func(mntpt string) error
}

// StopWith is Stop with hooks (see StopHooks). Like Stop it runs at most
// once per Server, whichever of the two is called first.
func (s *Server) StopWith(ctx context.Context, hooks StopHooks) error {
	s.stopOnce.Do(func() {
		ctx, cancel := withDefaultTimeout(ctx, orDefault(s.g.StopTimeout, DefaultStopTimeout))
		defer cancel()
		lk := s.g.lockStop(ctx, s.mntpt, s.zurl.String())
		s.stopErr = s.stopLockedWith(ctx, hooks)
		if s.stopErr == nil {
			s.g.removeLogAfterStop(s.mntpt)
		}
		if lk != nil {
			lk.Unlock()
		}
	})
	return s.stopErr
}

// currentMount returns the server's mount if it is still the top mount at
// the mountpoint.
func (s *Server) currentMount() *Mount {
	m, err := topMountAt(s.mntpt)
	if err != nil || m == nil {
		return nil
	}
	if s.mount != nil {
		if m.ID != s.mount.ID {
			return nil // not ours to touch
		}
		return m
	}
	if m.checkOurs(s.zurl) != nil {
		return nil
	}
	return m
}

// stopLocked is Stop with the start lock held (or not needed).
func (s *Server) stopLocked(ctx context.Context) error {
	return s.stopLockedWith(ctx, StopHooks{})
}

// stopLockedWith is stopLocked with hooks.
func (s *Server) stopLockedWith(ctx context.Context, hooks StopHooks) error {
	g := s.g
	total := time.Second
	if dl, ok := ctx.Deadline(); ok {
		total = max(time.Until(dl), 0)
	}
	// share returns a fraction of the stop budget; at least 0.1s, so that
	// an expired context still gives each step a chance.
	share := func(f float64) time.Duration {
		return max(time.Duration(f*float64(total)), 100*time.Millisecond)
	}
	stepCtx := func(d time.Duration) (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), d)
	}
	pid := s.Pid()
	if s.proc != nil && !s.proc.hasExited() {
		g.infof("unmount/stop wcfs pid%d @ %s", pid, s.mntpt)
	} else {
		g.infof("unmount/stop wcfs (not running) @ %s", s.mntpt)
	}
	var errv []error

	// 1. clean unmount; on failure SIGTERM + abort the FUSE connection
	if m := s.currentMount(); m != nil {
		// clients that are closing their files right now get a moment
		// before the escalation (15% of the budget): a program stopping
		// its server at exit while its own connections are being released
		// (wendelin.core's tests do: their ZODB connections close their
		// WCFS connections from other threads at the same time)
		uctx, cancel := stepCtx(share(0.25))
		err := g.unmountWithin(uctx, m, false, share(0.15))
		cancel()
		if err != nil {
			g.warnf("%s", err)
			if s.proc != nil && !s.proc.hasExited() {
				g.warnf("-> kill -TERM wcfs pid%d", pid)
				s.proc.signal(unix.SIGTERM)
			}
			g.warnf("-> abort FUSE connection %d", m.Minor)
			if aerr := s.abortConn(m); aerr != nil {
				errv = append(errv, aerr)
			}
		}
	}

	// 2. wait for the server to exit; SIGQUIT (goroutine dump); SIGKILL
	if s.proc != nil {
		if !s.proc.wait(context.Background(), share(0.4)) {
			g.warnf("wcfs pid%d does not exit; its kernel stacks:\n%s", pid, kernelStacks(pid))
			g.warnf("-> kill -QUIT wcfs pid%d", pid)
			s.proc.signal(unix.SIGQUIT)
			if !s.proc.wait(context.Background(), share(0.2)) {
				g.warnf("wcfs pid%d does not exit (after SIGQUIT)", pid)
				g.warnf("-> kill -KILL wcfs pid%d", pid)
				s.proc.signal(unix.SIGKILL)
				if !s.proc.wait(context.Background(), share(0.2)) {
					errv = append(errv, fmt.Errorf("server pid%d does not exit even after SIGKILL "+
						"(stuck in the kernel?); its kernel stacks:\n%s", pid, kernelStacks(pid)))
					if hooks.OnStuck != nil {
						hooks.OnStuck()
					}
				}
			}
		}
		s.proc.release()
	}
	s.mu.Lock()
	if s.abort != nil {
		s.abort.Close()
		s.abort = nil
	}
	s.mu.Unlock()

	// 3. detach what is still mounted: its users get ENOTCONN on access
	if m := s.currentMount(); m != nil {
		if hooks.OnBusy != nil { // (who they are was logged by step 1)
			hv, err := holders(m)
			if err != nil {
				g.warnf("%s: %s", m.Point, err)
			}
			if len(hv) > 0 {
				hooks.OnBusy(hv)
			}
		}
		g.warnf("last unmount try")
		if hooks.LastUnmountTry != nil {
			if err := hooks.LastUnmountTry(m.Point); err != nil {
				errv = append(errv, err)
			}
		} else {
			g.warnf("-> unmount -z %s", m.Point)
			uctx, cancel := stepCtx(share(0.1))
			if err := g.unmount(uctx, m, true); err != nil {
				errv = append(errv, err)
			}
			cancel()
		}
	}

	// 4. remove the mountpoint directory, unless something is mounted there
	if top, err := topMountAt(s.mntpt); err != nil {
		errv = append(errv, err)
	} else if top == nil {
		if err := removeMountpoint(s.mntpt); err != nil {
			errv = append(errv, err)
		}
	} else if s.mount == nil || top.ID != s.mount.ID {
		g.infof("%s: another mount is there now (%s); leaving it", s.mntpt, top)
	} else {
		errv = append(errv, fmt.Errorf("%s is still mounted", s.mntpt))
	}

	if err := errors.Join(errv...); err != nil {
		if _, e := os.Lstat(logPath(s.mntpt)); e == nil {
			err = fmt.Errorf("%w (server log: %s)", err, logPath(s.mntpt))
		}
		return opError("stop", s.zurl.String(), err)
	}
	return nil
}

// abortConn aborts the FUSE connection of m: every pending and future
// request fails with ENOTCONN and the server's /dev/fuse reads fail.
func (s *Server) abortConn(m *Mount) error {
	s.mu.Lock()
	f := s.abort
	s.mu.Unlock()
	if f == nil {
		var err error
		f, err = os.OpenFile(m.AbortPath(), os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("abort FUSE connection: %w", err)
		}
		defer f.Close()
	}
	if _, err := f.Write([]byte("1\n")); err != nil {
		return fmt.Errorf("abort FUSE connection %d: %w", m.Minor, err)
	}
	return nil
}

// StuckDump describes the server and its clients for diagnosing a hang:
// the kernel stacks of the server's threads, and the processes using its
// mount with what they use and their kernel stacks. It never touches the
// mount.
func (s *Server) StuckDump() string {
	var b strings.Builder
	if s.proc != nil {
		fmt.Fprintf(&b, "wcfs server %s:\n%s", describePid(s.proc.pid), kernelStacks(s.proc.pid))
	} else {
		b.WriteString("wcfs server: no process\n")
	}
	m := s.currentMount()
	if m == nil {
		fmt.Fprintf(&b, "nothing of ours mounted at %s\n", s.mntpt)
		return b.String()
	}
	hv, err := holders(m)
	if err != nil {
		fmt.Fprintf(&b, "clients of %s: %s\n", m.Point, err)
	}
	fmt.Fprintf(&b, "clients of %s: %d\n", m, len(hv))
	for _, h := range hv {
		b.WriteString(h.String() + "\n")
		b.WriteString(kernelStacks(h.Pid))
	}
	return b.String()
}
