// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

// Package wcfstest runs real WCFS servers for Go tests.
//
// The wcfs binary is built once per test binary (with -race when the test
// binary has it; $WCFS_TEST_BIN overrides), by Run before any test runs, and
// spawned as a subprocess on a fresh mountpoint: a test never serves and
// accesses a FUSE mount from the same process. Building first matters: a
// test that commits and then starts a server expects pins to the revisions
// of those commits, while a server keeps the history of the last minute
// only (older changes are reported as of the history's tail), and the first
// -race build on a fresh machine takes minutes. Start refuses to run in a
// test binary whose TestMain did not build first.
//
// Start waits for the server's readiness through the sd_notify
// protocol (the same the gateway uses) and registers a cleanup that always
// runs, even when the test fails: stop the server by its PID (SIGTERM, then
// abort of the FUSE connection and SIGKILL if it does not exit), unmount
// what is left (lazily as a last resort), remove the mountpoint.
//
//	func TestMain(m *testing.M) { wcfstest.Main(m) } // removes the build
//
//	srv := wcfstest.Start(t, zurl, "-debug")
//	data, err := os.ReadFile(srv.Path("head", "at"))
package wcfstest

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"wendelin.dev/wcfs/gocore/internal/testenv"
	"wendelin.dev/wcfs/gocore/internal/testproc"
)

// Timeouts (generous: servers built with -race start slowly on 2 cores).
var (
	ReadyTimeout = 2 * time.Minute
	StopTimeout  = 30 * time.Second
)

// Race tells whether Binary builds servers with the race detector (as the
// test binary): their memory is several times larger.
const Race = raceEnabled

// ---- building ----

var build struct {
	once  sync.Once
	dir   string
	bin   string
	err   error
	early bool // built (or tried) by Run, before the tests ran
}

// Binary returns the wcfs binary to test, building it on first use (Run
// builds it before the tests run).
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce()
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// buildOnce builds the binary the first time it is called.
func buildOnce() {
	build.once.Do(func() {
		if bin := os.Getenv("WCFS_TEST_BIN"); bin != "" {
			build.bin = bin
			return
		}
		sweepStale()
		build.dir, build.err = os.MkdirTemp("", fmt.Sprintf("wcfstest-bin-%d-", os.Getpid()))
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "wcfs")
		var flags []string
		if raceEnabled {
			flags = append(flags, "-race")
		}
		if err := testenv.GoBuild(build.bin, "./gocore/cmd/wcfs", flags...); err != nil {
			build.err = fmt.Errorf("wcfstest: %w", err)
		}
	})
}

// Main builds the binary, runs the tests, removes the build and exits.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run builds the binary (a failure is reported by every test that needs
// it), runs the tests, removes the build and returns the exit code, for a
// TestMain with more cleanup to do. Nothing is built when the test binary
// only lists its tests.
func Run(m *testing.M) int {
	if !flag.Parsed() {
		flag.Parse()
	}
	if f := flag.Lookup("test.list"); f == nil || f.Value.String() == "" {
		buildOnce()
		build.early = true
	}
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	return code
}

// sweepStale removes what test processes that died without cleaning up
// (killed, test timeout) left in the temporary directory: their builds, and
// their mountpoints that are no longer mounted (never a mounted one).
func sweepStale() {
	for _, kind := range []string{"bin", "mnt"} {
		paths, _ := filepath.Glob(filepath.Join(os.TempDir(), "wcfstest-"+kind+"-*-*"))
		for _, path := range paths {
			pidStr, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(path), "wcfstest-"+kind+"-"), "-")
			pid, err := strconv.Atoi(pidStr)
			if err != nil || pid == os.Getpid() || testproc.Alive(pid) {
				continue
			}
			switch {
			case kind == "bin":
				os.RemoveAll(path)
			case !IsMounted(path):
				os.Remove(path) // an empty directory only
			}
		}
	}
}

// ---- running ----

