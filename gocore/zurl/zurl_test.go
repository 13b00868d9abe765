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

	"wendelin.dev/wcfs/gocore/internal/testenv"
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
	z := MustParse("file:///tmp/x.fs")
	if mp := z.Mountpoint(); mp != "/dev/shm/wcfs/ca0926bb18d69570bf2d6de6b536abf11fabed28" {
		t.Fatalf("Mountpoint = %q", mp)
	}
	a, b := MustParse("neo://c@b:1,a:2?ca=x"), MustParse("neos://c@a:2,b:1?logfile=l")
	if a.MountpointIn("/r") != b.MountpointIn("/r") || !strings.HasPrefix(a.MountpointIn("/r"), "/r/") {
		t.Fatalf("equivalent neo zurls get %q and %q", a.MountpointIn("/r"), b.MountpointIn("/r"))
	}
	if !MustParse("neo://c@b:1,a:2").Equivalent(MustParse("neo://c@a:2,b:1")) ||
		MustParse("file:///a").Equivalent(MustParse("file:///b")) || (ZURL{}).Equivalent(ZURL{}) {
		t.Fatal("Equivalent is wrong")
	}
	if _, err := Parse("gopher://x"); !errors.Is(err, ErrUnknownScheme) {
		t.Fatalf("Parse of an unknown scheme: %v", err)
	}
}

