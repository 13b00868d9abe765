// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// notifyState is what a child reported through the sd_notify protocol.
type notifyState struct {
	Ready  bool
	Status string // last STATUS=
	Errno  int    // last ERRNO=, 0 if none
}

// notifyListener receives sd_notify datagrams from one child process on an
// abstract unix datagram socket (its address goes to the child as
// $NOTIFY_SOCKET). Datagrams from other processes are dropped: the kernel
// attaches the sender's credentials (SO_PASSCRED).
//
// Reading happens in one goroutine on a blocking socket. Close shuts the
// socket down for reading, which makes the reader first drain the datagrams
// already queued and then see EOF, so that a STATUS= sent by a child right
// before it exited is never lost.
type notifyListener struct {
	Addr string // "@..." (abstract namespace)

	fd        int
	pid       int // accepted sender; set before reading starts
	changed   chan struct{}
	eof       chan struct{}
	closeOnce sync.Once

	mu    sync.Mutex
	state notifyState // mu
}

func listenNotify() (*notifyListener, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	addr := fmt.Sprintf("@wcfs-notify/%d/%d/%s", os.Geteuid(), os.Getpid(), hex.EncodeToString(rnd[:]))
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: addr}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("notify socket %s: %w", addr, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("notify socket: SO_PASSCRED: %w", err)
	}
	return &notifyListener{Addr: addr, fd: fd, changed: make(chan struct{}, 1), eof: make(chan struct{})}, nil
}

// Start accepts datagrams from pid from now on.
func (l *notifyListener) Start(pid int) {
	l.pid = pid
	go l.read()
}

func (l *notifyListener) read() {
	defer close(l.eof)
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(16*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(l.fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 && oobn == 0 { // EOF after shutdown
			return
		}
		pid := l.sender(oob[:oobn])
		if pid != l.pid {
			continue
		}
		l.mu.Lock()
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			k, v, _ := strings.Cut(line, "=")
			switch k {
			case "READY":
				l.state.Ready = l.state.Ready || v == "1"
			case "STATUS":
				l.state.Status = v
			case "ERRNO":
				l.state.Errno, _ = strconv.Atoi(v)
			}
		}
		l.mu.Unlock()
		select {
		case l.changed <- struct{}{}:
		default:
		}
	}
}

// sender returns the pid in the datagram's credentials; passed file
// descriptors (FDSTORE=1) are closed: this listener does not keep them.
func (l *notifyListener) sender(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	pid := 0
	for _, m := range msgs {
		if cred, err := unix.ParseUnixCredentials(&m); err == nil {
			pid = int(cred.Pid)
		} else if fds, err := unix.ParseUnixRights(&m); err == nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
	}
	return pid
}

// Changed is signalled after every accepted datagram.
func (l *notifyListener) Changed() <-chan struct{} { return l.changed }

// State returns what was received so far.
func (l *notifyListener) State() notifyState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state
}

// Close drains queued datagrams, stops the reader and closes the socket.
// It returns the final state.
func (l *notifyListener) Close() notifyState {
	l.closeOnce.Do(func() {
		unix.Shutdown(l.fd, unix.SHUT_RD)
		if l.pid != 0 {
			<-l.eof
		}
		unix.Close(l.fd)
	})
	return l.State()
}

// childEnv returns environ with $NOTIFY_SOCKET set to addr (any inherited
// value, e.g. from a systemd unit of the caller, is dropped).
func childEnv(environ []string, addr string) []string {
	out := make([]string, 0, len(environ)+1)
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			out = append(out, kv)
		}
	}
	return append(out, "NOTIFY_SOCKET="+addr)
}
