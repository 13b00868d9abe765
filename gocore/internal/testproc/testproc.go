// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package testproc runs the storage servers of tests (a genuine ZEO server,
// a NEO cluster) as supervised child processes.
//
// A Proc is one child process whose output is captured and scanned line by
// line: it is ready when a line satisfies the caller's predicate (no polling
// of ports), and it failed to start when it exits or the readiness deadline
// passes first; the error then quotes the tail of its output. The child gets
// SIGKILL from the kernel if the test process dies (PR_SET_PDEATHSIG), so a
// crashed or killed test binary leaves nothing behind.
//
// Stop acts by PID only: SIGTERM (plus SIGCONT, so that a SIGSTOPped child
// sees it), a bounded wait, then SIGKILL. Kill, Pause and Resume simulate
// outages. Every method is safe to call more than once and after the child
// exited on its own.
//
// A Service is the server behind a Proc as tests see it: taken away (Stop,
// Kill, Pause) and brought back (Restart) on the same addresses, its log
// that of the process running now. zeotest's ZEO server and neotest's NEO
// cluster are Services.
package testproc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Spec says what to run and how to tell that it is ready.
type Spec struct {
	Name string   // for messages, e.g. "runzeo 127.0.0.1:5000"
	Path string   // executable
	Args []string // arguments, without argv[0]
	Env  []string // added to the test's environment
	Dir  string   // working directory ("" = the test's)

	// Ready is called with every line the child writes (stdout and
	// stderr); the first line for which it returns true makes Start
	// return. nil means ready as soon as the child runs.
	Ready func(line string) bool

	// ReadyTimeout bounds the wait for readiness (default 60 s).
	ReadyTimeout time.Duration

	// StopTimeout bounds the wait after SIGTERM before SIGKILL (default 10 s).
	StopTimeout time.Duration
}

// maxLog is how much output a Proc keeps (the tail).
const maxLog = 256 << 10

// Proc is a running (or finished) child process.
type Proc struct {
	spec Spec
	cmd  *exec.Cmd

	exited  chan struct{} // closed when the child has been reaped
	waitErr error         // valid after exited

	mu        sync.Mutex
	log       []byte // mu; tail of the output
	readyq    chan struct{}
	readyLine string // mu; the line that made the child ready
	ready     bool   // mu
}

// Start runs the child and waits until it is ready. On failure nothing is
// left running and the error names the child and quotes its output.
func Start(ctx context.Context, spec Spec) (*Proc, error) {
	if spec.ReadyTimeout == 0 {
		spec.ReadyTimeout = 60 * time.Second
	}
	if spec.StopTimeout == 0 {
		spec.StopTimeout = 10 * time.Second
	}
	p := &Proc{spec: spec, exited: make(chan struct{}), readyq: make(chan struct{})}

	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig: syscall.SIGKILL, // the test process died: take the child with it
		Setpgid:   true,            // ^C of the test run is for the test, not the child
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec.Name, err)
	}
	cmd.Stdout = pw
	cmd.Stderr = pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("%s: start: %w", spec.Name, err)
	}
	pw.Close()
	p.cmd = cmd

	scanned := make(chan struct{})
	go p.scan(pr, scanned)
	go func() {
		err := cmd.Wait()
		<-scanned // all output is in p.log before exited is closed
		p.waitErr = err
		close(p.exited)
	}()
	if spec.Ready == nil {
		p.markReady("")
	}

	timer := time.NewTimer(spec.ReadyTimeout)
	defer timer.Stop()
	var failure error
	select {
	case <-p.readyq:
		return p, nil
	case <-p.exited:
		failure = fmt.Errorf("exited before it was ready (%v)", p.waitErr)
	case <-timer.C:
		failure = fmt.Errorf("not ready after %s", spec.ReadyTimeout)
	case <-ctx.Done():
		failure = ctx.Err()
	}
	p.Kill()
	return nil, fmt.Errorf("%s: %w; output:\n%s", spec.Name, failure, p.LogTail(4096))
}