// Parse: what servers are given (StorageURL), the FileStorage path, the
// scheme and whether the storage is on the network, for zurls parsed in the
// working directory /home/u.
func TestParse(t *testing.T) {
	const cwd = "/home/u"
	for _, tc := range []struct {
		in, storage, file, scheme string
		network                   bool
	}{
		// absolute zurls are kept as given (the reference's mountpoint)
		{"file:///srv/data.fs", "file:///srv/data.fs", "/srv/data.fs", "file", false},
		{"file:///srv/../srv/data.fs", "file:///srv/../srv/data.fs", "/srv/../srv/data.fs", "file", false},
		{"file:/srv/data.fs", "file:/srv/data.fs", "/srv/data.fs", "file", false},
		{"file:///srv/a%20b.fs?x=1", "file:///srv/a%20b.fs?x=1", "/srv/a b.fs", "file", false},
		// relative FileStorage paths are resolved
		{"file://data.fs", "file:///home/u/data.fs", "/home/u/data.fs", "file", false},
		{"file://rel/x/../data.fs", "file:///home/u/rel/data.fs", "/home/u/rel/data.fs", "file", false},
		{"file:data.fs", "file:///home/u/data.fs", "/home/u/data.fs", "file", false},
		{"file://data.fs#f", "file:///home/u/data.fs#f", "/home/u/data.fs", "file", false},
		// plain paths are FileStorage files
		{"/srv/data.fs", "file:///srv/data.fs", "/srv/data.fs", "file", false},
		{"/srv/./data.fs", "file:///srv/data.fs", "/srv/data.fs", "file", false},
		{"data.fs", "file:///home/u/data.fs", "/home/u/data.fs", "file", false},
		{"../v/a:b.fs", "file:///home/v/a:b.fs", "/home/v/a:b.fs", "file", false},
		{"./100%?#.fs", "file:///home/u/100%25%3F%23.fs", "/home/u/100%?#.fs", "file", false},
		// network storages
		{"zeo://localhost:8100?storage=x", "zeo://localhost:8100?storage=x", "", "zeo", true},
		{"zeo:///run/zeo.sock", "zeo:///run/zeo.sock", "", "zeo", true},
		{"neo://db@b:2,a:1?ca=x", "neo://db@b:2,a:1?ca=x", "", "neos", true},
		{"neo://db@[::1]:2051", "neo://db@[::1]:2051", "", "neo", true},
		{"neo://db@[fd00::3]:2051,10.0.0.1:2051", "neo://db@[fd00::3]:2051,10.0.0.1:2051", "", "neo", true},
		// demo: its parts follow the same rules
		{"demo:(file:///a.fs)/(file:///b.fs)", "demo:(file:///a.fs)/(file:///b.fs)", "", "demo", false},
		{"demo:(file://a.fs)/(b.fs)", "demo:(file:///home/u/a.fs)/(file:///home/u/b.fs)", "", "demo", false},
		{"demo:(zeo://h:1)/(file:///b.fs)", "demo:(zeo://h:1)/(file:///b.fs)", "", "demo", true},
	} {
		z, err := ParseIn(tc.in, cwd)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if z.Raw() != tc.in || z.String() != tc.in || z.StorageURL() != tc.storage || z.FilePath() != tc.file ||
			z.Scheme() != tc.scheme || z.IsNetwork() != tc.network {
			t.Errorf("%q: storage %q, file %q, scheme %q, network %v; want %q, %q, %q, %v", tc.in,
				z.StorageURL(), z.FilePath(), z.Scheme(), z.IsNetwork(), tc.storage, tc.file, tc.scheme, tc.network)
		}
		// the resolved form designates the same storage, wherever parsed
		again, err := ParseIn(z.StorageURL(), "/elsewhere")
		if err != nil || !again.Equivalent(z) || again.StorageURL() != z.StorageURL() || again.ID() != z.ID() {
			t.Errorf("%q: its storage URL %q parsed elsewhere: %v, %v", tc.in, z.StorageURL(), again, err)
		}
	}

	// a plain path and its file:// zurl share a mountpoint; a relative path
	// depends on the working directory
	abs, plain := MustParse("file:///srv/data.fs"), MustParse("/srv/data.fs")
	if !abs.Equivalent(plain) || abs.Mountpoint() != plain.Mountpoint() {
		t.Errorf("/srv/data.fs and file:///srv/data.fs: mountpoints %s and %s", plain.Mountpoint(), abs.Mountpoint())
	}
	inA, _ := ParseIn("file://small.fs", "/a")
	inB, _ := ParseIn("file://small.fs", "/b")
	if inA.Equivalent(inB) || inA.Mountpoint() == inB.Mountpoint() {
		t.Errorf("file://small.fs in /a and in /b share mountpoint %s", inA.Mountpoint())
	}
	if !inA.Equivalent(MustParse("file:///a/small.fs")) {
		t.Errorf("file://small.fs in /a is not file:///a/small.fs")
	}
	// Parse resolves against this process's working directory
	wd, _ := os.Getwd()
	if z := MustParse("x.fs"); z.FilePath() != filepath.Join(wd, "x.fs") {
		t.Errorf("Parse(x.fs) in %s: %s", wd, z.FilePath())
	}
	if _, err := ParseIn("x.fs", "rel"); err == nil {
		t.Errorf("ParseIn with a relative directory succeeded")
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty"},
		{"https://example.com/x", "scheme https"},
		{"file://", "needs a path"},
		{"file:", "needs a path"},
		{"zeo://", "needs an address"},
		{"zeo://localhost", `address "localhost": want host:port`},
		{"zeo://localhost:0", `port "0" is not a number from 1 to 65535`},
		{"zeo://:8100", "no host"},
		{"neo://c@127.0.0.1:99999", `port "99999" is not a number from 1 to 65535`},
		{"neo://c@127.0.0.1:-1", `port "-1"`},
		{"neo://c@a:1,b", `bad master address "b": want host:port`},
		{"neo://c@a:x1", `port "x1"`},
		{"neo://c@::1:2051", "want host:port"},
		{"demo:(file:///a.fs)", "demo: needs (base)/(changes)"},
		{"demo:(file:///a.fs)/(gopher://x)", "demo: invalid zurl \"gopher://x\""},
		{"demo:(zeo://h:1?storage=x)/(file:///b.fs)", "must not contain '?' or '#'"},
		{"demo:(demo:(demo:(demo:(demo:(a)/(b))/(b))/(b))/(b))/(b)", "nested more than 4 deep"},
		{"file:///a\nb", "control character"},
		{"file:///%zz", "invalid URL escape"},
	} {
		_, err := ParseIn(tc.in, "/home/u")
		var zerr *Error
		if !errors.As(err, &zerr) || !strings.Contains(err.Error(), tc.want) || zerr.Zurl != tc.in {
			t.Errorf("Parse(%q): error %v; want *Error mentioning %q", tc.in, err, tc.want)
		}
	}
}

// TestNormalizeAgainstPython compares Normalize with the reference
// algorithm run by Python's urllib (testdata/pyoracle.py) on generated zurls.
func TestNormalizeAgainstPython(t *testing.T) {
	py := testenv.Python(t)
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
