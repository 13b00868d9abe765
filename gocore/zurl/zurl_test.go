// Copyright (C) 2026  WCFS authors.
// This program is free software: you can redistribute it and/or modify it
// under the terms of the GNU General Public License version 3, or (at your
// option) any later version, as published by the Free Software Foundation.

package zurl

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The examples of spec 7.1, which the reference tests.
func TestNormalizeReference(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"file://Data.fs", "file://Data.fs"},
		{"zeo://localhost:9001", "zeo://localhost:9001"},
		{"neo://cluster@def:2,abc:1", "neo://cluster@abc:1,def:2"},
		{"neos://cluster@xyz:1?ca=a&key=b&cert=c", "neos://cluster@xyz:1"},
		{"neos://cluster@xyz:1?ca=α&key=β&cert=γ", "neos://cluster@xyz:1"},
		{"neo://cluster@xyz:1?b=2&a=1&c=10", "neo://cluster@xyz:1?a=1&b=2&c=10"},
		{"neo://cluster@xyz:1?compress=1&read-only=true&logfile=abc.log&cache-size=1024", "neo://cluster@xyz:1"},
		{"neo://c@x:1?cert=c", "neos://c@x:1"},
		{"neo://c@x:1?ca=&cert=&key=", "neo://c@x:1"},
		// ours: more of urllib's behaviour
		{"NEO://c@b:1,a:2/p?z=%7e+x&y=é#f", "neo://c@a:2,b:1/p?y=%C3%A9&z=~+x#f"},
		{"neo://c@x:1?a=1&a=0&b&=v", "neo://c@x:1?=v&a=1&a=0"},
		{"neo://c@x:1?k=%ff%fe&k=%E2%82", "neo://c@x:1?k=%EF%BF%BD%EF%BF%BD&k=%EF%BF%BD"},
		{"neo://c@[::1]:2051", "neo://c@[::1]:2051"},
		{"demo:(file:///a.fs)/(file:///b.fs)", "demo:(file:///a.fs)/(file:///b.fs)"},
	} {
		got, err := Normalize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			continue
		}
		again, err := Normalize(got)
		if err != nil || again != got {
			t.Errorf("Normalize is not idempotent on %q: %q, %v", got, again, err)
		}
	}
}

func TestNormalizeRefuses(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"/srv/data.fs", "no scheme"},
		{"https://example.com/x", "scheme https"},
		{"postgres://db/x", "scheme postgres"},
		{"file://", "needs a path"},
		{"zeo://", "needs an address"},
		{"neo://x:1", "<cluster>@<master>"},
		{"neo://c@", "<cluster>@<master>"},
		{"neo://c@[::1:2", "bad master"},
		{"neo://c@a:1,", "bad master"},
		{"zeo://[::1:2", "IPv6"},
		{"file:///a\nb", "control character"},
		{" file:///a", "starts with a space"},
		{"file:///\xff", "UTF-8"},
	} {
		_, err := Normalize(tc.in)
		var zerr *Error
		if !errors.As(err, &zerr) || !strings.Contains(err.Error(), tc.want) || zerr.Zurl != tc.in {
			t.Errorf("Normalize(%q): error %v; want *Error mentioning %q", tc.in, err, tc.want)
		}
	}
	_, err := Normalize("https://x")
	if !errors.Is(err, ErrUnknownScheme) {
		t.Errorf("https: error %v does not wrap ErrUnknownScheme", err)
	}
}

func TestMountpoint(t *testing.T) {
	// sha1("file:///tmp/x.fs") computed independently with sha1sum(1)
	mp, err := Mountpoint("file:///tmp/x.fs")
	if err != nil || mp != "/dev/shm/wcfs/ca0926bb18d69570bf2d6de6b536abf11fabed28" {
		t.Fatalf("Mountpoint = %q, %v", mp, err)
	}
	a, _ := MountpointIn("/r", "neo://c@b:1,a:2?ca=x")
	b, _ := MountpointIn("/r", "neos://c@a:2,b:1?logfile=l")
	if a != b || !strings.HasPrefix(a, "/r/") {
		t.Fatalf("equivalent neo zurls get %q and %q", a, b)
	}
	if !Equivalent("neo://c@b:1,a:2", "neo://c@a:2,b:1") || Equivalent("file:///a", "file:///b") || Equivalent("x", "x") {
		t.Fatal("Equivalent is wrong")
	}
	if _, err := Mountpoint("gopher://x"); err == nil {
		t.Fatal("Mountpoint of an unknown scheme succeeded")
	}
}