// Server is a running wcfs process serving a mount.
type Server struct {
	ZURL  string
	Mnt   string // mountpoint (absolute)
	PID   int
	Ready map[string]string // the READY notification's assignments

	cmd    *exec.Cmd
	logf   *os.File
	exited chan struct{} // closed when the process was reaped
	state  *os.ProcessState
}

// StartError is a startup failure of the server.
type StartError struct {
	ExitCode int    // -1: killed (it did not exit by itself)
	Status   string // STATUS= it sent, "" if none
	Errno    int    // ERRNO= it sent, 0 if none
	Stderr   string // its output
	Reason   string // what the harness saw
}

func (e *StartError) Error() string {
	return fmt.Sprintf("wcfs did not start: %s (exit code %d, status %q, errno %d)\n%s",
		e.Reason, e.ExitCode, e.Status, e.Errno, e.Stderr)
}

// Start starts wcfs on zurl with extra flags args (-logtostderr is always
// given) on a new mountpoint, waits until it is ready and fails the test
// otherwise. The server is stopped when the test ends.
func Start(t testing.TB, zurl string, args ...string) *Server {
	t.Helper()
	s, err := StartErr(t, zurl, args...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// StartErr is Start returning the startup failure (*StartError), after
// checking that nothing is left mounted.
func StartErr(t testing.TB, zurl string, args ...string) (*Server, error) {
	t.Helper()
	bin := Binary(t)
	mnt, err := os.MkdirTemp("", fmt.Sprintf("wcfstest-mnt-%d-", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	return startAt(t, bin, zurl, mnt, args, true)
}

// StartAt is StartErr with a given mountpoint (which the cleanup does not
// remove), for tests of bad mountpoints.
func StartAt(t testing.TB, zurl, mnt string, args ...string) (*Server, error) {
	t.Helper()
	return startAt(t, Binary(t), zurl, mnt, args, true)
}

// StartOther is StartErr for another server binary bin that speaks no
// sd_notify (the reference wcfs, for benchmarks side by side): it is ready
// once its mount shows in the mount table. The cleanup is the same.
func StartOther(t testing.TB, bin, zurl string, args ...string) (*Server, error) {
	t.Helper()
	mnt, err := os.MkdirTemp("", fmt.Sprintf("wcfstest-mnt-%d-", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	return startAt(t, bin, zurl, mnt, args, false)
}

// startAt starts bin and waits for its readiness: READY=1 through
// sd_notify, else (!notify) its mount in the mount table.
func startAt(t testing.TB, bin, zurl, mnt string, args []string, notify bool) (*Server, error) {
	t.Helper()
	if !build.early {
		// the test's data may be older than the build: past the server's
		// history window when the build was slow
		t.Fatal("wcfstest: the server was built after the tests began: TestMain must call wcfstest.Run or Main")
	}
	owned := strings.HasPrefix(filepath.Base(mnt), "wcfstest-mnt-")
	sockDir, err := os.MkdirTemp("", "wcfsn")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sockPath := filepath.Join(sockDir, "n")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	logf, err := os.CreateTemp("", "wcfstest-log-")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(logf.Name()) // unlinked: gone with the last close

	s := &Server{ZURL: zurl, Mnt: mnt, logf: logf, exited: make(chan struct{})}
	argv := append([]string{"-logtostderr"}, args...)
	argv = append(argv, zurl, mnt)
	s.cmd = exec.Command(bin, argv...)
	s.cmd.Stdout = logf
	s.cmd.Stderr = logf
	s.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath, "GORACE=halt_on_error=1")
	// its own process group (kill takes its children too); SIGTERM when
	// the test process dies (test timeout panic: no cleanup runs). The
	// signal comes when the thread that forked dies: keep it locked.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	runtime.LockOSThread()
	err = s.cmd.Start()
	runtime.UnlockOSThread()
	if err != nil {
		t.Fatal(err)
	}
	s.PID = s.cmd.Process.Pid
	go func() {
		s.cmd.Wait()
		s.state = s.cmd.ProcessState
		close(s.exited)
	}()
	t.Cleanup(func() { s.cleanup(t, owned) })

	// wait for READY=1, a failure status, the process exit, or timeout
	notes := make(chan map[string]string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				close(notes)
				return
			}
			notes <- parseNotify(buf[:n])
		}
	}()
	var status string
	var errnoN int
	fail := func(reason string) error {
		code := -1
		select {
		case <-s.exited:
		case <-time.After(StopTimeout):
			s.kill(t)
		}
		if s.state != nil && s.state.Exited() {
			code = s.state.ExitCode()
		}
		return &StartError{ExitCode: code, Status: status, Errno: errnoN, Stderr: s.Log(), Reason: reason}
	}
	timeout := time.After(ReadyTimeout)
	var poll <-chan time.Time // !notify: look for the mount
	if !notify {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		poll = tick.C
	}
	for {
		select {
		case <-poll:
			if IsMounted(mnt) {
				s.Ready = map[string]string{}
				return s, nil
			}
		case kv, ok := <-notes:
			if !ok {
				return nil, fail("notify socket closed")
			}
			if v, ok := kv["STATUS"]; ok {
				status = v
			}
			if v, ok := kv["ERRNO"]; ok {
				errnoN, _ = strconv.Atoi(v)
			}
			if kv["READY"] == "1" {
				s.Ready = kv
				if pid, _ := strconv.Atoi(kv["MAINPID"]); pid != s.PID {
					return nil, fmt.Errorf("wcfs: READY with MAINPID=%q, want %d", kv["MAINPID"], s.PID)
				}
				if !IsMounted(mnt) {
					return nil, fmt.Errorf("wcfs: READY but %s is not a mountpoint", mnt)
				}
				return s, nil
			}
		case <-s.exited:
			// take notifications sent right before exiting
		drain:
			for {
				select {
				case kv, ok := <-notes:
					if !ok {
						break drain
					}
					if v, ok := kv["STATUS"]; ok {
						status = v
					}
					if v, ok := kv["ERRNO"]; ok {
						errnoN, _ = strconv.Atoi(v)
					}
				case <-time.After(100 * time.Millisecond):
					break drain
				}
			}
			return nil, fail("exited")
		case <-timeout:
			return nil, fail(fmt.Sprintf("not ready after %s", ReadyTimeout))
		}
	}
}

// parseNotify parses one sd_notify datagram (newline-separated KEY=VALUE).
func parseNotify(b []byte) map[string]string {
	kv := make(map[string]string)
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[k] = v
		}
	}
	return kv
}

// Path returns the path of rel (slash-separated elements) in the mount.
func (s *Server) Path(rel ...string) string {
	return filepath.Join(append([]string{s.Mnt}, rel...)...)
}

// Log returns the server's output so far.
func (s *Server) Log() string {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/self/fd/%d", s.logf.Fd()))
	return string(data)
}

// Exited returns a channel closed when the server process has exited.
func (s *Server) Exited() <-chan struct{} { return s.exited }

// ExitCode returns the exit code once the process exited (-1: by signal).
func (s *Server) ExitCode() int {
	<-s.exited
	return s.state.ExitCode()
}

// Signal sends sig to the server process.
func (s *Server) Signal(sig syscall.Signal) error {
	return syscall.Kill(s.PID, sig)
}

// Stop stops the server with SIGTERM and returns an error unless it exits
// with code 0 within StopTimeout, leaving no mount.
func (s *Server) Stop() error {
	if err := s.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	select {
	case <-s.exited:
	case <-time.After(StopTimeout):
		return fmt.Errorf("wcfs (pid %d) did not exit within %s after SIGTERM", s.PID, StopTimeout)
	}
	if code := s.state.ExitCode(); code != 0 {
		return fmt.Errorf("wcfs exited with code %d (%s)", code, s.state)
	}
	if IsMounted(s.Mnt) {
		return fmt.Errorf("wcfs exited but %s is still mounted", s.Mnt)
	}
	return nil
}

// WaitExit waits up to timeout for the server to exit by itself and
// returns its exit code.
func (s *Server) WaitExit(timeout time.Duration) (int, error) {
	select {
	case <-s.exited:
		return s.state.ExitCode(), nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("wcfs (pid %d) still running after %s", s.PID, timeout)
	}
}

// Kill dumps the server's goroutines into its log (SIGQUIT), aborts the
// FUSE connection and kills the process group: for a server that crashed
// and left its mount hung (its threads waiting on it), or does not exit.
// The cleanup still unmounts and removes the mountpoint.
func (s *Server) Kill(t testing.TB) { s.kill(t) }

func (s *Server) kill(t testing.TB) {
	if s.Signal(syscall.SIGQUIT) == nil {
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
		}
	}
	if err := s.Abort(); err != nil {
		t.Logf("wcfstest: %v", err)
	}
	syscall.Kill(-s.PID, syscall.SIGKILL) // its own process group
	select {
	case <-s.exited:
	case <-time.After(StopTimeout):
		t.Errorf("wcfstest: wcfs (pid %d) did not die after SIGKILL", s.PID)
	}
}

