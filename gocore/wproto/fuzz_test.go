// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package wproto

import (
	"strings"
	"testing"
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
