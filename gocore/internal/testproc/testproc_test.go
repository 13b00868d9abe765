// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package testproc

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func sh(script string, ready string) Spec {
	s := Spec{Name: "sh", Path: "/bin/sh", Args: []string{"-c", script}, ReadyTimeout: 5 * time.Second, StopTimeout: time.Second}
	if ready != "" {
		s.Ready = func(line string) bool { return line == ready }
	}
	return s
}

func TestReadyAndStop(t *testing.T) {
	p, err := Start(context.Background(), sh("echo noise; echo up; exec sleep 60", "up"))
	if err != nil {
		t.Fatal(err)
	}
	if p.ReadyLine() != "up" {
		t.Errorf("ready line %q", p.ReadyLine())
	}
	if err := p.Pause(); err != nil {
		t.Fatal(err)
	}
	// a stopped child still gets SIGTERM (Stop adds SIGCONT)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if Alive(p.PID()) {
		t.Fatalf("pid %d still there", p.PID())
	}
	if !strings.Contains(p.Log(), "noise\nup\n") {
		t.Errorf("log %q", p.Log())
	}
	if err := p.Stop(); err != nil { // again: nothing to do
		t.Fatal(err)
	}
}

func TestExitBeforeReady(t *testing.T) {
	_, err := Start(context.Background(), sh("echo cannot bind >&2; exit 3", "up"))
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "cannot bind") {
		t.Fatalf("error %v: want exit status and the child's output", err)
	}
}

func TestNotReadyInTime(t *testing.T) {
	spec := sh("echo $$; exec sleep 60", "up")
	spec.ReadyTimeout = 200 * time.Millisecond
	var pid string
	spec.Ready = func(line string) bool { pid = line; return false }
	_, err := Start(context.Background(), spec)
	if err == nil || !strings.Contains(err.Error(), "not ready after") {
		t.Fatalf("error %v", err)
	}
	var n int
	for _, c := range pid {
		n = n*10 + int(c-'0')
	}
	if n == 0 || Alive(n) {
		t.Fatalf("child %q left running", pid)
	}
}

func TestStopEscalatesToKill(t *testing.T) {
	p, err := Start(context.Background(), sh("trap '' TERM; echo up; while :; do sleep 0.05; done", "up"))
	if err != nil {
		t.Fatal(err)
	}
	err = p.Stop()
	if err == nil || !strings.Contains(err.Error(), "did not exit") {
		t.Fatalf("error %v: want 'did not exit ... killed'", err)
	}
	if Alive(p.PID()) {
		t.Fatalf("pid %d still there", p.PID())
	}
}

// A service comes back after a crash (Restart), its log that of the process
// running now.
func TestServiceRestart(t *testing.T) {
	s := NewService(sh("echo pid $$; echo up; exec sleep 60", "up"))
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		start := func() error { return s.Start(ctx) }
		if i > 0 {
			start = s.Restart
		}
		if err := start(); err != nil {
			t.Fatal(err)
		}
		if err := s.Start(ctx); err == nil {
			t.Fatal("second Start of a running service succeeded")
		}
		pid := s.PID()
		if want := fmt.Sprintf("pid %d\nup\n", pid); s.Log() != want {
			t.Errorf("start %d: log %q, want %q", i, s.Log(), want)
		}
		if err := s.Kill(); err != nil {
			t.Fatal(err)
		}
		if Alive(pid) || s.PID() != 0 {
			t.Fatalf("pid %d after Kill", pid)
		}
		if s.Log() != "" {
			t.Errorf("log of a stopped service: %q", s.Log())
		}
	}
	if err := s.Pause(); err == nil {
		t.Fatal("Pause of a stopped service succeeded")
	}
}

// Alive: this process is, a child that exited is not, before it is reaped
// (a zombie) and after.
func TestAlive(t *testing.T) {
	if !Alive(os.Getpid()) {
		t.Fatal("this process is not alive")
	}
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	var info unix.Siginfo
	// wait for the exit without reaping: the child stays a zombie
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if Alive(pid) {
		t.Errorf("zombie %d is alive", pid)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if Alive(pid) {
		t.Errorf("reaped %d is alive", pid)
	}
}

// Suspend returns once every thread of a busy multi-threaded process
// stopped: none runs any more, and the process's CPU time stays still.
func TestSuspendStopsEveryThread(t *testing.T) {
	script := "import threading\n" +
		"def spin():\n" +
		"    while True: pass\n" +
		"for _ in range(4): threading.Thread(target=spin, daemon=True).start()\n" +
		"print('up', flush=True)\n" +
		"threading.Event().wait()\n"
	p, err := Start(context.Background(), Spec{Name: "spinner", Path: "python3", Args: []string{"-c", script},
		Ready: func(line string) bool { return line == "up" }})
	if err != nil {
		t.Skipf("python3: %v", err)
	}
	defer p.Stop()
	if err := Suspend(p.PID()); err != nil {
		t.Fatal(err)
	}
	if n, err := runningThreads(p.PID()); err != nil || n != 0 {
		t.Fatalf("after Suspend: %d thread(s) running (%v)", n, err)
	}
	cpu := func() string {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID()))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
		return f[11] + "+" + f[12] // utime, stime
	}
	before := cpu()
	time.Sleep(100 * time.Millisecond)
	if after := cpu(); after != before {
		t.Errorf("CPU time went on after Suspend: %s -> %s", before, after)
	}
}
