// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package wproto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// pair connects a server link and a client link through a Pipe.
func pair(t *testing.T) (srv, cli *Link, p *Pipe) {
	t.Helper()
	p = NewPipe()
	srv = NewLink(RoleServer, p)
	cli = NewLink(RoleClient, p.PeerTransport())
	t.Cleanup(func() {
		srv.Close()
		cli.Close()
		waitClosed(t, srv.RxDone(), "server receiver")
		waitClosed(t, cli.RxDone(), "client receiver")
	})
	return srv, cli, p
}

// rawClient is the peer of a server link driven byte by byte.
type rawClient struct {
	p   *Pipe
	buf []byte
}

func (c *rawClient) write(t *testing.T, s string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if n, err := c.p.PeerWrite(ctx, []byte(s)); err != nil || n != len(s) {
		t.Fatalf("write %q: %d, %v", s, n, err)
	}
}

// readLine reads one line; io.EOF at the end.
func (c *rawClient) readLine(t *testing.T) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if i := strings.IndexByte(string(c.buf), '\n'); i >= 0 {
			line := string(c.buf[:i+1])
			c.buf = c.buf[i+1:]
			return line, nil
		}
		b := make([]byte, 7) // small reads: lines come in pieces
		n, err := c.p.PeerRead(ctx, b)
		if err != nil {
			return string(c.buf), err
		}
		c.buf = append(c.buf, b[:n]...)
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not done after 10s", what)
	}
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Requests both ways, concurrently, with the reference's stream numbering.
func TestLinkRequests(t *testing.T) {
	srv, cli, _ := pair(t)
	ctx := ctx10(t)

	// answer everything: the server with "ok <payload>", the client "ack"
	serve := func(l *Link, prefix string) {
		for {
			req, err := l.RecvReq(ctx)
			if err != nil {
				return
			}
			go l.Reply(ctx, req, fmt.Sprintf("%s %d %s", prefix, req.Stream, req.Payload))
		}
	}
	go serve(srv, "ok")
	go serve(cli, "ack")

	if r, err := cli.SendReq(ctx, "watch a"); err != nil || r != "ok 1 watch a" {
		t.Fatalf("first client request: %q, %v", r, err)
	}
	if r, err := srv.SendReq(ctx, "pin b"); err != nil || r != "ack 2 pin b" {
		t.Fatalf("first server request: %q, %v", r, err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			p := fmt.Sprintf("c%d", i)
			r, err := cli.SendReq(ctx, p)
			if err != nil || !strings.HasPrefix(r, "ok ") || !strings.HasSuffix(r, " "+p) {
				t.Errorf("client request %s: %q, %v", p, r, err)
			}
		}()
		go func() {
			defer wg.Done()
			p := fmt.Sprintf("s%d", i)
			r, err := srv.SendReq(ctx, p)
			if err != nil || !strings.HasPrefix(r, "ack ") || !strings.HasSuffix(r, " "+p) {
				t.Errorf("server request %s: %q, %v", p, r, err)
			}
		}()
	}
	wg.Wait()
}

// Stream allocation: odd from 1 for clients, even from 2 for the server,
// 0 skipped on wrap, streams still pending skipped.
func TestLinkStreamAlloc(t *testing.T) {
	l := &Link{nextID: ^uint64(0) - 2, pending: map[uint64]chan string{}}
	var got []uint64
	for i := 0; i < 3; i++ {
		got = append(got, l.allocID())
	}
	if fmt.Sprint(got) != fmt.Sprint([]uint64{^uint64(0) - 2, ^uint64(0), 1}) {
		t.Errorf("client wrap: %v", got)
	}
	l = &Link{nextID: ^uint64(0) - 3, pending: map[uint64]chan string{2: nil}}
	got = nil
	for i := 0; i < 3; i++ {
		got = append(got, l.allocID())
	}
	if fmt.Sprint(got) != fmt.Sprint([]uint64{^uint64(0) - 3, ^uint64(0) - 1, 4}) {
		t.Errorf("server wrap (2 pending): %v", got)
	}
}

