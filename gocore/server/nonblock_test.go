// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Reads of the streams head/watch and .wcfs/debug/zhead honour O_NONBLOCK,
// given at open or set later with fcntl: EAGAIN when there is nothing to
// read, what is there otherwise, EOF once the stream ended.
func TestStreamNonBlocking(t *testing.T) {
	t.Parallel()
	tf := newTFile(t, 4096, "-debug")

	// readNB reads fd once; a read that blocks fails the test after
	// unblock made it return
	readNB := func(what string, fd int, unblock func()) (string, error) {
		t.Helper()
		type result struct {
			data string
			err  error
		}
		done := make(chan result, 1)
		go func() {
			buf := make([]byte, 4096)
			var n int
			err := retryEINTR(func() (err error) {
				n, err = unix.Read(fd, buf)
				return err
			})
			done <- result{string(buf[:max(n, 0)]), err}
		}()
		select {
		case r := <-done:
			return r.data, r.err
		case <-time.After(time.Minute):
			unblock()
			<-done
			t.Fatalf("%s: a non-blocking read blocked", what)
			return "", nil
		}
	}
	// readUntil retries readNB after EAGAIN until it returns data or EOF
	readUntil := func(what string, fd int, unblock func()) string {
		t.Helper()
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			data, err := readNB(what, fd, unblock)
			if !errors.Is(err, unix.EAGAIN) {
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				return data
			}
		}
		t.Fatalf("%s: nothing to read after a minute", what)
		return ""
	}

	// head/watch, O_NONBLOCK at open; a bad frame makes the server reply
	// and close the link
	watch := tf.srv.Path("head", "watch")
	fd, err := unix.Open(watch, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	const bad = "zzz hello\n"
	unblock := func() { unix.Write(fd, []byte(bad)) }
	if _, err := readNB("head/watch", fd, unblock); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("head/watch: non-blocking read of an idle link: %v, want EAGAIN", err)
	}
	if _, err := unix.Write(fd, []byte(bad)); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("0 error: invalid frame: %q (invalid stream)\n", bad)
	if got := readUntil("head/watch", fd, unblock); got != want {
		t.Errorf("head/watch: read %q, want %q", got, want)
	}
	if got := readUntil("head/watch", fd, unblock); got != "" {
		t.Errorf("head/watch: read after the server closed the link: %q; want EOF", got)
	}

	// head/watch, O_NONBLOCK set with fcntl, and cleared again
	fd2, err := unix.Open(watch, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd2)
	unblock2 := func() { unix.Write(fd2, []byte(bad)) }
	if err := unix.SetNonblock(fd2, true); err != nil {
		t.Fatal(err)
	}
	if _, err := readNB("head/watch (fcntl)", fd2, unblock2); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("head/watch (fcntl): non-blocking read of an idle link: %v, want EAGAIN", err)
	}
	if err := unix.SetNonblock(fd2, false); err != nil {
		t.Fatal(err)
	}
	unblock2()
	if got, err := readNB("head/watch (blocking again)", fd2, func() {}); err != nil || got != want {
		t.Errorf("head/watch (blocking again): read %q, %v; want %q", got, err, want)
	}

	// .wcfs/debug/zhead: one line per commit
	zfd, err := unix.Open(tf.srv.Path(".wcfs", "debug", "zhead"), unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(zfd)
	zunblock := func() { tf.commit(0) }
	if _, err := readNB("zhead", zfd, zunblock); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("zhead: non-blocking read with no commit: %v, want EAGAIN", err)
	}
	at1 := tf.commit(0)
	if got := readUntil("zhead", zfd, zunblock); got != at1.String()+"\n" {
		t.Errorf("zhead: read %q, want %q", got, at1.String()+"\n")
	}
	if _, err := readNB("zhead", zfd, zunblock); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("zhead: non-blocking read after the line: %v, want EAGAIN", err)
	}
}
