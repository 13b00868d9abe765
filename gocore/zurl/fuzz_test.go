// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package zurl

import (
	"errors"
	"path/filepath"
	"testing"
)

// FuzzNormalize checks that any input either is refused with an *Error or
// normalizes to a zurl that is accepted again, normalizes to itself and
// derives the same mountpoint.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"file:///srv/data.fs", "zeo://localhost:8100?storage=x", "demo:(file:///a)/(file:///b)",
		"neo://db@b:1,a:2?ca=x&b=1&a=%ff+%C3%A9#f", "neos://db@[::1]:2051/p?compress=1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		norm, err := Normalize(in)
		if err != nil {
			var zerr *Error
			if !errors.As(err, &zerr) {
				t.Fatalf("%q: error %v is not an *Error", in, err)
			}
			return
		}
		again, err := Normalize(norm)
		if err != nil || again != norm {
			t.Fatalf("%q -> %q -> %q, %v: not idempotent", in, norm, again, err)
		}
		a, err1 := Mountpoint(in)
		b, err2 := Mountpoint(norm)
		if err1 != nil || err2 != nil || a != b || filepath.Dir(a) != MountRoot {
			t.Fatalf("%q: mountpoints %q (%v) and %q (%v)", in, a, err1, b, err2)
		}
	})
}