// What the server receives is validated; a violation gives "0 error: ..."
// and the link closes (the client reads EOF).
func TestLinkServerProtocolErrors(t *testing.T) {
	for _, tt := range []struct {
		name, in, notice string
	}{
		{"invalid stream", "zzz hello\n", `0 error: invalid frame: "zzz hello\n" (invalid stream)` + "\n"},
		{"no space", "hello\n", `0 error: invalid frame: "hello\n"` + "\n"},
		{"unexpected reply", "4 ack\n", "0 error: 4: reply on unexpected stream\n"},
		{"reply on 0", "0 ack\n", "0 error: 0: reply on unexpected stream\n"},
		{"stream reuse", "1 watch x\n1 watch y\n", "0 error: 1: request on a stream already in flight\n"},
		{"too long", "1 " + strings.Repeat("x", MaxLine) + "\n", fmt.Sprintf("0 error: line too long (> %d bytes)\n", MaxLine)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPipe()
			srv := NewLink(RoleServer, p)
			defer srv.Close()
			c := &rawClient{p: p}
			go c.p.PeerWrite(ctx10(t), []byte(tt.in)) // the server may stop reading before the end
			line, err := c.readLine(t)
			if err != nil || line != tt.notice {
				t.Fatalf("got %q, %v; want %q", line, err, tt.notice)
			}
			if line, err := c.readLine(t); err != io.EOF {
				t.Fatalf("after the notice: %q, %v; want EOF", line, err)
			}
			var pe *ProtocolError
			if !errors.As(srv.Err(), &pe) {
				t.Fatalf("server link: Err = %v; want a protocol error", srv.Err())
			}
			if _, err := srv.RecvReq(ctx10(t)); !errors.Is(err, ErrLinkDown) {
				// the request of "stream reuse" may be queued, but once down nothing is delivered
				t.Fatalf("RecvReq after the error: %v", err)
			}
		})
	}
}

