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
	"sync"
	"time"
)

// Role is the side of a link: the server (head/watch in the filesystem) or
// a client.
type Role int

const (
	RoleServer Role = iota + 1 // requests on even streams; replies to odd ones
	RoleClient                 // requests on odd streams; replies to even ones
)

func (r Role) String() string {
	switch r {
	case RoleServer:
		return "server"
	case RoleClient:
		return "client"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// NoticeTimeout bounds the send of a stream-0 notice ("0 error: ...",
// "0 fatal: ...") before the server closes a link (spec 2.3).
const NoticeTimeout = time.Second

// Why a link is down (Link.Err; wrapped by the errors of calls on a down
// link, which also match ErrLinkDown).
var (
	// ErrLinkDown matches every error of a call on a link that is down.
	ErrLinkDown = errors.New("link is down")

	// ErrBye: the client said "bye" (server role). Graceful: its pins
	// are canceled, nobody is killed.
	ErrBye = errors.New("peer said bye")

	// ErrPeerClosed: the peer closed the link without "bye" (server role:
	// the client closed head/watch or exited; client role: the server
	// closed the link, the normal end after "bye").
	ErrPeerClosed = errors.New("peer closed the link")

	// ErrClosed: this side closed or shut down the link.
	ErrClosed = errors.New("link closed")
)

// ProtocolError is a violation of the protocol by the peer; the link goes
// down with it. The server role tells the client with "0 error: <text>".
type ProtocolError struct {
	Msg string
	Err error // the underlying error, if any (e.g. *FrameError)
}

func (e *ProtocolError) Error() string { return e.Msg }
func (e *ProtocolError) Unwrap() error { return e.Err }

// ShutdownError is the cause of a link shut down by Link.Shutdown.
type ShutdownError struct {
	Notice string // the stream-0 notice, "" if none
}

func (e *ShutdownError) Error() string {
	if e.Notice == "" {
		return "link shut down"
	}
	return "link shut down: " + e.Notice
}
func (e *ShutdownError) Unwrap() error { return ErrClosed }

// DownError is the error of a call on a link that is down: "link is down"
// (the reference client's text), matching ErrLinkDown and the cause.
type DownError struct {
	Cause error
}

func (e *DownError) Error() string {
	if e.Cause == nil {
		return ErrLinkDown.Error()
	}
	return ErrLinkDown.Error() + " (" + e.Cause.Error() + ")"
}

func (e *DownError) Is(target error) bool { return target == ErrLinkDown }
func (e *DownError) Unwrap() error        { return e.Cause }

// Request is a request received from the peer; answer it with Link.Reply.
type Request struct {
	Stream  uint64
	Payload string
}

// Link is one watch link, for either role, over a Transport. It frames
// lines, allocates the streams of its own requests, matches replies to
// them, queues the peer's requests for RecvReq, and validates what the peer
// sends (see the package doc). Its methods are safe for concurrent use.
type Link struct {
	role Role
	t    Transport

	txSem chan struct{} // one frame at a time (acquired with a context)

	mu       sync.Mutex
	nextID   uint64                 // next stream for our requests
	pending  map[uint64]chan string // our requests awaiting reply; nil: abandoned
	inflight map[uint64]struct{}    // peer requests not replied yet
	reqq     []*Request
	reqReady chan struct{} // signaled (cap 1) when reqq gets a request
	notices  []string      // client role: stream-0 notices received
	byeSent  bool          // client role: CloseWrite was called
	downErr  error
	down     chan struct{} // closed when the link goes down
	downCtx  context.Context
	downStop context.CancelFunc
	rxDone   chan struct{}
	noticing sync.WaitGroup // the notice sent when going down

	// OnNotice, if set before traffic, is called by the receiver for
	// every stream-0 notice (client role), e.g. to log it.
	OnNotice func(notice string)
}

// NewLink returns a link of the given role over t and starts its receiver.
// The link owns t: Close closes it.
func NewLink(role Role, t Transport) *Link {
	l := &Link{
		role:     role,
		t:        t,
		txSem:    make(chan struct{}, 1),
		pending:  make(map[uint64]chan string),
		inflight: make(map[uint64]struct{}),
		reqReady: make(chan struct{}, 1),
		down:     make(chan struct{}),
		rxDone:   make(chan struct{}),
	}
	l.downCtx, l.downStop = context.WithCancel(context.Background())
	if role == RoleClient {
		l.nextID = 1
	} else {
		l.nextID = 2
	}
	go l.serveRX()
	return l
}

// Role returns the link's role.
func (l *Link) Role() Role { return l.role }

// Down returns a channel closed when the link goes down.
func (l *Link) Down() <-chan struct{} { return l.down }

// RxDone returns a channel closed when the receiver has stopped (it stops
// when the link goes down; on a blocking fd transport it can stay in a
// read until the peer closes).
func (l *Link) RxDone() <-chan struct{} { return l.rxDone }

// Err returns why the link is down (ErrBye, ErrPeerClosed, ErrClosed, a
// *ProtocolError, a *ShutdownError, a transport error), nil while it is up.
func (l *Link) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.downErr
}

// Notices returns the stream-0 notices received so far (client role; the
// reference client's fatalv).
func (l *Link) Notices() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.notices...)
}