// scan copies the child's output into p.log and checks lines for readiness.
// The pipe reaches EOF when the child (and anything it spawned holding the
// pipe) has exited.
func (p *Proc) scan(r io.ReadCloser, done chan<- struct{}) {
	defer close(done)
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			p.mu.Lock()
			p.log = append(p.log, line...)
			if len(p.log) > maxLog {
				p.log = append([]byte(nil), p.log[len(p.log)-maxLog/2:]...)
			}
			p.mu.Unlock()
			line = strings.TrimRight(line, "\r\n")
			if p.spec.Ready != nil && p.spec.Ready(line) {
				p.markReady(line)
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *Proc) markReady(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ready {
		p.ready = true
		p.readyLine = line
		close(p.readyq)
	}
}

// ReadyLine returns the output line that made the child ready.
func (p *Proc) ReadyLine() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.readyLine
}

// PID returns the child's process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited is closed once the child has exited and been reaped.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Log returns the captured output (its last 256 KiB at most).
func (p *Proc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.log)
}

// LogTail returns at most the last n bytes of the captured output, from a
// line start.
func (p *Proc) LogTail(n int) string {
	s := p.Log()
	if len(s) > n {
		s = s[len(s)-n:]
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return s
}

// signal sends sig to the child unless it has already been reaped.
func (p *Proc) signal(sig syscall.Signal) error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	err := p.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: pid %d: %s: %w", p.spec.Name, p.PID(), sig, err)
	}
	return nil
}

// Pause stops the child with SIGSTOP: it keeps its sockets open but
// answers nothing (a hung server). It returns once every thread of the
// child stopped (see Suspend).
func (p *Proc) Pause() error {
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	return WaitStopped(p.PID(), suspendTimeout)
}

// Resume continues a paused child with SIGCONT.
func (p *Proc) Resume() error { return p.signal(syscall.SIGCONT) }

// Kill kills the child with SIGKILL and waits until it is reaped.
func (p *Proc) Kill() error {
	err := p.signal(syscall.SIGKILL)
	<-p.exited
	return err
}

// Stop asks the child to exit with SIGTERM and waits up to Spec.StopTimeout,
// then kills it. It returns an error if the child had to be killed or exited
// with a status other than 0 or "terminated by SIGTERM".
func (p *Proc) Stop() error {
	timeout := p.spec.StopTimeout
	select {
	case <-p.exited:
		return nil // already gone; whoever saw it exit reported it
	default:
	}
	err := p.signal(syscall.SIGTERM)
	if err == nil {
		err = p.signal(syscall.SIGCONT)
	}
	if err != nil {
		p.Kill()
		return err
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		p.Kill()
		return fmt.Errorf("%s: pid %d did not exit within %s of SIGTERM; killed", p.spec.Name, p.PID(), timeout)
	}
	if p.waitErr != nil && !terminatedBy(p.waitErr, syscall.SIGTERM) {
		return fmt.Errorf("%s: pid %d: %w; output:\n%s", p.spec.Name, p.PID(), p.waitErr, p.LogTail(2048))
	}
	return nil
}

// terminatedBy tells whether err is the exit of a process killed by sig.
func terminatedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// Service is a child process that can be taken away and started again with
// the same Spec (same addresses): a server for outage tests.
type Service struct {
	spec Spec

	// Check, if set, runs after readiness on every start; an error fails
	// the start (and kills the child).
	Check func(p *Proc) error

	mu   sync.Mutex
	proc *Proc // mu; nil while stopped
}

// NewService returns a stopped service.
func NewService(spec Spec) *Service { return &Service{spec: spec} }

// Start starts the service and waits until it is ready.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return fmt.Errorf("%s: already running as pid %d", s.spec.Name, s.proc.PID())
	}
	p, err := Start(ctx, s.spec)
	if err != nil {
		return err
	}
	if s.Check != nil {
		if err := s.Check(p); err != nil {
			p.Kill()
			return fmt.Errorf("%s: %w", s.spec.Name, err)
		}
	}
	s.proc = p
	return nil
}

// RestartTimeout bounds Restart.
const RestartTimeout = 2 * time.Minute

// Restart starts the service again on the same addresses after Stop or Kill
// and waits until it is ready (at most RestartTimeout).
func (s *Service) Restart() error {
	ctx, cancel := context.WithTimeout(context.Background(), RestartTimeout)
	defer cancel()
	return s.Start(ctx)
}