// The client validates too, and keeps the stream-0 notices.
func TestLinkClientProtocol(t *testing.T) {
	p := NewPipe()
	cli := NewLink(RoleClient, p.PeerTransport())
	defer cli.Close()
	var seen []string
	var mu sync.Mutex
	cli.OnNotice = func(n string) { mu.Lock(); seen = append(seen, n); mu.Unlock() }
	ctx := ctx10(t)
	send := func(s string) {
		if _, err := p.Send(ctx, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	send("0 fatal: pin #2 @0000000000000001: timeout\n")
	send("2 pin a\n")
	req, err := cli.RecvReq(ctx)
	if err != nil || req.Stream != 2 || req.Payload != "pin a" {
		t.Fatalf("RecvReq: %+v %v", req, err)
	}
	send("2 pin again\n") // 2 is not answered yet
	waitClosed(t, cli.Down(), "client link after stream reuse")
	if err := cli.Err(); err == nil || err.Error() != "2: request on a stream already in flight" {
		t.Fatalf("Err = %v", err)
	}
	if n := cli.Notices(); len(n) != 1 || n[0] != "fatal: pin #2 @0000000000000001: timeout" {
		t.Fatalf("notices: %q", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("OnNotice: %q", seen)
	}

	// a reply on a stream the client did not use
	p2 := NewPipe()
	cli2 := NewLink(RoleClient, p2.PeerTransport())
	defer cli2.Close()
	if _, err := p2.Send(ctx, []byte("3 ok\n")); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, cli2.Down(), "client link after an unexpected reply")
	if err := cli2.Err(); err == nil || err.Error() != "3: reply on unexpected stream" {
		t.Fatalf("Err = %v", err)
	}
}

// bye vs EOF: both take the server link down, pending requests fail with
// "link is down", and Err tells which.
func TestLinkByeEOF(t *testing.T) {
	for _, bye := range []bool{true, false} {
		t.Run(fmt.Sprintf("bye=%v", bye), func(t *testing.T) {
			srv, cli, _ := pair(t)
			ctx := ctx10(t)
			// a client request in flight, and a server request the client receives
			go cli.SendReq(ctx, "watch x")
			if _, err := srv.RecvReq(ctx); err != nil {
				t.Fatal(err)
			}
			cliErr := make(chan error, 1)
			go func() { _, err := cli.SendReq(ctx, "watch y"); cliErr <- err }()
			srvErr := make(chan error, 1)
			go func() { _, err := srv.SendReq(ctx, "pin"); srvErr <- err }()
			if _, err := cli.RecvReq(ctx); err != nil {
				t.Fatal(err)
			}
			if bye {
				if err := cli.CloseWrite(ctx); err != nil {
					t.Fatal(err)
				}
				if _, err := cli.SendReq(ctx, "late"); !errors.Is(err, ErrLinkDown) {
					t.Errorf("request after bye: %v", err)
				}
			} else {
				cli.Close()
			}
			err := <-srvErr
			want := ErrPeerClosed
			if bye {
				want = ErrBye
			}
			if !errors.Is(err, ErrLinkDown) || !errors.Is(err, want) || err.Error() != "recvReply: link is down ("+want.Error()+")" {
				t.Fatalf("server request: %v; want link down (%v)", err, want)
			}
			if !errors.Is(srv.Err(), want) {
				t.Fatalf("server Err = %v", srv.Err())
			}
			if bye {
				// the server closes: the client sees EOF and its requests fail
				srv.Close()
				if err := <-cliErr; !errors.Is(err, ErrLinkDown) {
					t.Fatalf("client request: %v", err)
				}
				waitClosed(t, cli.RxDone(), "client receiver")
				if !errors.Is(cli.Err(), ErrPeerClosed) {
					t.Fatalf("client Err = %v", cli.Err())
				}
			}
		})
	}
}

// A request whose context ends is abandoned: nothing half sent, a late
// reply is dropped, the link stays usable.
func TestLinkCancel(t *testing.T) {
	p := NewPipe()
	srv := NewLink(RoleServer, p)
	defer srv.Close()
	c := &rawClient{p: p}

	// the client does not read: the send times out, nothing is sent
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := srv.SendReq(ctx, "pin 1")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unread request: %v", err)
	}
	// sent, not answered in time; the late reply is dropped
	res := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := srv.SendReq(ctx, "pin 2")
		res <- err
	}()
	if line, err := c.readLine(t); err != nil || line != "4 pin 2\n" {
		t.Fatalf("read %q %v; want the second request on stream 4", line, err)
	}
	if err := <-res; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("unanswered request: %v", err)
	}
	if n := npending(srv); n != 1 {
		t.Fatalf("%d reply slots pending; want 1 (the request that went out)", n)
	}
	c.write(t, "4 ack\n")
	// still up
	go func() {
		_, err := srv.SendReq(ctx10(t), "pin 3")
		res <- err
	}()
	line, err := c.readLine(t)
	if err != nil || !strings.HasSuffix(line, " pin 3\n") {
		t.Fatalf("third request: %q %v", line, err)
	}
	c.write(t, strings.Fields(line)[0]+" ack\n")
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if srv.Err() != nil {
		t.Fatalf("link down: %v", srv.Err())
	}
	if n := npending(srv); n != 0 { // the late reply came before the last one
		t.Fatalf("%d reply slots pending after the late reply; want 0", n)
	}

	// RecvReq and Reply honour their context
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := srv.RecvReq(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RecvReq: %v", err)
	}
}

// npending returns the number of reply slots of l.
func npending(l *Link) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.pending)
}

