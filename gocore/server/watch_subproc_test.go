// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Watch clients that must be separate processes (they exit, get killed)
// are this test binary run again in a helper mode: $WCFS_WATCH_HELPER names
// the behaviour, $WCFS_WATCH_PATH is head/watch, $WCFS_WATCH_REQ the watch
// request to send first. The helper reports its progress on stdout, one word
// per line.
func init() {
	mode := os.Getenv("WCFS_WATCH_HELPER")
	if mode == "" {
		return
	}
	os.Exit(watchHelper(mode, os.Getenv("WCFS_WATCH_PATH"), os.Getenv("WCFS_WATCH_REQ")))
}

func say(word string) { fmt.Println(word) }

// sleepForever keeps the process alive (a bare select{} would be a Go
// deadlock error).
func sleepForever() {
	for {
		time.Sleep(time.Hour)
	}
}

func watchHelper(mode, path, req string) int {
	fd, err := openRetry(path, unix.O_RDWR)
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 3
	}
	switch mode {
	case "readcancel":
		// a read blocked on head/watch must not keep the process from exiting
		go func() {
			say("reading")
			unix.Read(fd, make([]byte, 100))
		}()
		time.Sleep(200 * time.Millisecond)
		return 0
	}

	// faulty clients: "<variant>" or "<variant>:ok" (wait for the watch
	// reply before the pin)
	variant, waitOK := strings.CutSuffix(mode, ":ok")
	if err := writeRetry(fd, []byte("1 "+req+"\n")); err != nil {
		fmt.Fprintln(os.Stderr, "write:", err)
		return 3
	}
	r := bufio.NewReader(fdReader(fd))
	readLine := func() string {
		line, err := r.ReadString('\n')
		if err != nil {
			fmt.Fprintln(os.Stderr, "read:", err)
			os.Exit(3)
		}
		return line
	}
	if waitOK {
		if line := readLine(); line != "1 ok\n" {
			fmt.Fprintf(os.Stderr, "watch reply: %q\n", line)
			return 3
		}
		say("watching")
	}
	if variant == "no_pin_read" {
		say("not-reading")
		sleepForever()
	}
	pin := readLine()
	say("pinned")
	stream, _, _ := strings.Cut(pin, " ")
	switch variant {
	case "no_pin_reply":
		sleepForever()
	case "stop_on_pin":
		return 1
	case "eof_pin_reply":
		unix.Close(fd)
		sleepForever()
	case "nak_pin_reply":
		writeRetry(fd, []byte(stream+" nak\n"))
		sleepForever()
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 3
}

// helperProc is a running helper.
type helperProc struct {
	cmd    *exec.Cmd
	out    *bufio.Reader
	reaped bool
}

// startHelper runs this test binary as a helper (see init). It is killed
// and reaped at the end of the test if it was not reaped before.
func startHelper(t *testing.T, mode, watchPath, req string) *helperProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "WCFS_WATCH_HELPER="+mode, "WCFS_WATCH_PATH="+watchPath, "WCFS_WATCH_REQ="+req)
	var stderr lockedBuffer
	cmd.Stderr = &stderr // a killed Go helper dumps its goroutines
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helperProc{cmd: cmd, out: bufio.NewReader(stdout)}
	t.Cleanup(func() {
		if !h.reaped {
			cmd.Process.Kill()
			cmd.Wait()
		}
		if t.Failed() {
			t.Logf("helper %s (pid %d) stderr:\n%s", mode, cmd.Process.Pid, stderr.String())
		}
	})
	return h
}

// expect waits for the helper to say word.
func (h *helperProc) expect(t *testing.T, word string) {
	t.Helper()
	line, err := h.out.ReadString('\n')
	if err != nil && err != io.EOF || strings.TrimSpace(line) != word {
		t.Fatalf("helper: got %q (%v), want %q", line, err, word)
	}
}

// wait reaps the helper, which must exit within timeout, and returns how
// it ended.
func (h *helperProc) wait(t *testing.T, timeout time.Duration) *os.ProcessState {
	t.Helper()
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, h.out)
		h.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(timeout):
		h.cmd.Process.Kill()
		<-done
		t.Errorf("helper (pid %d) did not exit within %s", h.cmd.Process.Pid, timeout)
	}
	h.reaped = true
	return h.cmd.ProcessState
}

// waitZombie waits until the helper exited without reaping it (it stays a
// zombie: the server must not count it as alive).
func (h *helperProc) waitZombie(t *testing.T, timeout time.Duration) {
	t.Helper()
	pid := h.cmd.Process.Pid
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil {
			s := string(data)
			if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && s[i+2] == 'Z' {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("helper (pid %d) did not exit within %s", pid, timeout)
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
