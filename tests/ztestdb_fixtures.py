"""pytest fixtures of the test-database toolkit (tools/pylib/ztestdb).

Import them into a test module (``from ztestdb_fixtures import zeo_server``); importing
this module also puts ``tools/pylib`` on ``sys.path`` so that ``ztestdb`` and the
``wendelin.bigfile.file_zodb`` classes are importable.
"""

import os
import socket
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYLIB = os.path.join(REPO, "tools", "pylib")
SHARED_ZODB = os.path.join(REPO, "..", "shared", "testdata", "zodb")

if PYLIB not in sys.path:
    sys.path.insert(0, PYLIB)


def shared_zodb():
    """Path of ../shared/testdata/zodb, or skip the test when it is absent."""
    if not os.path.exists(os.path.join(SHARED_ZODB, "small.json")):
        pytest.skip("fixtures of genuine ZODB databases not found at %s "
                    "(../shared beside the repository)" % SHARED_ZODB)
    return SHARED_ZODB


def toolkit_env():
    """Environment for subprocesses running python -m ztestdb."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PYLIB, env.get("PYTHONPATH")) if p)
    return env


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ZEOServer:
    """A genuine ZEO server (runzeo) over a FileStorage, on a unix socket or on
    127.0.0.1:port (tcp=True)."""

    def __init__(self, tmpdir, tcp=False):
        self.fs = os.path.join(tmpdir, "zeo.fs")
        if tcp:
            self.addr = ("127.0.0.1", _free_port())
            arg = "%s:%d" % self.addr
        else:
            self.addr = arg = os.path.join(tmpdir, "zeo.sock")
        self.zurl = "zeo://" + arg
        runzeo = os.path.join(os.path.dirname(sys.executable), "runzeo")
        self.log = open(os.path.join(tmpdir, "runzeo.log"), "wb")
        self.proc = subprocess.Popen([runzeo, "-a", arg, "-f", self.fs],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        family = socket.AF_INET if isinstance(self.addr, tuple) else socket.AF_UNIX
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("runzeo exited with %s (log: %s)"
                                   % (self.proc.returncode, self.log.name))
            with socket.socket(family) as s:
                try:
                    s.connect(self.addr)
                    return
                except OSError:
                    pass
            time.sleep(0.05)
        raise TimeoutError("runzeo did not listen on %s in %ss" % (self.zurl, timeout))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(params=["unix", "tcp"])
def zeo_server(request, tmp_path):
    """A running genuine ZEO server (stopped by pid at teardown)."""
    srv = ZEOServer(str(tmp_path), tcp=request.param == "tcp")
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
