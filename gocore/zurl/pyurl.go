// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package zurl

// The pieces of Python's urllib.parse (CPython 3.11) that the reference's
// normalization goes through, reproduced so that Go derives the same
// mountpoint as Python. Only what zurls can exercise is covered: inputs are
// valid UTF-8 without control characters (checked by Normalize).

import (
	"errors"
	"net/netip"
	"sort"
	"strings"
)

// splitURL is the result of urlsplit.
type splitURL struct {
	scheme, netloc, path, query, fragment string
}

const schemeChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-."

// urlsplit splits url like urllib.parse.urlsplit(url): the scheme is
// lowercased; "//" introduces the netloc, which ends at the first '/', '?' or
// '#'; then the fragment is split off at the first '#' and the query at the
// first '?'.
func urlsplit(url string) splitURL {
	var u splitURL
	if i := strings.IndexByte(url, ':'); i > 0 && isASCIIAlpha(url[0]) {
		if strings.Trim(url[:i], schemeChars) == "" {
			u.scheme, url = strings.ToLower(url[:i]), url[i+1:]
		}
	}
	if strings.HasPrefix(url, "//") {
		end := len(url)
		for _, c := range "/?#" {
			if j := strings.IndexRune(url[2:], c); j >= 0 && j+2 < end {
				end = j + 2
			}
		}
		u.netloc, url = url[2:end], url[end:]
	}
	url, u.fragment, _ = strings.Cut(url, "#")
	u.path, u.query, _ = strings.Cut(url, "?")
	return u
}

func isASCIIAlpha(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

var errIPv6 = errors.New("invalid IPv6 address in brackets")

// checkBrackets refuses a netloc with unbalanced brackets, or whose host
// (after the last '@') is bracketed but not an IPv6 address, as urlsplit
// does.
func checkBrackets(netloc string) error {
	open, close := strings.Contains(netloc, "["), strings.Contains(netloc, "]")
	if open != close {
		return errIPv6
	}
	if !open {
		return nil
	}
	hostport := netloc[strings.LastIndexByte(netloc, '@')+1:]
	before, bracketed, ok := strings.Cut(hostport, "[")
	if !ok {
		return nil
	}
	if before != "" {
		return errIPv6
	}
	host, port, _ := strings.Cut(bracketed, "]")
	if port != "" && port[0] != ':' {
		return errIPv6
	}
	if strings.HasPrefix(host, "v") || strings.HasPrefix(host, "V") {
		return nil // IPvFuture: accepted loosely
	}
	if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
		return errIPv6
	}
	return nil
}

// urlunsplit joins the parts like urllib.parse.urlunsplit for a non-empty
// netloc.
func urlunsplit(scheme, netloc, path, query, fragment string) string {
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(netloc)
	if path != "" && path[0] != '/' {
		b.WriteByte('/')
	}
	b.WriteString(path)
	if query != "" {
		b.WriteString("?" + query)
	}
	if fragment != "" {
		b.WriteString("#" + fragment)
	}
	return b.String()
}

// query is the result of parse_qs: values per key, in order of appearance.
type query struct {
	vals map[string][]string
}

// parseQS parses a query like urllib.parse.parse_qs(qs): fields are
// separated by '&'; fields without '=' or with an empty value are dropped;
// '+' means space and %XX escapes are decoded.
func parseQS(qs string) query {
	q := query{vals: map[string][]string{}}
	for _, field := range strings.Split(qs, "&") {
		name, value, ok := strings.Cut(field, "=")
		if !ok || value == "" {
			continue
		}
		name, value = unquotePlus(name), unquotePlus(value)
		q.vals[name] = append(q.vals[name], value)
	}
	return q
}

func (q query) del(key string) { delete(q.vals, key) }

// encode formats q like urlencode(sorted(q.items()), doseq=True).
func (q query) encode() string {
	keys := make([]string, 0, len(q.vals))
	for k := range q.vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var fields []string
	for _, k := range keys {
		for _, v := range q.vals[k] {
			fields = append(fields, quotePlus(k)+"="+quotePlus(v))
		}
	}
	return strings.Join(fields, "&")
}

// unquotePlus is unquote(s.replace('+', ' ')): every maximal run of ASCII
// characters is %XX-decoded and the resulting bytes are decoded as UTF-8
// with errors='replace'; non-ASCII characters are kept.
func unquotePlus(s string) string {
	s = strings.ReplaceAll(s, "+", " ")
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] < 0x80 {
			i++
		}
		if i > 0 {
			b.WriteString(decodeUTF8Replace(unquoteBytes(s[:i])))
			s = s[i:]
			continue
		}
		for i < len(s) && s[i] >= 0x80 {
			i++
		}
		b.WriteString(s[:i])
		s = s[i:]
	}
	return b.String()
}

// unquoteBytes decodes %XX escapes (either hex case); a '%' not followed by
// two hex digits stays as it is.
func unquoteBytes(s string) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		out = append(out, s[i])
	}
	return out
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

// decodeUTF8Replace decodes b as UTF-8 like Python's bytes.decode('utf-8',
// 'replace'): every maximal subpart of an ill-formed sequence becomes one
// U+FFFD (Go's decoder would emit one per byte).
func decodeUTF8Replace(b []byte) string {
	var out strings.Builder
	for i := 0; i < len(b); {
		c := b[i]
		if c < 0x80 {
			out.WriteByte(c)
			i++
			continue
		}
		n, lo, hi := 0, byte(0x80), byte(0xBF)
		switch {
		case 0xC2 <= c && c <= 0xDF:
			n = 2
		case c == 0xE0:
			n, lo = 3, 0xA0
		case c == 0xED:
			n, hi = 3, 0x9F
		case 0xE1 <= c && c <= 0xEF:
			n = 3
		case c == 0xF0:
			n, lo = 4, 0x90
		case 0xF1 <= c && c <= 0xF3:
			n = 4
		case c == 0xF4:
			n, hi = 4, 0x8F
		}
		j := i + 1
		if n > 0 && j < len(b) && lo <= b[j] && b[j] <= hi {
			j++
			for j-i < n && j < len(b) && 0x80 <= b[j] && b[j] <= 0xBF {
				j++
			}
		}
		if n > 0 && j-i == n {
			out.Write(b[i:j])
		} else {
			out.WriteRune('\uFFFD')
		}
		i = j
	}
	return out.String()
}

// quotePlus is quote_plus(s, safe=""): UTF-8 bytes other than ASCII letters,
// digits and "_.-~" become %XX (upper case), and space becomes '+'.
func quotePlus(s string) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isASCIIAlpha(c) || '0' <= c && c <= '9' || strings.IndexByte("_.-~", c) >= 0:
			b.WriteByte(c)
		case c == ' ':
			b.WriteByte('+')
		default:
			b.WriteByte('%')
			b.WriteByte(hexdig[c>>4])
			b.WriteByte(hexdig[c&15])
		}
	}
	return b.String()
}
