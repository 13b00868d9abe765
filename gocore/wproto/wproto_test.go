// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package wproto

import (
	"errors"
	"io"
	"strings"
	"testing"

	"lab.nexedi.com/kirr/neo/go/zodb"
)

func TestParseFrame(t *testing.T) {
	for _, tt := range []struct {
		line string
		want Frame
		err  string
	}{
		{"1 watch 0000000000000001 @00000000000000aa\n", Frame{1, "watch 0000000000000001 @00000000000000aa"}, ""},
		{"2 pin 0000000000000001 #3 @head", Frame{2, "pin 0000000000000001 #3 @head"}, ""},
		{"0 error: x\n", Frame{0, "error: x"}, ""},
		{"18446744073709551615 ack\n", Frame{18446744073709551615, "ack"}, ""},
		{"7 \n", Frame{7, ""}, ""},
		// errors, with the reference's texts
		{"zzz hello\n", Frame{}, `invalid frame: "zzz hello\n" (invalid stream)`},
		{"hello\n", Frame{}, `invalid frame: "hello\n"`},
		{"01 ack\n", Frame{}, `invalid frame: "01 ack\n" (invalid stream)`},
		{"+1 ack\n", Frame{}, `invalid frame: "+1 ack\n" (invalid stream)`},
		{"18446744073709551616 ack\n", Frame{}, `invalid frame: "18446744073709551616 ack\n" (invalid stream)`},
		{"1 a\nb\n", Frame{}, `invalid frame: "1 a\nb\n" (embedded newline)`},
	} {
		f, err := ParseFrame(tt.line)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseFrame(%q): err = %v; want %q", tt.line, err, tt.err)
			}
			continue
		}
		if err != nil || f != tt.want {
			t.Errorf("ParseFrame(%q) = %+v, %v; want %+v", tt.line, f, err, tt.want)
		}
		if tt.line[len(tt.line)-1] == '\n' && f.String() != tt.line {
			t.Errorf("Frame.String() = %q; want %q", f.String(), tt.line)
		}
	}
}

func TestStreams(t *testing.T) {
	for s, want := range map[uint64][2]bool{0: {false, false}, 1: {true, false}, 2: {false, true}, 3: {true, false}, 1 << 63: {false, true}} {
		if IsClientStream(s) != want[0] || IsServerStream(s) != want[1] {
			t.Errorf("stream %d: client=%v server=%v; want %v", s, IsClientStream(s), IsServerStream(s), want)
		}
	}
}

func TestReader(t *testing.T) {
	in := "1 watch 0000000000000001 @00000000000000aa\n2 ack\n" + "3 " + strings.Repeat("x", MaxLine) + "\n"
	r := NewReader(strings.NewReader(in))
	f, err := r.ReadFrame()
	if err != nil || f.Stream != 1 {
		t.Fatalf("frame 1: %+v %v", f, err)
	}
	f, err = r.ReadFrame()
	if err != nil || f != (Frame{2, "ack"}) {
		t.Fatalf("frame 2: %+v %v", f, err)
	}
	if _, err = r.ReadFrame(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("long line: err = %v; want ErrLineTooLong", err)
	}

	r = NewReader(strings.NewReader("1 bye\n2 ac"))
	if _, err := r.ReadLine(); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadLine(); err != io.ErrUnexpectedEOF || line != "2 ac" {
		t.Fatalf("partial: %q %v; want io.ErrUnexpectedEOF", line, err)
	}
	if _, err := r.ReadLine(); err != io.EOF {
		t.Fatalf("eof: %v", err)
	}
	// a line of exactly MaxLine bytes is accepted
	line := "1 " + strings.Repeat("y", MaxLine-3) + "\n"
	if l, err := NewReader(strings.NewReader(line)).ReadLine(); err != nil || l != line {
		t.Fatalf("MaxLine line: %v", err)
	}
}

