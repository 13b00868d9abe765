// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package main

import "testing"

func TestByteSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
		str  string
	}{
		{"0", 0, "0"},
		{"4096", 4096, "4K"},
		{"16M", 16 << 20, "16M"},
		{"16MiB", 16 << 20, "16M"},
		{"16mb", 16 << 20, "16M"},
		{"1G", 1 << 30, "1G"},
		{"3k", 3 << 10, "3K"},
		{"1000", 1000, "1000"},
	} {
		var b byteSize
		if err := b.Set(tt.in); err != nil {
			t.Errorf("Set(%q): %s", tt.in, err)
			continue
		}
		if int64(b) != tt.want || b.String() != tt.str {
			t.Errorf("Set(%q) = %d %q, want %d %q", tt.in, int64(b), b.String(), tt.want, tt.str)
		}
	}
	for _, bad := range []string{"", "M", "-1", "1T", "x", "99999999999G"} {
		var b byteSize
		if err := b.Set(bad); err == nil {
			t.Errorf("Set(%q) = %d, want an error", bad, int64(b))
		}
	}
}