// A request abandoned before its frame left leaves no reply slot behind (no
// reply can come for it): a server whose client does not read abandons pins
// for as long as the link lives.
func TestLinkCancelUnsent(t *testing.T) {
	p := NewPipe()
	srv := NewLink(RoleServer, p)
	defer srv.Close()

	// ctx done before the call: whether the send waits for the transport
	// or gets it, nothing leaves
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 100; i++ {
		if _, err := srv.SendReq(canceled, "pin a"); !errors.Is(err, context.Canceled) {
			t.Fatalf("SendReq with a canceled ctx: %v", err)
		}
	}
	// the client does not read: the frame is withdrawn at the timeout
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		_, err := srv.SendReq(ctx, "pin b")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("unread request: %v", err)
		}
	}
	// several at once: one in the transport, the others waiting for it
	var wg sync.WaitGroup
	errv := make([]error, 8)
	for i := range errv {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
			defer cancel()
			_, errv[i] = srv.SendReq(ctx, "pin c")
		}()
	}
	wg.Wait()
	for _, err := range errv {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("concurrent unread request: %v", err)
		}
	}
	if n := npending(srv); n != 0 {
		t.Fatalf("%d reply slots pending for requests that never left; want 0", n)
	}

	// nothing half sent: the next request goes out whole and gets its reply
	c := &rawClient{p: p}
	res := make(chan error, 1)
	go func() {
		reply, err := srv.SendReq(ctx10(t), "pin d")
		if err == nil && reply != "ack" {
			err = fmt.Errorf("reply %q", reply)
		}
		res <- err
	}()
	line, err := c.readLine(t)
	if err != nil || !strings.HasSuffix(line, " pin d\n") {
		t.Fatalf("read %q %v; want the last request", line, err)
	}
	c.write(t, strings.Fields(line)[0]+" ack\n")
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if n := npending(srv); n != 0 {
		t.Fatalf("%d reply slots pending; want 0", n)
	}
}

// Shutdown sends the notice within NoticeTimeout even to a client that does
// not read, and only once.
func TestLinkShutdown(t *testing.T) {
	p := NewPipe()
	srv := NewLink(RoleServer, p)
	defer srv.Close()
	t0 := time.Now()
	if !srv.Shutdown("fatal: pin #1 @0000000000000001: timeout") {
		t.Fatal("first Shutdown: false")
	}
	if d := time.Since(t0); d < NoticeTimeout/2 || d > 5*NoticeTimeout {
		t.Errorf("notice to a client that does not read took %s", d)
	}
	if srv.Shutdown("again") {
		t.Fatal("second Shutdown: true")
	}
	var se *ShutdownError
	if !errors.As(srv.Err(), &se) || !errors.Is(srv.Err(), ErrClosed) {
		t.Fatalf("Err = %v", srv.Err())
	}
	c := &rawClient{p: p}
	if line, err := c.readLine(t); err != io.EOF || line != "" {
		t.Fatalf("after shutdown: %q %v", line, err)
	}
	// writes after close fail (ECONNRESET for the FUSE client)
	srv.Close()
	if _, err := p.PeerWrite(ctx10(t), []byte("1 bye\n")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("write after close: %v", err)
	}

	// a reading client gets the notice, then EOF
	srv2, cli2, _ := pair(t)
	go srv2.Shutdown("fatal: x")
	waitClosed(t, cli2.RxDone(), "client receiver")
	if n := cli2.Notices(); len(n) != 1 || n[0] != "fatal: x" {
		t.Fatalf("notices %q", n)
	}
}