// goDown marks the link down with cause; it reports whether this call did.
// If notice, the caller then sends a notice, which Close waits for.
func (l *Link) goDown(cause error, notice bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.downErr != nil {
		return false
	}
	l.downErr = cause
	close(l.down)
	l.downStop()
	if notice {
		l.noticing.Add(1)
	}
	return true
}

// downError returns the error of a call on the down link; under mu.
func (l *Link) downError() error { return &DownError{Cause: l.downErr} }

// isPeerRequest tells whether a frame on stream is a request of the peer.
func (l *Link) isPeerRequest(stream uint64) bool {
	if l.role == RoleServer {
		return IsClientStream(stream)
	}
	return IsServerStream(stream)
}

// allocID returns a free stream for a request of ours; under mu.
func (l *Link) allocID() uint64 {
	for {
		id := l.nextID
		l.nextID += 2 // client: ... 2^64-1 -> 1; server: ... 2^64-2 -> 0 -> 2
		if l.nextID == 0 {
			l.nextID = 2
		}
		if id == 0 {
			continue
		}
		if _, busy := l.pending[id]; busy {
			continue
		}
		return id
	}
}

// errAfterBye is the error of a request whose turn to be sent comes after
// the client's "bye".
var errAfterBye = &DownError{Cause: ErrClosed}