func TestParseWatch(t *testing.T) {
	for _, tt := range []struct {
		payload string
		want    Watch
		err     string
	}{
		{"watch 0000000000000011 @03f58e0033333333", Watch{Foid: 0x11, At: 0x03f58e0033333333}, ""},
		{"watch 00000000000000AB @00000000000000FF", Watch{Foid: 0xab, At: 0xff}, ""},
		{"watch 0000000000000011 -", Watch{Foid: 0x11, Stop: true}, ""},
		{"bla bla", Watch{}, `not a watch request: "bla bla"`},
		{"watch", Watch{}, `not a watch request: "watch"`},
		{"watch 0000000000000011", Watch{}, "expected 2 arguments, got 1"},
		{"watch 0000000000000011 @00000000000000aa x", Watch{}, "expected 2 arguments, got 3"},
		{"watch 11 @00000000000000aa", Watch{}, "invalid oid"},
		{"watch 000000000000001g @00000000000000aa", Watch{}, "invalid oid"},
		{"watch 0000000000000011 00000000000000aa", Watch{}, "invalid at"},
		{"watch 0000000000000011 @head", Watch{}, "invalid at"},
		{"watch 0000000000000011 @aa", Watch{}, "invalid at"},
	} {
		w, err := ParseWatch(tt.payload)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParseWatch(%q): err = %v; want %q", tt.payload, err, tt.err)
			}
			continue
		}
		if err != nil || w != tt.want {
			t.Errorf("ParseWatch(%q) = %+v, %v; want %+v", tt.payload, w, err, tt.want)
		}
		if strings.ToLower(tt.payload) != w.String() {
			t.Errorf("Watch.String() = %q; want %q", w.String(), tt.payload)
		}
	}
}

func TestParsePin(t *testing.T) {
	for _, tt := range []struct {
		payload string
		want    Pin
		err     string
	}{
		{"pin 0000000000000011 #2 @03f58e0033333333", Pin{0x11, 2, 0x03f58e0033333333}, ""},
		{"pin 0000000000000011 #0 @head", Pin{0x11, 0, TidHead}, ""},
		{"ping", Pin{}, "bad pin: 'ping': not a pin request"},
		{"pin 0000000000000011 #2", Pin{}, "bad pin: 'pin 0000000000000011 #2': expected 3 arguments, got 2"},
		{"pin 11 #2 @head", Pin{}, "bad pin: 'pin 11 #2 @head': invalid foid"},
		{"pin 0000000000000011 2 @head", Pin{}, "bad pin: 'pin 0000000000000011 2 @head': invalid blk"},
		{"pin 0000000000000011 #-1 @head", Pin{}, "bad pin: 'pin 0000000000000011 #-1 @head': invalid blk"},
		{"pin 0000000000000011 #x @head", Pin{}, "bad pin: 'pin 0000000000000011 #x @head': invalid blk"},
		{"pin 0000000000000011 #1 head", Pin{}, "bad pin: 'pin 0000000000000011 #1 head': invalid at"},
	} {
		p, err := ParsePin(tt.payload)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ParsePin(%q): err = %v; want %q", tt.payload, err, tt.err)
			}
			continue
		}
		if err != nil || p != tt.want {
			t.Errorf("ParsePin(%q) = %+v, %v; want %+v", tt.payload, p, err, tt.want)
		}
		if p.String() != tt.payload {
			t.Errorf("Pin.String() = %q; want %q", p.String(), tt.payload)
		}
	}
}

func TestWatchReply(t *testing.T) {
	if err := ParseWatchReply("ok"); err != nil {
		t.Fatal(err)
	}
	err := ParseWatchReply("error setup watch f0000000000000011 @0000000000000001: going back in history is forbidden")
	if err == nil || err.Error() != "setup watch f0000000000000011 @0000000000000001: going back in history is forbidden" {
		t.Fatalf("error reply: %v", err)
	}
	if err := ParseWatchReply("okay"); err == nil {
		t.Fatal("okay accepted")
	}
	if ReplyError(errors.New("x")) != "error x" {
		t.Fatal("ReplyError")
	}
	if FormatRev(zodb.Tid(1)) != "0000000000000001" || FormatRev(TidHead) != "head" {
		t.Fatal("FormatRev")
	}
}
