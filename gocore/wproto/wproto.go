// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package wproto is the wire protocol of WCFS watch links (head/watch).
//
// Every open of head/watch is one bidirectional link that carries lines
//
//	<stream> <payload>\n
//
// where stream is an unsigned 64-bit decimal and payload is any text without
// '\n'. Client-originated requests use odd streams (1, 3, 5, ...); the server
// replies on the same stream. Server-originated requests use even streams
// (2, 4, 6, ..., 0 skipped on wrap); the client replies on the same stream.
// Stream 0 carries server notices ("error: ...", "fatal: ...") sent right
// before the server closes the link.
//
// Messages (spec section 2.3):
//
//	client → server   watch <foid> @<at>       start or move watching <foid> as of <at>
//	                  watch <foid> -           stop watching <foid>
//	                  bye                      the client closes its sending side
//	server → client   ok | error <text>        reply to a watch request
//	                  pin <foid> #<blk> @<rev> remap block <blk> to @<rev>/bigfile/<foid>
//	                  pin <foid> #<blk> @head  remap block <blk> back to head/bigfile/<foid>
//	client → server   ack | nak: <text>        reply to a pin
//
// oids and tids are written as exactly 16 hex digits (%016x); parsers require
// exactly 16 characters (upper case is accepted, as the reference's Go side
// does). Block numbers are signed decimal.
//
// Parsers never panic and bound what they accept: a line is at most MaxLine
// bytes including its '\n' (the reference server has no limit, a DoS).
//
// # Links
//
// Link is the machinery of one link, for both roles (RoleServer in the
// filesystem, RoleClient in clients), over a Transport:
//
//	l := wproto.NewLink(wproto.RoleClient, wproto.NewFDTransport(fd))
//	reply, err := l.SendReq(ctx, wproto.Watch{Foid: foid, At: at}.String())
//	req, err := l.RecvReq(ctx)          // a pin
//	err = l.Reply(ctx, req, wproto.ReplyAck)
//	err = l.CloseWrite(ctx)              // "<k> bye"
//	<-l.Down() (bounded by a timeout)    // the server closes: EOF
//	l.Close()
//
// A receiver goroutine reads lines (at most MaxLine bytes), matches replies
// to the requests in flight (the pending table) and queues the peer's
// requests for RecvReq. Its own requests get fresh streams: odd from 1 for a
// client, even from 2 for the server, 0 skipped on wrap, streams still
// pending skipped. It validates what the peer sends; any violation takes the
// link down with a *ProtocolError:
//
//   - a line that is not "<stream> <payload>\n" (FrameError, the reference's
//     text), longer than MaxLine, or cut by EOF;
//   - a reply on a stream with no request of ours pending: "<N>: reply on
//     unexpected stream" (a reply to a request whose context ended is
//     dropped silently instead);
//   - a request on a stream whose previous request is not answered yet:
//     "<N>: request on a stream already in flight" (the reference server
//     does not check this).
//
// Server role: "<k> bye" from the client takes the link down with ErrBye
// (graceful: the server cancels its pins and kills nobody); EOF without bye
// is ErrPeerClosed (the client closed head/watch or exited: a pin then
// outstanding is mishandled). A protocol error is told to the client as
// "0 error: <text>" (sent within NoticeTimeout, 1 s), then the sending side
// closes. Shutdown(notice) takes the link down from this side with an
// optional notice ("fatal: pin #<blk> @<rev>: <cause>") and tells whether
// the link was still up. Client role: stream-0 notices are kept (Notices,
// the reference's fatalv) and the link stays up; EOF is ErrPeerClosed, the
// normal end after bye.
//
// Once the link is down every call fails with a *DownError ("link is down",
// matching ErrLinkDown and the cause: errors.Is(err, ErrBye), ...), nothing
// more is sent (not even replies), and Err tells why. Every call that can
// wait takes a context; the sends of a request or reply also end when the
// link goes down.
//
// Transports: Pipe is the server side of head/watch, an unbuffered duplex
// pipe whose other end is driven by the FUSE handlers (PeerWrite on WRITE,
// PeerRead on READ, both interruptible, PeerClose on RELEASE); a send
// returns when the client has read the whole frame, so a client that does
// not read makes the server's sends time out. FDTransport is the client
// side over a descriptor of head/watch. Pipe.PeerTransport connects a
// client Link to a server Link in one process (tests).
package wproto

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