// send sends one frame, waiting for the transport (other frames) at most
// until ctx is done. left tells whether any of the frame left (a frame that
// did not leave never will). A request (req) whose turn comes after the
// client's "bye" is not sent (errAfterBye): the server must see nothing
// after bye, however requests and CloseWrite race.
func (l *Link) send(ctx context.Context, f Frame, req bool) (left bool, err error) {
	select {
	case l.txSem <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	if req {
		l.mu.Lock()
		bye := l.byeSent
		l.mu.Unlock()
		if bye {
			<-l.txSem
			return false, errAfterBye
		}
	}
	n, err := l.t.Send(ctx, []byte(f.String()))
	<-l.txSem
	return n > 0, err
}

// sendUp sends f while the link is up: the send is canceled when the link
// goes down (the error is then the link's DownError). left is as for send.
func (l *Link) sendUp(ctx context.Context, f Frame, req bool) (left bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(l.downCtx, cancel)
	defer stop()
	left, err = l.send(sctx, f, req)
	if err != nil {
		if err == errAfterBye {
			return false, err
		}
		if ctx.Err() != nil {
			return left, ctx.Err()
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.downErr != nil {
			return left, l.downError()
		}
		return left, fmt.Errorf("send: %w", err)
	}
	return true, nil
}

// SendReq sends a request (server: a pin; client: a watch) on a new stream
// and returns the peer's reply. It fails with ctx's error when ctx is done
// first (a late reply is then dropped), and with a DownError when the link
// goes down first.
func (l *Link) SendReq(ctx context.Context, payload string) (string, error) {
	l.mu.Lock()
	if l.downErr != nil {
		defer l.mu.Unlock()
		return "", l.downError()
	}
	if l.byeSent {
		l.mu.Unlock()
		return "", &DownError{Cause: ErrClosed}
	}
	id := l.allocID()
	ch := make(chan string, 1)
	l.pending[id] = ch
	l.mu.Unlock()

	left, err := l.sendUp(ctx, Frame{id, payload}, true)
	if err == nil {
		// waiting for the reply: errors say so (as the reference's client:
		// "sendReq .N: recvReply: link is down")
		select {
		case reply := <-ch:
			return reply, nil
		case <-l.down:
			err = fmt.Errorf("recvReply: %w", &DownError{Cause: l.Err()})
		case <-ctx.Done():
			err = fmt.Errorf("recvReply: %w", ctx.Err())
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case reply := <-ch: // came in meanwhile
		return reply, nil
	default:
	}
	if l.pending[id] == ch {
		if left && ctx.Err() != nil && l.downErr == nil {
			l.pending[id] = nil // the request went out: a late reply is dropped
		} else {
			delete(l.pending, id) // no reply will come
		}
	}
	return "", err
}

// RecvReq returns the next request of the peer (server: watch requests;
// client: pins). It fails with a DownError once the link is down, and with
// ctx's error.
func (l *Link) RecvReq(ctx context.Context) (*Request, error) {
	for {
		l.mu.Lock()
		if l.downErr != nil {
			defer l.mu.Unlock()
			return nil, l.downError()
		}
		if len(l.reqq) > 0 {
			req := l.reqq[0]
			l.reqq[0] = nil
			l.reqq = l.reqq[1:]
			if len(l.reqq) > 0 { // for another waiter
				select {
				case l.reqReady <- struct{}{}:
				default:
				}
			}
			l.mu.Unlock()
			return req, nil
		}
		l.mu.Unlock()
		select {
		case <-l.reqReady:
		case <-l.down:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Reply sends the reply to a request of the peer. Nothing is sent on a link
// that is down (DownError).
func (l *Link) Reply(ctx context.Context, req *Request, payload string) error {
	l.mu.Lock()
	if l.downErr != nil {
		defer l.mu.Unlock()
		return l.downError()
	}
	if _, ok := l.inflight[req.Stream]; !ok {
		l.mu.Unlock()
		return fmt.Errorf("reply on stream %d: no request in flight there", req.Stream)
	}
	// free the stream before the reply leaves: the peer may reuse it as
	// soon as it has the reply
	delete(l.inflight, req.Stream)
	l.mu.Unlock()
	_, err := l.sendUp(ctx, Frame{req.Stream, payload}, false)
	return err
}

// CloseWrite closes the sending side. Client role: it sends "<k> bye" and
// no request can be sent afterwards; the link stays up until the server
// closes it (the receiver then sees EOF). Server role: the client reads EOF.
func (l *Link) CloseWrite(ctx context.Context) error {
	if l.role == RoleClient {
		l.mu.Lock()
		if l.byeSent {
			l.mu.Unlock()
			return nil
		}
		if l.downErr != nil {
			defer l.mu.Unlock()
			return l.downError()
		}
		l.byeSent = true
		id := l.allocID()
		l.mu.Unlock()
		if _, err := l.sendUp(ctx, Frame{id, MsgBye}, false); err != nil {
			return err
		}
	}
	return l.t.CloseWrite()
}

// Shutdown takes the link down because of this side (server role: with the
// stream-0 notice, e.g. "fatal: pin #2 @...: ...", sent within
// NoticeTimeout if notice is not empty), then closes the sending side. It
// reports whether this call took the link down (false: it was already down
// for another reason, nothing is sent).
func (l *Link) Shutdown(notice string) bool {
	if !l.goDown(&ShutdownError{Notice: notice}, true) {
		return false
	}
	defer l.noticing.Done()
	l.notify(notice)
	l.t.CloseWrite()
	return true
}

// notify sends "0 <notice>" within NoticeTimeout (server role; best effort).
func (l *Link) notify(notice string) {
	if notice == "" || l.role != RoleServer {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), NoticeTimeout)
	defer cancel()
	l.send(ctx, Frame{0, notice}, false)
}

// Close takes the link down (if it is not yet) and closes the transport,
// after the notice of a shutdown or protocol error (at most NoticeTimeout).
// It does not wait for the receiver (see RxDone). A client should call
// CloseWrite first (and wait for Down with a timeout) to tell the server
// "bye": a server kills a client that closes its link without "bye" while a
// pin is outstanding.
func (l *Link) Close() error {
	l.goDown(ErrClosed, false)
	l.noticing.Wait() // a notice being sent goes first
	return l.t.Close()
}

// serveRX is the receiver: it reads frames until the link goes down.
func (l *Link) serveRX() {
	defer close(l.rxDone)
	r := NewReader(l.t)
	for {
		line, err := r.ReadLine()
		if err == nil {
			var f Frame
			f, err = ParseFrame(line)
			if err == nil {
				var stop bool
				stop, err = l.dispatch(f)
				if err == nil && !stop {
					continue
				}
				if err == nil {
					return // bye
				}
			}
			if fe, ok := err.(*FrameError); ok {
				err = &ProtocolError{Msg: fe.Error(), Err: fe}
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			err = ErrPeerClosed
		case errors.Is(err, io.ErrUnexpectedEOF):
			err = &ProtocolError{Msg: "unexpected EOF", Err: err}
		case errors.Is(err, ErrLineTooLong):
			err = &ProtocolError{Msg: err.Error(), Err: err}
		}
		var pe *ProtocolError
		notice := errors.As(err, &pe)
		if l.goDown(err, notice) && notice {
			l.notify("error: " + pe.Msg)
			l.t.CloseWrite()
			l.noticing.Done()
		}
		return
	}
}

// dispatch handles one received frame. stop: the peer said bye.
func (l *Link) dispatch(f Frame) (stop bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.role == RoleClient && f.Stream == 0:
		l.notices = append(l.notices, f.Payload)
		if l.OnNotice != nil {
			l.OnNotice(f.Payload)
		}
		return false, nil

	case l.isPeerRequest(f.Stream):
		if l.role == RoleServer && f.Payload == MsgBye {
			if l.downErr == nil {
				l.downErr = ErrBye
				close(l.down)
				l.downStop()
			}
			return true, nil
		}
		if _, busy := l.inflight[f.Stream]; busy {
			return false, &ProtocolError{Msg: fmt.Sprintf("%d: request on a stream already in flight", f.Stream)}
		}
		l.inflight[f.Stream] = struct{}{}
		l.reqq = append(l.reqq, &Request{Stream: f.Stream, Payload: f.Payload})
		select {
		case l.reqReady <- struct{}{}:
		default:
		}
		return false, nil

	default: // a reply
		ch, ok := l.pending[f.Stream]
		if !ok {
			return false, &ProtocolError{Msg: fmt.Sprintf("%d: reply on unexpected stream", f.Stream)}
		}
		delete(l.pending, f.Stream)
		if ch != nil {
			ch <- f.Payload
		}
		return false, nil
	}
}
