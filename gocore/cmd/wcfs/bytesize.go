// Copyright (C) 2026  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package main

import (
	"fmt"
	"strconv"
	"strings"
)

// byteSize is a flag value of a size in bytes: a number with an optional
// binary suffix K, M, G (or KiB, MiB, GiB; case does not matter).
type byteSize int64

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	n := int64(*b)
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"G", 30}, {"M", 20}, {"K", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

func (b *byteSize) Set(s string) error {
	num := strings.ToUpper(strings.TrimSpace(s))
	num = strings.TrimSuffix(num, "IB")
	num = strings.TrimSuffix(num, "B")
	shift := uint(0)
	if k := len(num); k > 0 {
		switch num[k-1] {
		case 'K':
			shift = 10
		case 'M':
			shift = 20
		case 'G':
			shift = 30
		}
		if shift != 0 {
			num = num[:k-1]
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return fmt.Errorf("invalid size %q (want a number of bytes, e.g. 0, 4096, 16M, 1G)", s)
	}
	*b = byteSize(n << shift)
	return nil
}