// Abort aborts the FUSE connection of the server's mount (if mounted):
// every request waiting for the server fails, the server's reads of
// /dev/fuse fail, the mount stays until unmounted.
func (s *Server) Abort() error {
	dev, ok := mountDev(s.Mnt)
	if !ok {
		return nil
	}
	abort := fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", dev)
	if err := os.WriteFile(abort, []byte("1"), 0); err != nil {
		return fmt.Errorf("abort FUSE connection: %w", err)
	}
	return nil
}

// cleanup stops the server and removes what it left, always.
func (s *Server) cleanup(t testing.TB, removeMnt bool) {
	select {
	case <-s.exited:
	default:
		syscall.Kill(s.PID, syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(StopTimeout):
			t.Errorf("wcfstest: wcfs (pid %d) did not exit on SIGTERM: aborting and killing it", s.PID)
			s.kill(t)
		}
	}
	for i := 0; IsMounted(s.Mnt) && i < 50; i++ {
		if i == 0 {
			t.Errorf("wcfstest: %s still mounted after the server exited", s.Mnt)
		}
		if err := unix.Unmount(s.Mnt, 0); err != nil {
			unix.Unmount(s.Mnt, unix.MNT_DETACH)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if removeMnt {
		if err := os.Remove(s.Mnt); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("wcfstest: remove mountpoint: %v", err)
		}
	}
	if t.Failed() {
		n := 200
		if os.Getenv("WCFSTEST_FULLLOG") != "" {
			n = math.MaxInt
		}
		t.Logf("wcfs (pid %d) output:\n%s", s.PID, tail(s.Log(), n))
	}
	s.logf.Close()
}

func tail(s string, nlines int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > nlines {
		lines = append([]string{fmt.Sprintf("... (%d lines skipped)\n", len(lines)-nlines)}, lines[len(lines)-nlines:]...)
	}
	return strings.Join(lines, "")
}

// IsMounted tells whether mnt is a mountpoint (from the mount table,
// without touching the mount).
func IsMounted(mnt string) bool {
	_, ok := mountDev(mnt)
	return ok
}

// mountDev returns the minor device number of the mount at mnt (the FUSE
// connection id).
func mountDev(mnt string) (int, bool) {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mnt))
	if err != nil || len(infos) == 0 {
		return 0, false
	}
	return infos[len(infos)-1].Minor, true
}

// MountEntry returns the mount table entry of mnt (source, fstype), ok=false
// when not mounted.
func MountEntry(mnt string) (source, fstype string, ok bool) {
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(mnt))
	if err != nil || len(infos) == 0 {
		return "", "", false
	}
	mi := infos[len(infos)-1]
	return mi.Source, mi.FSType, true
}
