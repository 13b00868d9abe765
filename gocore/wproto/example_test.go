// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package wproto_test

import (
	"fmt"
	"strings"

	"wendelin.dev/wcfs/gocore/wproto"
)

// A server reads a client's watch request: the frame, then its payload.
func ExampleParseWatch() {
	f, err := wproto.ParseFrame("1 watch 0000000000000011 @03d9b5f4c3c6fa00\n")
	if err != nil {
		fmt.Println(err)
		return
	}
	w, err := wproto.ParseWatch(f.Payload)
	fmt.Println(f.Stream, w.Foid, w.At, w.Stop, err)

	w, _ = wproto.ParseWatch("watch 0000000000000011 -")
	fmt.Println(w.Stop, w)

	_, err = wproto.ParseWatch("watch 11 @03d9b5f4c3c6fa00")
	fmt.Println(err)
	// Output:
	// 1 0000000000000011 03d9b5f4c3c6fa00 false <nil>
	// true watch 0000000000000011 -
	// invalid oid
}

// A client reads the server's pins; @head maps the block back to head/.
func ExampleParsePin() {
	for _, payload := range []string{
		"pin 0000000000000011 #2 @03d9b5f4c3c6fa00",
		"pin 0000000000000011 #2 @head",
		"pin 0000000000000011 #-1 @head",
	} {
		p, err := wproto.ParsePin(payload)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(p.Foid, p.Blk, p.Rev == wproto.TidHead, wproto.FormatRev(p.Rev))
	}
	// Output:
	// 0000000000000011 2 false 03d9b5f4c3c6fa00
	// 0000000000000011 2 true head
	// bad pin: 'pin 0000000000000011 #-1 @head': invalid blk
}

// Frames come one per line; a reader bounds the line length, and a line that
// is not "<stream> <payload>" says why with the reference's text.
func ExampleReader() {
	r := wproto.NewReader(strings.NewReader("2 pin 0000000000000011 #0 @head\n01 ok\n"))
	f, err := r.ReadFrame()
	fmt.Printf("%d %q %v\n", f.Stream, f.Payload, err)
	_, err = r.ReadFrame()
	fmt.Println(err)
	// Output:
	// 2 "pin 0000000000000011 #0 @head" <nil>
	// invalid frame: "01 ok\n" (invalid stream)
}

// A client interprets the server's reply to its watch request.
func ExampleParseWatchReply() {
	fmt.Println(wproto.ParseWatchReply("ok"))
	fmt.Println(wproto.ParseWatchReply("error bad watch: invalid at"))
	fmt.Println(wproto.ParseWatchReply("ack"))
	// Output:
	// <nil>
	// bad watch: invalid at
	// unexpected reply "ack"
}
