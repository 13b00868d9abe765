// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package zurl

import (
	"errors"
	"net/url"
	"path/filepath"
	"testing"
)

// FuzzNormalize checks that any input either is refused with an *Error or
// normalizes to a zurl that is accepted again and normalizes to itself, as
// Parse normalizes it.
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
		// Parse is stricter (neo/go must be able to parse it) and
		// resolves relative paths; what it keeps, it normalizes alike
		if z, err := ParseIn(in, "/"); err == nil && z.StorageURL() == in && z.Normalized() != norm {
			t.Fatalf("%q: normalizes to %q, parses to %q", in, norm, z.Normalized())
		}
	})
}

// FuzzParse checks that any input either is refused with an *Error or
// parses to a zurl whose storage URL parses again, anywhere, to the same
// storage, and whose FileStorage path (if any) is absolute and what neo/go
// reads from the storage URL.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"file:///srv/data.fs", "file://rel/x.fs?q#f", "file:a%20b.fs", "/srv/x.fs", "../x?y#z%.fs",
		"zeo://[::1]:8100", "neo://db@b:1,a:2?ca=x", "demo:(file://a.fs)/(zeo://h:1)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		z, err := ParseIn(in, "/home/u")
		if err != nil {
			var zerr *Error
			if !errors.As(err, &zerr) {
				t.Fatalf("%q: error %v is not an *Error", in, err)
			}
			return
		}
		again, err := ParseIn(z.StorageURL(), "/elsewhere")
		if err != nil || again.StorageURL() != z.StorageURL() || !again.Equivalent(z) || again.ID() != z.ID() {
			t.Fatalf("%q -> %q -> %v, %v", in, z.StorageURL(), again, err)
		}
		if filepath.Dir(z.Mountpoint()) != MountRoot || len(z.ID()) != 40 {
			t.Fatalf("%q: mountpoint %q", in, z.Mountpoint())
		}
		if p := z.FilePath(); p != "" {
			u, err := url.Parse(z.StorageURL())
			if !filepath.IsAbs(p) || err != nil || u.Host+u.Path != p {
				t.Fatalf("%q: file %q, storage URL %q reads as %v (%v)", in, p, z.StorageURL(), u, err)
			}
		}
	})
}