// MaxLine is the maximum length of one protocol line, '\n' included.
//
// The longest legitimate message ("pin <16> #<int64> @<16>") is well under
// 100 bytes; the reference C++ client accepts lines of at most 128 bytes.
const MaxLine = 1024

// TidHead is the "@head" of pins: unpin, map the block back to head/.
const TidHead = zodb.TidMax

// ErrLineTooLong is returned by Reader when a line exceeds MaxLine.
var ErrLineTooLong = errors.New("line too long")

// Frame is one protocol line: a stream id and its payload.
type Frame struct {
	Stream  uint64
	Payload string
}

// String returns the frame as sent on the wire, with its trailing '\n'.
func (f Frame) String() string {
	return strconv.FormatUint(f.Stream, 10) + " " + f.Payload + "\n"
}

// IsClientStream reports whether stream is one that clients originate (odd).
func IsClientStream(stream uint64) bool { return stream%2 == 1 }

// IsServerStream reports whether stream is one that the server originates
// (even, not 0).
func IsServerStream(stream uint64) bool { return stream != 0 && stream%2 == 0 }

// FrameError describes a line that is not a valid frame. Its text is what the
// reference server sends in its "0 error: ..." notice, e.g.
//
//	invalid frame: "zzz hello\n" (invalid stream)
type FrameError struct {
	Line   string // the line as received, with its '\n' if it had one
	Reason string // "" or e.g. "invalid stream"
}

func (e *FrameError) Error() string {
	s := fmt.Sprintf("invalid frame: %q", e.Line)
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

// ParseFrame parses one line, with or without its trailing '\n'.
func ParseFrame(line string) (Frame, error) {
	body := strings.TrimSuffix(line, "\n")
	if strings.IndexByte(body, '\n') >= 0 {
		return Frame{}, &FrameError{Line: line, Reason: "embedded newline"}
	}
	sp := strings.IndexByte(body, ' ')
	if sp < 0 {
		return Frame{}, &FrameError{Line: line}
	}
	stream, err := strconv.ParseUint(body[:sp], 10, 64)
	if err != nil || body[:sp] != strconv.FormatUint(stream, 10) {
		// reject "+1", "01" and the like: one stream, one spelling
		return Frame{}, &FrameError{Line: line, Reason: "invalid stream"}
	}
	return Frame{Stream: stream, Payload: body[sp+1:]}, nil
}

// Reader reads frames from a byte stream, at most MaxLine bytes per line.
type Reader struct {
	r *bufio.Reader
}

// NewReader returns a Reader reading from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, MaxLine)}
}

// ReadLine returns the next raw line including its '\n'.
//
// At the end of input it returns io.EOF if nothing was pending, or
// io.ErrUnexpectedEOF with the partial line. A line longer than MaxLine gives
// ErrLineTooLong (the stream cannot be resynchronised after that).
func (r *Reader) ReadLine() (string, error) {
	line, err := r.r.ReadSlice('\n')
	switch {
	case err == nil:
		return string(line), nil
	case errors.Is(err, bufio.ErrBufferFull):
		return "", fmt.Errorf("%w (> %d bytes)", ErrLineTooLong, MaxLine)
	case errors.Is(err, io.EOF) && len(line) == 0:
		return "", io.EOF
	case errors.Is(err, io.EOF):
		return string(line), io.ErrUnexpectedEOF
	default:
		return string(line), err
	}
}

// ReadFrame reads and parses the next line. A malformed line gives a
// *FrameError; see ReadLine for the other errors.
func (r *Reader) ReadFrame() (Frame, error) {
	line, err := r.ReadLine()
	if err != nil {
		return Frame{}, err
	}
	return ParseFrame(line)
}

// ---- oids, tids, revisions ----

// ParseHex16 parses exactly 16 hex digits (the spelling of oids and tids).
func ParseHex16(s string) (uint64, error) {
	if len(s) != 16 {
		return 0, fmt.Errorf("%q: not 16 hex digits", s)
	}
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: not 16 hex digits", s)
	}
	return v, nil
}

// FormatRev formats a revision as in "@<rev>": 16 hex digits, or "head" for
// TidHead.
func FormatRev(rev zodb.Tid) string {
	if rev == TidHead {
		return "head"
	}
	return fmt.Sprintf("%016x", uint64(rev))
}

// parseAt parses "@<16 hex>" and, if allowHead, "@head".
func parseAt(s string, allowHead bool) (zodb.Tid, bool) {
	if !strings.HasPrefix(s, "@") {
		return 0, false
	}
	s = s[1:]
	if allowHead && s == "head" {
		return TidHead, true
	}
	v, err := ParseHex16(s)
	if err != nil {
		return 0, false
	}
	return zodb.Tid(v), true
}

