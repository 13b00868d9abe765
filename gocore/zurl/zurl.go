// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

// Package zurl parses, validates and normalizes ZODB storage URLs (zurls)
// and derives the WCFS mountpoint of a zurl.
//
// A zurl is parsed once where it enters the program (a gateway call, the
// server's command line) into a ZURL value, which everything else takes:
//
//	z, err := zurl.Parse("neo://db@b:2,a:1?ca=...")
//	z.Raw()        // as given, for messages
//	z.StorageURL() // what a server is given and neo/go opens
//	z.Normalized() // neos://db@a:1,b:2
//	z.Mountpoint() // /dev/shm/wcfs/<ID>
//	z.IsNetwork()  // true
//
// Two zurls designate the same storage iff their normalized forms are equal;
// the mountpoint of a zurl is
//
//	/dev/shm/wcfs/<sha1 hex of the UTF-8 bytes of the normalized zurl>
//
// so that every process, written in Python (the reference gateway) or in Go
// (this project), finds the server of a storage at the same place.
//
// # FileStorage paths
//
// One rule, for the gateway and the server alike: a relative FileStorage
// path means the file relative to the working directory of the process that
// parses the zurl, and is made absolute before anything is derived from it,
// so that a server, whatever its working directory, opens the file the user
// meant, and two files never share a mountpoint. The path of a file:// zurl
// is its host and path joined, as neo/go's FileStorage driver takes it (and
// as wendelin.core's zstor_2zurl writes file://<name as opened>):
//
//   - file:///srv/data.fs, file:/srv/data.fs: absolute, kept as given (the
//     mountpoint is the reference's);
//   - file://data.fs, file://rel/data.fs, file:data.fs: relative, become
//     file:///<cwd>/data.fs (lexically: the working directory as the kernel
//     reports it, joined and cleaned; symlinks are not resolved);
//   - a plain path (no scheme), absolute or relative, is the FileStorage
//     file of that name: /srv/data.fs becomes file:///srv/data.fs (the same
//     mountpoint as that zurl);
//   - inside demo:(base)/(changes) the same rules apply to base and changes.
//
// StorageURL is the resolved form: a server is given it, shows it in
// .wcfs/zurl and as its mount source; for an absolute zurl it is the zurl as
// given. Relative paths of zeo:// unix sockets are not resolved.
//
// # Normalization
//
// Normalization follows the reference (spec section 7.1) byte for byte:
//
//   - file://, zeo:// and demo: zurls are kept as they are;
//   - neo:// and neos:// zurls are split like Python's urllib.parse.urlsplit;
//     their query is parsed like parse_qs (fields without a value dropped,
//     '+' and %XX decoded, invalid UTF-8 replaced as Python does); the TLS
//     parameters ca, cert and key are removed and, if any was given, the
//     scheme becomes neos; the client-only options compress, read-only,
//     logfile and cache-size are removed; the remaining keys are re-encoded
//     in sorted order like urlencode(doseq=True); the master addresses after
//     "<cluster>@" are sorted;
//   - any other scheme is refused.
//
// The package additionally refuses zurls that are not valid UTF-8, contain
// control characters, start with a space, lack what their scheme needs (a
// path for file://, an address for zeo://, a cluster and a master for
// neo://), or give an address without a port or with a port out of
// 1-65535, so that a typo is reported before a server is spawned. A Go test checks the normalization against Python's urllib on
// many inputs.
package zurl

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// MountRoot is the directory under which WCFS servers are mounted.
const MountRoot = "/dev/shm/wcfs"

