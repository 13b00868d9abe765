// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package zurl

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ZURL is a parsed zurl. It is a small value: parse a zurl once where it
// enters the program (a gateway call, a command line) and hand the value on.
// The zero ZURL is not a zurl (see IsZero).
type ZURL struct {
	raw     string // as given
	abs     string // relative paths resolved: what servers are given
	norm    string // Normalize(abs)
	scheme  string // file, zeo, neo, neos or demo
	id      string // sha1 hex of norm
	file    string // file: the FileStorage path neo/go opens
	network bool
}

// Parse parses a zurl given by the user. A relative FileStorage path (a
// plain path, file://rel.fs, file:rel.fs, also inside demo:) is resolved
// against the working directory of this process (see the package doc).
func Parse(s string) (ZURL, error) {
	return parse(s, "", 0)
}

// ParseIn is Parse with relative paths resolved against dir (absolute), for
// a zurl that another process was given in its working directory dir.
func ParseIn(s, dir string) (ZURL, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return ZURL{}, &Error{Zurl: s, Reason: fmt.Sprintf("working directory %q is not absolute", dir)}
	}
	return parse(s, dir, 0)
}

// MustParse is Parse that panics on error: for zurls known to be valid
// (tests, constants).
func MustParse(s string) ZURL {
	z, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return z
}

// maxDemoDepth bounds demo: zurls nested in demo: zurls.
const maxDemoDepth = 4

// demoRe splits demo:(<base>)/(<changes>) as neo/go does.
var demoRe = regexp.MustCompile(`^\((.*)\)/\((.*)\)$`)

func parse(s, cwd string, depth int) (ZURL, error) {
	bad := func(format string, argv ...any) (ZURL, error) {
		return ZURL{}, &Error{Zurl: s, Reason: fmt.Sprintf(format, argv...)}
	}
	if err := checkText(s); err != nil {
		return ZURL{}, err
	}
	z := ZURL{raw: s, abs: s}
	u := urlsplit(s)
	switch u.scheme {
	case "":
		// a plain path: the FileStorage file of that name
		p, err := absPath(s, cwd)
		if err != nil {
			return bad("%s", err)
		}
		z.abs, z.file = fileURL(p, "", ""), p
	case "file":
		gu, err := url.Parse(s)
		if err != nil {
			return bad("%s", unwrapURLError(err))
		}
		// the path as neo/go's FileStorage driver takes it (host and path
		// joined: file://rel/x.fs is rel/x.fs), or the opaque part of
		// file:rel.fs, which neo/go would not find
		p := gu.Host + gu.Path
		if gu.Opaque != "" {
			if p, err = url.PathUnescape(gu.Opaque); err != nil {
				return bad("%s", err)
			}
		}
		if p == "" {
			return bad("file:// needs a path, e.g. file:///srv/data.fs")
		}
		z.file = p
		if !filepath.IsAbs(p) {
			if z.file, err = absPath(p, cwd); err != nil {
				return bad("%s", err)
			}
			z.abs = fileURL(z.file, gu.RawQuery, gu.EscapedFragment())
		}
	case "demo":
		m := demoRe.FindStringSubmatch(s[len("demo:"):])
		if m == nil {
			return bad("demo: needs (base)/(changes), e.g. demo:(file:///a.fs)/(file:///b.fs)")
		}
		if depth >= maxDemoDepth {
			return bad("demo: zurls nested more than %d deep", maxDemoDepth)
		}
		var parts [2]ZURL
		for i, sub := range m[1:] {
			p, err := parse(sub, cwd, depth+1)
			if err != nil {
				return bad("demo: %s", err)
			}
			parts[i] = p
		}
		z.abs = "demo:(" + parts[0].abs + ")/(" + parts[1].abs + ")"
		z.network = parts[0].network || parts[1].network
		// neo/go opens only what url.Parse leaves entirely opaque
		if gu, err := url.Parse(z.abs); err != nil || gu.Opaque == "" || gu.RawQuery != "" || gu.Fragment != "" {
			return bad("demo: the zurls inside must not contain '?' or '#'")
		}
	case "zeo", "neo", "neos":
		z.network = true
	}
	norm, err := Normalize(z.abs)
	if err != nil {
		var zerr *Error
		if z.abs != s && errors.As(err, &zerr) { // the resolved form is wrong: name what was given
			return ZURL{}, &Error{Zurl: s, Reason: zerr.Reason, Err: zerr.Err}
		}
		return ZURL{}, err
	}
	z.norm = norm
	z.scheme = urlsplit(norm).scheme
	sum := sha1.Sum([]byte(norm))
	z.id = hex.EncodeToString(sum[:])
	return z, nil
}

// absPath makes the FileStorage path p absolute and clean, relative to cwd
// ("": this process's working directory, from the kernel).
func absPath(p, cwd string) (string, error) {
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	if cwd == "" {
		var err error
		if cwd, err = unix.Getwd(); err != nil {
			return "", fmt.Errorf("relative path %q: working directory: %w", p, err)
		}
	}
	return filepath.Join(cwd, p), nil
}

// fileURL returns the file:// zurl of the absolute path p: the characters
// that would end or change the path in a URL ('%', '?', '#') are escaped,
// so that neo/go opens exactly p.
func fileURL(p, rawQuery, fragment string) string {
	s := "file://" + strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(p)
	if rawQuery != "" {
		s += "?" + rawQuery
	}
	if fragment != "" {
		s += "#" + fragment
	}
	return s
}

// unwrapURLError drops url.Error's repetition of the URL.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}

// checkHostPort checks a network address host:port of a zeo or neo zurl.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: want host:port", addr)
	}
	if host == "" {
		return fmt.Errorf("address %q: no host", addr)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 || strings.Trim(port, "0123456789") != "" {
		return fmt.Errorf("address %q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// IsZero reports whether z is the zero ZURL (not a parsed zurl).
func (z ZURL) IsZero() bool { return z.raw == "" }

// String returns the zurl as given (for messages).
func (z ZURL) String() string { return z.raw }

// Raw returns the zurl as given.
func (z ZURL) Raw() string { return z.raw }

// StorageURL returns the zurl that servers are given and neo/go opens: the
// zurl as given, except that relative FileStorage paths are resolved (a
// plain path becomes a file:// zurl). A server shows it in .wcfs/zurl and
// as its mount source.
func (z ZURL) StorageURL() string { return z.abs }

// Normalized returns the normalized form of StorageURL (see Normalize).
func (z ZURL) Normalized() string { return z.norm }

// Scheme returns the scheme of the normalized zurl: file, zeo, neo, neos or
// demo.
func (z ZURL) Scheme() string { return z.scheme }

// ID returns the sha1 hex digest of the normalized zurl: the name of the
// zurl's mountpoint directory.
func (z ZURL) ID() string { return z.id }

// MountpointIn returns the mountpoint of z under root: root/<ID>.
func (z ZURL) MountpointIn(root string) string { return filepath.Join(root, z.id) }

// Mountpoint returns the mountpoint of z under MountRoot.
func (z ZURL) Mountpoint() string { return z.MountpointIn(MountRoot) }

// IsNetwork reports whether the storage is reached over the network (zeo,
// neo, neos, or a demo: zurl with such a part).
func (z ZURL) IsNetwork() bool { return z.network }

// FilePath returns the FileStorage file of a file:// zurl (absolute), ""
// for other schemes.
func (z ZURL) FilePath() string { return z.file }

// Equivalent reports whether z and o designate the same storage (equal
// normalized forms). The zero ZURL is equivalent to nothing.
func (z ZURL) Equivalent(o ZURL) bool { return !z.IsZero() && z.norm == o.norm }