// Log returns what the running process logged so far ("" while stopped).
func (s *Service) Log() string {
	if p := s.Proc(); p != nil {
		return p.Log()
	}
	return ""
}

// Proc returns the running process, nil while stopped.
func (s *Service) Proc() *Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// PID returns the process id, 0 while stopped.
func (s *Service) PID() int {
	if p := s.Proc(); p != nil {
		return p.PID()
	}
	return 0
}

// take detaches the running process (nil while stopped).
func (s *Service) take() *Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	s.proc = nil
	return p
}

// Stop stops the service cleanly (see Proc.Stop); stopping a stopped
// service does nothing.
func (s *Service) Stop() error {
	if p := s.take(); p != nil {
		return p.Stop()
	}
	return nil
}

// Kill kills the service (a crash) and waits until it is gone.
func (s *Service) Kill() error {
	if p := s.take(); p != nil {
		return p.Kill()
	}
	return nil
}

// Pause SIGSTOPs the service: connections stay open, nothing is answered.
func (s *Service) Pause() error { return s.running((*Proc).Pause) }

// Resume SIGCONTs a paused service.
func (s *Service) Resume() error { return s.running((*Proc).Resume) }

func (s *Service) running(f func(*Proc) error) error {
	p := s.Proc()
	if p == nil {
		return fmt.Errorf("%s: not running", s.spec.Name)
	}
	return f(p)
}

// Alive tells whether process pid exists and is not a zombie (any process,
// not only a Proc: a server a test spawned by other means).
func Alive(pid int) bool {
	state, err := procState(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && state != 'Z'
}

// procState returns the state letter of a /proc stat file (the field after
// "(comm)").
func procState(path string) (byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return 0, fmt.Errorf("%s: no state in %q", path, data)
	}
	return data[i+2], nil
}

// suspendTimeout bounds the wait for a SIGSTOPped process to stop: far
// beyond any scheduling delay, it only keeps a broken test from hanging.
const suspendTimeout = 60 * time.Second

// Suspend SIGSTOPs process pid (any process, not only a Proc) and returns
// once all its threads stopped.
//
// kill(2) returning is not enough: the kernel gives a process-wide SIGSTOP
// to one thread, and the other threads stop only once that one ran and
// started the group stop. Until then a multi-threaded server (every Go
// program, a FUSE server with its reader threads) can still take a request
// and answer it, which makes a test of a "hung" server flaky on a loaded
// machine.
func Suspend(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("suspend pid %d: %w", pid, err)
	}
	return WaitStopped(pid, suspendTimeout)
}

// WaitStopped waits until every thread of process pid is stopped (state T
// or t), a zombie, or gone, for at most timeout.
func WaitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		running, err := runningThreads(pid)
		if err != nil || running == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d: %d thread(s) still running %s after SIGSTOP", pid, running, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// runningThreads counts the threads of pid that are neither stopped nor
// dead; a process that is gone has none.
func runningThreads(pid int) (int, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range tasks {
		state, err := procState(dir + "/" + t.Name() + "/stat")
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			return 0, err
		}
		switch state {
		case 'T', 't', 'Z', 'X', 'x':
		default:
			n++
		}
	}
	return n, nil
}

// FreeAddrs returns n distinct 127.0.0.1 addresses whose ports were free a
// moment ago.
func FreeAddrs(n int) ([]string, error) {
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		addrs[i] = l.Addr().String()
	}
	return addrs, nil
}

// StartOnFreePorts starts the service that newService makes for n free
// addresses and registers its Stop with t.Cleanup. A port found free may be
// taken by someone else before the service binds it: then it tries again with
// other ports.
func StartOnFreePorts(ctx context.Context, t testing.TB, n int, newService func(addrs []string) *Service) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var addrs []string
		if addrs, err = FreeAddrs(n); err != nil {
			return err
		}
		s := newService(addrs)
		if err = s.Start(ctx); err == nil {
			t.Cleanup(func() {
				if err := s.Stop(); err != nil {
					t.Errorf("%v", err)
				}
			})
			return nil
		}
		if !strings.Contains(err.Error(), "already in use") {
			break
		}
	}
	return err
}