// TestNormalizeAgainstPython compares Normalize with the reference
// algorithm run by Python's urllib (testdata/pyoracle.py) on generated zurls.
func TestNormalizeAgainstPython(t *testing.T) {
	py := python(t)
	rng := rand.New(rand.NewSource(1))
	inputs := []string{
		"neo://c@x:1?a=%", "neo://c@x:1?a=%4", "neo://c@x:1?a=%zz&b=%41%42",
		"neo://c@x:1?%61=1", "neo://c@x:1?a=b=c", "neo://c@x:1?&&a=1&&",
		"neo://c@x:1#frag?x=1", "neo://c@x:1/p/q?x=1#f#g", "neos://c@b,a,c",
		"neo://c@x:1?a=%F0%9F%98%80é%E2%82+%C3", "neo://c@x:1?a=%ED%A0%80",
	}
	for i := 0; i < 3000; i++ {
		inputs = append(inputs, randZurl(rng))
	}

	cmd := exec.Command(py, "testdata/pyoracle.py")
	var stdin strings.Builder
	for _, in := range inputs {
		b, _ := json.Marshal(in)
		stdin.Write(append(b, '\n'))
	}
	cmd.Stdin = strings.NewReader(stdin.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("oracle: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(nil, 1<<20)
	compared := 0
	for i := 0; sc.Scan(); i++ {
		var res struct{ Ok, Err *string }
		if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
			t.Fatal(err)
		}
		in := inputs[i]
		got, err := Normalize(in)
		if err != nil {
			continue // stricter than the reference: fine
		}
		if res.Ok == nil {
			t.Errorf("%q: Go accepts (%q), Python refuses: %s", in, got, *res.Err)
			continue
		}
		compared++
		if got != *res.Ok {
			t.Errorf("%q:\n  go     %q\n  python %q", in, got, *res.Ok)
		}
	}
	if compared < 2000 {
		t.Fatalf("only %d of %d inputs compared", compared, len(inputs))
	}
}

func randZurl(rng *rand.Rand) string {
	pick := func(v ...string) string { return v[rng.Intn(len(v))] }
	text := func() string {
		var b strings.Builder
		for n := rng.Intn(6); n > 0; n-- {
			b.WriteString(pick("a", "Z", "0", "+", " ", "%", "%2", "%41", "%e2%82%ac", "%ff", "%C3",
				"é", "中", "😀", "~", "-", ".", "_", "/", ":", "=", "%3D", "%26", "!", "*", "'"))
		}
		return b.String()
	}
	scheme := pick("neo", "neos", "NEO", "Neos", "file", "zeo", "demo", "neo", "neos")
	switch strings.ToLower(scheme) {
	case "file":
		return scheme + "://" + pick("/", "") + "srv/" + text() + ".fs"
	case "zeo":
		return scheme + "://localhost:" + fmt.Sprint(rng.Intn(65536)) + pick("", "?storage=1", "?storage=x")
	case "demo":
		return scheme + ":(file:///a.fs)/(file:///" + text() + ")"
	}
	var masters []string
	for n := 1 + rng.Intn(4); n > 0; n-- {
		masters = append(masters, pick("a", "b", "127.0.0.1", "10.0.0.2", "host-é", "Z")+":"+fmt.Sprint(rng.Intn(3000)))
	}
	if rng.Intn(5) == 0 {
		masters = []string{"[::1]:" + fmt.Sprint(rng.Intn(3000))}
	}
	z := scheme + "://" + pick("db", "c", "клстр") + "@" + strings.Join(masters, ",")
	z += pick("", "", "/", "/p/"+text())
	if rng.Intn(4) > 0 {
		var fields []string
		for n := rng.Intn(7); n > 0; n-- {
			k := pick("ca", "cert", "key", "compress", "read-only", "logfile", "cache-size", "a", "b", "z", text())
			switch rng.Intn(8) {
			case 0:
				fields = append(fields, k)
			case 1:
				fields = append(fields, k+"=")
			default:
				fields = append(fields, k+"="+text()+pick("", "x"))
			}
		}
		z += "?" + strings.Join(fields, pick("&", "&", "&&"))
	}
	if rng.Intn(5) == 0 {
		z += "#" + text()
	}
	return z
}

// python returns the project's interpreter ($WCFS_PYTHON or .venv), or skips.
func python(t testing.TB) string {
	if py := os.Getenv("WCFS_PYTHON"); py != "" {
		return py
	}
	dir, _ := os.Getwd()
	for ; dir != "/"; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			py := filepath.Join(dir, ".venv/bin/python")
			if _, err := os.Stat(py); err == nil {
				return py
			}
			break
		}
	}
	t.Skip("no Python interpreter: set $WCFS_PYTHON or run `make deps-venv`")
	return ""
}