// Error is returned for a zurl that cannot be used.
type Error struct {
	Zurl   string // the zurl as given
	Reason string // what is wrong with it
	Err    error  // a sentinel such as ErrUnknownScheme, or nil
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid zurl %q: %s", e.Zurl, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrUnknownScheme is wrapped by the error for a zurl whose scheme has no
// normalization rule (and that no WCFS server can serve).
var ErrUnknownScheme = errors.New("unknown zurl scheme")

// Schemes lists the zurl schemes that WCFS knows.
var Schemes = []string{"file", "zeo", "neo", "neos", "demo"}

// checkText refuses what no zurl contains: the empty string, invalid UTF-8,
// control characters, a leading space (urlsplit would strip it).
func checkText(zurl string) error {
	bad := func(reason string) error { return &Error{Zurl: zurl, Reason: reason} }
	if zurl == "" {
		return bad("empty")
	}
	if !utf8.ValidString(zurl) {
		return bad("not valid UTF-8")
	}
	for _, r := range zurl {
		if r < 0x20 || r == 0x7f {
			return bad(fmt.Sprintf("contains control character %q", r))
		}
	}
	if zurl[0] == ' ' {
		return bad("starts with a space")
	}
	return nil
}

// Normalize returns the normalized form of zurl (see the package doc).
// Normalize is idempotent: Normalize(Normalize(z)) == Normalize(z). It takes
// URLs only: a plain path is refused (Parse turns it into a file:// zurl).
func Normalize(zurl string) (string, error) {
	bad := func(format string, argv ...any) (string, error) {
		return "", &Error{Zurl: zurl, Reason: fmt.Sprintf(format, argv...)}
	}
	if err := checkText(zurl); err != nil {
		return "", err
	}

	u := urlsplit(zurl)
	if u.scheme == "file" || u.scheme == "zeo" {
		if err := checkBrackets(u.netloc); err != nil {
			return bad("%s", err)
		}
	}
	switch u.scheme {
	case "":
		return bad("no scheme (want %s)", schemeList())
	case "file":
		if u.netloc == "" && u.path == "" {
			return bad("file:// needs a path, e.g. file:///srv/data.fs")
		}
		return zurl, nil
	case "zeo":
		if u.netloc == "" && u.path == "" {
			return bad("zeo:// needs an address, e.g. zeo://localhost:8100")
		}
		if u.netloc != "" {
			if err := checkHostPort(u.netloc); err != nil {
				return bad("%s", err)
			}
		}
		return zurl, nil
	case "demo":
		if u.path == "" {
			return bad("demo: needs (base)/(changes), e.g. demo:(file:///a.fs)/(file:///b.fs)")
		}
		return zurl, nil
	case "neo", "neos":
		return normalizeNEO(zurl, u)
	default:
		return "", &Error{zurl, fmt.Sprintf("can't normalize zurl with scheme %s (want %s)",
			u.scheme, schemeList()), ErrUnknownScheme}
	}
}

func schemeList() string {
	return "file://, zeo://, neo://, neos:// or demo:"
}

// normalizeNEO applies the neo/neos rule of spec 7.1 to the split zurl.
func normalizeNEO(zurl string, u splitURL) (string, error) {
	cluster, masters, ok := strings.Cut(u.netloc, "@")
	if !ok || cluster == "" || masters == "" {
		return "", &Error{Zurl: zurl, Reason: fmt.Sprintf("%s:// needs <cluster>@<master>[,<master>...], e.g. neo://db@127.0.0.1:2051", u.scheme)}
	}
	mv := strings.Split(masters, ",")
	for _, m := range mv {
		// each master on its own (urlsplit checks brackets on the netloc as
		// a whole, which the reordering below could break)
		if err := checkBrackets(m); m == "" || strings.Contains(m, "@") || err != nil {
			return "", &Error{Zurl: zurl, Reason: fmt.Sprintf("bad master address %q", m)}
		}
		if err := checkHostPort(m); err != nil {
			return "", &Error{Zurl: zurl, Reason: fmt.Sprintf("bad master %s", err)}
		}
	}
	sort.Strings(mv) // Python sorts by code point = UTF-8 byte order
	netloc := cluster + "@" + strings.Join(mv, ",")

	q := parseQS(u.query)
	scheme := u.scheme
	for _, k := range []string{"ca", "cert", "key"} {
		if _, ok := q.vals[k]; ok { // blank values are already dropped
			scheme = "neos"
		}
		q.del(k)
	}
	for _, k := range []string{"compress", "read-only", "logfile", "cache-size"} {
		q.del(k)
	}
	return urlunsplit(scheme, netloc, u.path, q.encode(), u.fragment), nil
}
