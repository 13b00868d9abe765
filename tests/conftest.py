# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""pytest configuration of the suites under tests/.

- Servers started by the tests run with ``-debug -logtostderr`` before
  whatever $WENDELIN_CORE_WCFS_OPTIONS says (as wendelin.core's conftest does),
  and Go's race detector, when a server is built with it, stops at the first
  race.
- At the end of the session every server autostarted by ``wcfs.join`` in this
  process is stopped (``wcfs._wcautostarted``).
- Fixtures: ``wcfs_db`` (a small genuine-ZODB FileStorage with one ZBigFile,
  whose server is made sure to be gone, with its mount, mountpoint and lock,
  after the test: leftovers are cleaned by PID and fail the test) and
  ``wcfs_leakcheck`` (the same guarantee for zurls a test registers).
"""

import errno
import os
import signal
import sys
import time
import types

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools", "pylib"))

os.environ["WENDELIN_CORE_WCFS_OPTIONS"] = (
    "-debug -logtostderr " + os.environ.get("WENDELIN_CORE_WCFS_OPTIONS", "")).strip()
os.environ.setdefault("GORACE", "halt_on_error=1")


def pytest_unconfigure(config):
    wcfs = sys.modules.get("wendelin.wcfs")
    if wcfs is None:
        return
    for wc in wcfs._wcautostarted:
        if wc._njoin != 0:
            print("wcfs: %s still joined %d times at exit" % (wc.mountpoint, wc._njoin), file=sys.stderr)
        wc._wcsrv.stop()


# ---- leftovers ----

def server_pids(mntpt):
    """server_pids returns the live processes whose last argument is mntpt
    (found in /proc, without touching the mount)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")[:-1]
            with open("/proc/%s/stat" % d) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argv and argv[-1] == os.fsencode(mntpt) and state != "Z":
            pids.append(int(d))
    return pids


def suspend(pid, timeout=60):
    """suspend SIGSTOPs process pid and returns once all its threads
    stopped. kill(2) returning is not enough: the kernel gives the signal to
    one thread, the others stop only after that one ran, and meanwhile a
    multi-threaded server (a Go FUSE server) can still answer a request --
    a "hung server" test is then flaky on a loaded machine. timeout only
    keeps a broken test from hanging."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while True:
        running = []
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except FileNotFoundError:
            return  # gone
        for tid in tids:
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue  # exited meanwhile
            if state not in ("T", "t", "Z", "X", "x"):
                running.append(tid)
        if not running:
            return
        if time.monotonic() > deadline:
            raise AssertionError("pid %d: threads %s still run %ss after SIGSTOP" % (pid, running, timeout))
        time.sleep(0.001)


def cleanup_zurl(zurl):
    """cleanup_zurl removes what a server of zurl left (joins of this process,
    server processes, mounts, the mountpoint, the start lock, the server's
    log) and returns a
    description of each leftover (empty: nothing was left)."""
    from wendelin import wcfs

    mntpt = wcfs._mountpoint(zurl)
    left = []
    wc = wcfs._wcregistry.pop(mntpt, None)
    if wc is not None:
        left.append("joined WCFS (njoin %d)" % wc._njoin)
        while wc._njoin > 0:
            try:
                wc.close()
            except OSError:
                pass
    for pid in server_pids(mntpt):
        left.append("server process %d" % pid)
        os.kill(pid, signal.SIGKILL)
    for _ in range(10):
        if not wcfs._is_mountpoint(mntpt):
            break
        left.append("mount at %s" % mntpt)
        wcfs._fuse_unmount(mntpt, "-z")
    for path, what in ((mntpt, "mountpoint directory"), (mntpt + ".lock", "start lock"),
                       (mntpt + ".log", "server log")):
        if os.path.lexists(path):
            left.append("%s %s" % (what, path))
            try:
                (os.rmdir if what.startswith("mount") else os.unlink)(path)
            except OSError as e:
                if e.errno != errno.ENOENT:
                    raise
    return left


@pytest.fixture
def wcfs_leakcheck():
    """wcfs_leakcheck(zurl) registers zurl: after the test nothing of a server
    for it may be left (leftovers are removed, then fail the test)."""
    zurls = []
    yield zurls.append
    left = []
    for zurl in zurls:
        left += ["%s: %s" % (zurl, x) for x in cleanup_zurl(zurl)]
    if left:
        pytest.fail("left behind:\n  " + "\n  ".join(left))


# ---- a second, unprivileged user ----

TEST_USER = "wcfs-test"


@pytest.fixture(scope="session")
def second_user():
    """second_user is a user that is not root (created with useradd if it
    does not exist, as the Go tests do: gocore/internal/testuser), for tests
    that play another user of /dev/shm/wcfs. It has .name, .uid, .gid and
    .run(argv, **kw) running argv as that user."""
    import pwd
    import subprocess
    import time

    if os.geteuid() != 0:
        pytest.skip("needs root (to act as a second user)")
    for _ in range(20):
        try:
            pw = pwd.getpwnam(TEST_USER)
            break
        except KeyError:
            # Go test binaries may be creating it at the same time
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                            "/nonexistent", "--shell", "/usr/sbin/nologin", TEST_USER],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.1)
    else:
        pytest.fail("cannot create the test user %s" % TEST_USER)

    def run(argv, **kw):
        return subprocess.run(argv, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], cwd="/", **kw)

    return types.SimpleNamespace(name=TEST_USER, uid=pw.pw_uid, gid=pw.pw_gid, run=run)


@pytest.fixture
def wcfs_db(tmp_path, wcfs_leakcheck):
    """wcfs_db is a FileStorage written by genuine ZODB with one ZBigFile
    ("zf", 64 KiB blocks, 3 blocks of data) and the namespace
    (zurl, path, oid, blksize, data)."""
    import ztestdb

    path = str(tmp_path / "data.fs")
    blksize = 64 * ztestdb.KiB
    data = b"".join(bytes([i + 1]) * blksize for i in range(3))
    with ztestdb.Database.create(path) as db:
        oid = db.create_file("zf", blksize=blksize, fmt="ZBlk1")
        db.write("zf", 0, data)
        db.commit("wcfs_db")
    zurl = "file://" + path
    wcfs_leakcheck(zurl)
    return types.SimpleNamespace(zurl=zurl, path=path, oid=oid, blksize=blksize, data=data)