// ---- watch requests (client → server) ----

// Watch is a "watch <foid> @<at>" or "watch <foid> -" request.
type Watch struct {
	Foid zodb.Oid
	At   zodb.Tid // meaningful unless Stop
	Stop bool     // "watch <foid> -": stop watching
}

// String returns the request payload.
func (w Watch) String() string {
	if w.Stop {
		return fmt.Sprintf("watch %016x -", uint64(w.Foid))
	}
	return fmt.Sprintf("watch %016x @%016x", uint64(w.Foid), uint64(w.At))
}

// WatchError is a malformed watch request. Its text follows the reference,
// which the server sends back as "error bad watch: <text>".
type WatchError struct{ Msg string }

func (e *WatchError) Error() string { return e.Msg }

// ParseWatch parses a watch request payload.
//
// Errors (texts as the reference's):
//
//	not a watch request: "<payload>"
//	expected 2 arguments, got <n>
//	invalid oid
//	invalid at
func ParseWatch(payload string) (Watch, error) {
	if !strings.HasPrefix(payload, "watch ") {
		return Watch{}, &WatchError{fmt.Sprintf("not a watch request: %q", payload)}
	}
	argv := strings.Split(payload[len("watch "):], " ")
	if len(argv) != 2 {
		return Watch{}, &WatchError{fmt.Sprintf("expected 2 arguments, got %d", len(argv))}
	}
	foid, err := ParseHex16(argv[0])
	if err != nil {
		return Watch{}, &WatchError{"invalid oid"}
	}
	w := Watch{Foid: zodb.Oid(foid)}
	if argv[1] == "-" {
		w.Stop = true
		return w, nil
	}
	at, ok := parseAt(argv[1], false)
	if !ok {
		return Watch{}, &WatchError{"invalid at"}
	}
	w.At = at
	return w, nil
}

// ---- pin requests (server → client) ----

// Pin is a "pin <foid> #<blk> @<rev>" request; Rev == TidHead means "@head"
// (unpin).
type Pin struct {
	Foid zodb.Oid
	Blk  int64
	Rev  zodb.Tid
}

// String returns the request payload.
func (p Pin) String() string {
	return fmt.Sprintf("pin %016x #%d @%s", uint64(p.Foid), p.Blk, FormatRev(p.Rev))
}

// PinError is a malformed pin request (texts as the reference C++ client's:
// "bad pin: '<msg>': <reason>").
type PinError struct {
	Payload string
	Reason  string
}

func (e *PinError) Error() string {
	return fmt.Sprintf("bad pin: '%s': %s", e.Payload, e.Reason)
}

// ParsePin parses a pin request payload.
func ParsePin(payload string) (Pin, error) {
	bad := func(reason string) (Pin, error) {
		return Pin{}, &PinError{Payload: payload, Reason: reason}
	}
	if !strings.HasPrefix(payload, "pin ") {
		return bad("not a pin request")
	}
	argv := strings.Split(payload[len("pin "):], " ")
	if len(argv) != 3 {
		return bad(fmt.Sprintf("expected 3 arguments, got %d", len(argv)))
	}
	foid, err := ParseHex16(argv[0])
	if err != nil {
		return bad("invalid foid")
	}
	if !strings.HasPrefix(argv[1], "#") {
		return bad("invalid blk")
	}
	blk, err := strconv.ParseInt(argv[1][1:], 10, 64)
	if err != nil || blk < 0 {
		return bad("invalid blk")
	}
	rev, ok := parseAt(argv[2], true)
	if !ok {
		return bad("invalid at")
	}
	return Pin{Foid: zodb.Oid(foid), Blk: blk, Rev: rev}, nil
}

// ---- replies ----

// Reply payloads.
const (
	ReplyOK  = "ok"
	ReplyAck = "ack"
	MsgBye   = "bye"
)

// ReplyError formats an error reply to a watch request.
func ReplyError(err error) string { return "error " + err.Error() }

// ParseWatchReply interprets a reply to a watch request: nil for "ok", an
// error carrying the server's text for "error <text>", and an error naming the
// reply for anything else.
func ParseWatchReply(reply string) error {
	switch {
	case reply == ReplyOK:
		return nil
	case strings.HasPrefix(reply, "error "):
		return errors.New(reply[len("error "):])
	default:
		return fmt.Errorf("unexpected reply %q", reply)
	}
}
