// Copyright (C) 2025  WCFS authors.
// SPDX-License-Identifier: GPL-3.0-or-later

package server_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/moby/sys/mountinfo"

	"wendelin.dev/wcfs/gocore/internal/wcfstest"
)

// run runs the wcfs binary (nothing is expected to be mounted) and returns
// its exit code and output.
func run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(wcfstest.Binary(t), args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatal(err)
	return 0, ""
}

func TestCLIUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{},
		{"file:///x.fs"},
		{"file:///x.fs", "/mnt", "extra"},
		{"-debug", "file:///x.fs"},
	} {
		code, out := run(t, args...)
		if code != 2 || !strings.Contains(out, "Usage: ") || !strings.Contains(out, "[OPTIONS] zurl mntpt") {
			t.Errorf("wcfs %q: exit %d, output %q; want exit 2 and the usage line", args, code, out)
		}
	}

	code, out := run(t, "-h")
	if code != 0 || !strings.Contains(out, "-pintimeout") || !strings.Contains(out, "-autoexit") ||
		!strings.Contains(out, "-logtostderr") {
		t.Errorf("wcfs -h: exit %d, output %q; want 0 and the flags", code, out)
	}

	code, out = run(t, "-nosuchflag", "file:///x.fs", "/mnt")
	if code != 2 || !strings.Contains(out, "nosuchflag") {
		t.Errorf("wcfs -nosuchflag: exit %d, output %q; want 2 naming the flag", code, out)
	}
	code, out = run(t, "-pintimeout", "soon", "file:///x.fs", "/mnt")
	if code != 2 || !strings.Contains(out, "pintimeout") {
		t.Errorf("wcfs -pintimeout soon: exit %d, output %q; want 2 naming the flag", code, out)
	}
}

// Startup failures: a non-zero exit with a message naming the problem (on
// stderr and as sd_notify STATUS), before anything is mounted.
func TestStartupFailures(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	regular := filepath.Join(tmp, "file")
	if err := os.WriteFile(regular, nil, 0644); err != nil {
		t.Fatal(err)
	}
	existing, _ := smallFSOrEmpty(t)

	for _, tc := range []struct {
		name, zurl, mnt string
		want            string        // in STATUS and stderr
		errno           syscall.Errno // ERRNO= expected (0: not checked)
	}{
		{"missing storage", "file://" + tmp + "/nosuch.fs", "", "nosuch.fs", syscall.ENOENT},
		{"malformed zurl", "zeo://[::1", "", "zeo://[::1", 0},
		{"unknown scheme", "bogus://x/y", "", "bogus", 0},
		{"unreachable zeo", "zeo://127.0.0.1:1", "", "127.0.0.1:1", syscall.ECONNREFUSED},
		{"missing mountpoint", existing, filepath.Join(tmp, "nosuchdir"), "nosuchdir", syscall.ENOENT},
		{"mountpoint is a file", existing, regular, "not a directory", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.zurl == "" {
				t.Skip("no fixture")
			}
			var err error
			if tc.mnt != "" {
				_, err = wcfstest.StartAt(t, tc.zurl, tc.mnt)
			} else {
				_, err = wcfstest.StartErr(t, tc.zurl)
			}
			var se *wcfstest.StartError
			if !errors.As(err, &se) {
				t.Fatalf("started: %v", err)
			}
			if se.ExitCode != 1 {
				t.Errorf("exit code %d, want 1", se.ExitCode)
			}
			if !strings.Contains(se.Status, tc.want) || !strings.Contains(se.Stderr, tc.want) {
				t.Errorf("status %q / stderr %q: want them to name %q", se.Status, se.Stderr, tc.want)
			}
			if tc.errno != 0 && se.Errno != int(tc.errno) {
				t.Errorf("ERRNO=%d, want %d (%s)", se.Errno, int(tc.errno), tc.errno)
			}
			if tc.mnt != "" && wcfstest.IsMounted(tc.mnt) {
				t.Errorf("%s mounted after a failed start", tc.mnt)
			}
		})
	}
}

// Logs go to stderr by default, never into files in $TMPDIR; -log_dir
// without -logtostderr writes glog's files there.
func TestLogDefault(t *testing.T) {
	t.Parallel()
	tmp, logDir := t.TempDir(), t.TempDir()
	for _, tc := range []struct {
		args     []string
		files    bool // glog files in logDir
		inStderr bool // the log in stderr
	}{
		{nil, false, true},
		{[]string{"-log_dir=" + logDir}, true, false},
	} {
		args := append(tc.args, "file://"+tmp+"/nosuch.fs", tmp)
		cmd := exec.Command(wcfstest.Binary(t), args...)
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		out, _ := cmd.CombinedOutput()
		// glog's line of the startup failure: "W1125 01:02:03.456789 pid main.go:NN] wcfs: ..."
		if got := strings.Contains(string(out), "main.go:"); got != tc.inStderr {
			t.Errorf("wcfs %q: log in stderr: %v, want %v\n%s", tc.args, got, tc.inStderr, out)
		}
		if names, _ := filepath.Glob(filepath.Join(tmp, "*")); len(names) != 0 {
			t.Errorf("wcfs %q: files in $TMPDIR: %q", tc.args, names)
		}
		if names, _ := filepath.Glob(filepath.Join(logDir, "wcfs*")); (len(names) > 0) != tc.files {
			t.Errorf("wcfs %q: log files in -log_dir: %q", tc.args, names)
		}
	}
}

// A server refuses to mount where the mount table shows a mount already
// (servers never stack), before mounting, and the mount there is untouched.
func TestMountpointAlreadyMounted(t *testing.T) {
	t.Parallel()
	zurl, _ := smallFS(t)
	srv := wcfstest.Start(t, zurl)
	code, out := run(t, "-logtostderr", zurl, srv.Mnt)
	if code != 1 || !strings.Contains(out, "already mounted") || !strings.Contains(out, srv.Mnt) {
		t.Errorf("wcfs on a mounted mountpoint: exit %d, output %q; want exit 1, \"already mounted\" and the path", code, out)
	}
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(srv.Mnt))
	if err != nil || len(infos) != 1 {
		t.Errorf("mounts at %s: %d (%v), want 1", srv.Mnt, len(infos), err)
	}
	if got := string(readFile(t, srv.Path(".wcfs", "zurl"))); got != zurl {
		t.Errorf("first server after the refused start: .wcfs/zurl = %q", got)
	}
}

// smallFSOrEmpty is smallFS, or "" when the fixture is absent.
func smallFSOrEmpty(t *testing.T) (string, bool) {
	if _, err := os.Stat("../../../shared/testdata/zodb/small.fs"); err != nil {
		return "", false
	}
	zurl, _ := smallFS(t)
	return zurl, true
}

// The glog flags existing deployments pass through WENDELIN_CORE_WCFS_OPTIONS
// are accepted (with the reference's own flags).
func TestCLIGlogFlags(t *testing.T) {
	t.Parallel()
	zurl, _ := smallFS(t)
	logDir := t.TempDir()
	srv := wcfstest.Start(t, zurl, "-alsologtostderr", "-v=1", "-vmodule=follow=2",
		"-stderrthreshold=ERROR", "-log_dir="+logDir, "-log_backtrace_at=main.go:1",
		"-debug", "-trace.fuse", "-autoexit=false", "-pintimeout=10s")
	if got := string(readFile(t, srv.Path(".wcfs", "pintimeout"))); got != "10.0" {
		t.Errorf(".wcfs/pintimeout = %q", got)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(srv.Log(), "LOOKUP") {
		t.Errorf("-trace.fuse: no FUSE trace in the log")
	}
}
