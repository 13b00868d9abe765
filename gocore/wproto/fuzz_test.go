// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package wproto

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParseLine checks that arbitrary input never panics, and that whatever
// parses formats back to an equivalent message.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"1 watch 0000000000000001 @00000000000000aa\n",
		"3 watch 0000000000000001 -\n",
		"2 pin 0000000000000001 #3 @03f58e0033333333\n",
		"4 pin 0000000000000001 #0 @head\n",
		"2 ack\n", "1 bye\n", "0 error: x\n", "zzz hello\n", "1 ok\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		fr, err := ParseFrame(line)
		if err != nil {
			return
		}
		again, err := ParseFrame(fr.String())
		if err != nil || again != fr {
			t.Fatalf("frame %q does not round-trip: %+v %v", line, again, err)
		}
		if w, err := ParseWatch(fr.Payload); err == nil {
			w2, err := ParseWatch(w.String())
			if err != nil || w2 != w {
				t.Fatalf("watch %q does not round-trip: %+v %v", fr.Payload, w2, err)
			}
		}
		if p, err := ParsePin(fr.Payload); err == nil {
			p2, err := ParsePin(p.String())
			if err != nil || p2 != p {
				t.Fatalf("pin %q does not round-trip: %+v %v", fr.Payload, p2, err)
			}
		}
		r := NewReader(strings.NewReader(line))
		for {
			if _, err := r.ReadFrame(); err != nil && err.Error() == "" {
				t.Fatal("empty error")
			} else if err != nil {
				break
			}
		}
	})
}

// FuzzLinkRX feeds arbitrary bytes to the receiver of a server link whose
// requests are answered: it never panics, and either stays up (everything
// valid so far) or goes down with "bye" or a protocol error that it reports
// as the last line it sends, "0 error: ...", before EOF.
func FuzzLinkRX(f *testing.F) {
	for _, s := range []string{
		"1 watch 0000000000000001 @00000000000000aa\n3 bye\n",
		"zzz hello\n",
		"1 a\n1 b\n",
		"2 ack\n",
		"1 x\n" + strings.Repeat("y", MaxLine+1),
		"5 watch 0000000000000001 -\n5 again\n7 bye\n9 after\n",
		"1 ok",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		p := NewPipe()
		srv := NewLink(RoleServer, p)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		served := make(chan struct{})
		go func() {
			defer close(served)
			for {
				req, err := srv.RecvReq(ctx)
				if err != nil {
					return
				}
				srv.Reply(ctx, req, "ok")
			}
		}()
		// the client: write everything, then close; read all the server sends
		var out []byte
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			b := make([]byte, 64)
			for {
				n, err := p.PeerRead(ctx, b)
				out = append(out, b[:n]...)
				if err != nil {
					return
				}
			}
		}()
		writeDone := make(chan struct{})
		go func() {
			defer close(writeDone)
			if _, err := p.PeerWrite(ctx, in); err == nil {
				p.PeerCloseWrite()
			}
		}()
		<-srv.RxDone() // then the server closes the link (spec 2.9)
		srv.Close()
		<-writeDone
		<-readDone
		<-served
		if ctx.Err() != nil {
			t.Fatalf("timeout")
		}

		err := srv.Err()
		var pe *ProtocolError
		lines := strings.SplitAfter(string(out), "\n")
		if len(lines) > 0 && lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		switch {
		case errors.As(err, &pe):
			if len(lines) == 0 || lines[len(lines)-1] != "0 error: "+pe.Msg+"\n" {
				t.Fatalf("protocol error %q: last lines sent %q", pe.Msg, lines)
			}
		case errors.Is(err, ErrBye), errors.Is(err, ErrPeerClosed):
		default:
			t.Fatalf("link down with %v", err)
		}
		for _, l := range lines {
			if !strings.HasSuffix(l, " ok\n") && !strings.HasPrefix(l, "0 error: ") {
				t.Fatalf("unexpected line sent: %q", l)
			}
		}
	})
}