// Interrupted peer reads and writes (FUSE INTERRUPT) leave the pipe usable.
func TestPipeInterrupt(t *testing.T) {
	p := NewPipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { _, err := p.PeerRead(ctx, make([]byte, 10)); done <- err }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted read: %v", err)
	}
	// a write nobody reads, interrupted: nothing taken
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if n, err := p.PeerWrite(ctx, []byte("1 x\n")); n != 0 || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("interrupted write: %d %v", n, err)
	}
	// a frame partly read when the sender gives up stays whole for the reader
	ctx, cancel = context.WithCancel(context.Background())
	sent := make(chan error)
	go func() {
		n, err := p.Send(ctx, []byte("2 pin abc\n"))
		if n != 3 {
			err = fmt.Errorf("Send: %d bytes taken, %w; want 3", n, err)
		}
		sent <- err
	}()
	b := make([]byte, 3)
	if n, err := p.PeerRead(ctx10(t), b); n != 3 || err != nil {
		t.Fatal(n, err)
	}
	cancel()
	if err := <-sent; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	rest := make([]byte, 100)
	n, err := p.PeerRead(ctx10(t), rest)
	if err != nil || string(b)+string(rest[:n]) != "2 pin abc\n" {
		t.Fatalf("rest of the frame: %q %v", rest[:n], err)
	}
}

// Both roles over file descriptors (a socketpair stands for head/watch).
func TestLinkFD(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewLink(RoleServer, NewFDTransport(fds[0]))
	cli := NewLink(RoleClient, NewFDTransport(fds[1]))
	ctx := ctx10(t)
	go func() {
		req, err := srv.RecvReq(ctx)
		if err == nil {
			srv.Reply(ctx, req, "ok")
		}
	}()
	if r, err := cli.SendReq(ctx, "watch 0000000000000001 -"); err != nil || r != "ok" {
		t.Fatalf("%q %v", r, err)
	}
	if err := cli.CloseWrite(ctx); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, srv.Down(), "server after bye")
	if !errors.Is(srv.Err(), ErrBye) {
		t.Fatalf("server Err = %v", srv.Err())
	}
	srv.Close() // closes fds[0]: the client reads EOF
	waitClosed(t, cli.RxDone(), "client receiver")
	cli.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fds[1], &st); err != unix.EBADF {
		t.Errorf("client fd not closed: %v", err)
	}
}

// Close right after a protocol error still lets the notice out first (the
// server tears a link down as soon as it is down).
func TestLinkCloseAfterError(t *testing.T) {
	p := NewPipe()
	srv := NewLink(RoleServer, p)
	c := &rawClient{p: p}
	got := make(chan string, 1)
	go func() {
		line, _ := c.readLine(t)
		got <- line
	}()
	go p.PeerWrite(ctx10(t), []byte("x y\n"))
	waitClosed(t, srv.Down(), "server link")
	srv.Close()
	if line := <-got; line != `0 error: invalid frame: "x y\n" (invalid stream)`+"\n" {
		t.Fatalf("notice: %q", line)
	}
}

// A request racing the client's "bye" either leaves before the bye or is
// refused with a DownError: the server never reads anything after bye.
func TestLinkRequestAfterBye(t *testing.T) {
	for i := 0; i < 200; i++ {
		p := NewPipe()
		cli := NewLink(RoleClient, p)
		raw := &rawClient{p: p}
		ctx := ctx10(t)
		reqErr := make(chan error, 1)
		go func() { _, err := cli.SendReq(ctx, "watch x"); reqErr <- err }()
		byeErr := make(chan error, 1)
		go func() { byeErr <- cli.CloseWrite(ctx) }()
		var lines []string
		for {
			line, err := raw.readLine(t)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, line)
		}
		if err := <-byeErr; err != nil {
			t.Fatalf("CloseWrite: %v", err)
		}
		if n := len(lines); n == 0 || !strings.HasSuffix(lines[n-1], " bye\n") {
			t.Fatalf("run %d: server read %q; want bye last", i, lines)
		}
		cli.Close()
		err := <-reqErr
		if len(lines) == 1 && !errors.Is(err, ErrLinkDown) {
			t.Fatalf("run %d: request refused with %v; want link down", i, err)
		}
		if len(lines) == 2 && (lines[0] != "1 watch x\n" || !errors.Is(err, ErrLinkDown)) {
			t.Fatalf("run %d: server read %q, request: %v", i, lines, err)
		}
		waitClosed(t, cli.RxDone(), "client receiver")
	}
}
