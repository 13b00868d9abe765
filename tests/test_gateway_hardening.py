# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""The gateway as an adversarial trial and a first run found it (issue 15),
through wendelin.wcfs and its command line: relative zurls, descriptors of
the caller, a lock file of another user, `python -m wcfs serve` leaving
nothing behind. Real servers, genuine-ZODB databases (ztestdb)."""

import logging
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from conftest import server_pids
from test_gateway import bigfile, no_server, run_cli

from wendelin import wcfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                                reason="needs root and /dev/fuse (mounts with mount(2))")


def make_db(path, fill):
    """make_db creates a FileStorage at path with one ZBigFile "zf" of one
    64 KiB block of bytes fill and returns (oid, data)."""
    import ztestdb

    data = bytes([fill]) * (64 * ztestdb.KiB)
    with ztestdb.Database.create(str(path)) as db:
        oid = db.create_file("zf", blksize=len(data), fmt="ZBlk1")
        db.write("zf", 0, data)
        db.commit("hardening")
    return oid, data


def serve_cli(zurl, *optv, cwd=None):
    """serve_cli starts `python -m wcfs serve [optv] zurl` in cwd."""
    return subprocess.Popen([sys.executable, "-m", "wcfs", "serve"] + list(optv) + [zurl], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_served(zurl):
    """wait_served waits until a server for zurl serves and returns what its
    .wcfs/zurl says."""
    f = wcfs._waitmount(120, zurl, wcfs._mountpoint(zurl))
    try:
        return f.read()
    finally:
        f.close()


def finish(proc):
    """finish waits for proc (killing it if it runs) and returns its stderr."""
    if proc.poll() is None:
        proc.kill()
    _, err = proc.communicate()
    return err


# ---- relative zurls ----

def test_relative_zurl(tmp_path, wcfs_leakcheck, monkeypatch):
    """`serve file://small.fs` in one directory, then join('file://small.fs')
    from another: the join must not attach to the first server (another
    database), but reach the second directory's database."""
    dirs = [tmp_path / "a", tmp_path / "b"]
    dbs = []
    for i, d in enumerate(dirs):
        d.mkdir()
        oid, data = make_db(d / "small.fs", 0x41 + i)
        abszurl = "file://%s/small.fs" % d
        wcfs_leakcheck(abszurl)
        dbs.append((oid, data, abszurl))

    proc = serve_cli("file://small.fs", cwd=str(dirs[0]))
    try:
        assert wait_served(dbs[0][2]) == dbs[0][2]  # the server resolved it in its directory
        monkeypatch.chdir(dirs[1])
        wc = wcfs.join("file://small.fs", autostart=True)
        try:
            assert wc.mountpoint == wcfs._mountpoint(dbs[1][2]) != wcfs._mountpoint(dbs[0][2])
            assert wc._read(".wcfs/zurl") == dbs[1][2].encode()
            assert wc._read("head/bigfile/" + dbs[1][0]) == dbs[1][1]
            assert wcfs.join("small.fs") is wc  # the plain path: the same file
            wc.close()
            wc.close()
        finally:
            wc._wcsrv.stop()
            wcfs._wcautostarted.remove(wc)
        wcfs.stop(dbs[0][2])
        assert proc.wait(60) == 0
    finally:
        err = finish(proc)
    for _, _, z in dbs:
        no_server(z)
    assert "small.fs" in err  # the server's log


# ---- descriptors of the caller ----

def test_autostarted_server_closes_inherited_descriptors(wcfs_db):
    """The caller's inheritable descriptors do not stay open in the server
    it autostarts: a listening socket can be bound again once the caller
    closed it, a pipe sees EOF."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.set_inheritable(True)
    port = sock.getsockname()[1]
    r, w = os.pipe()
    os.set_inheritable(w, True)
    try:
        wc = wcfs.join(wcfs_db.zurl, autostart=True)
        wcfs._wcautostarted.remove(wc)
        try:
            sock.close()
            os.close(w)
            w = None
            again = socket.socket()
            try:
                again.bind(("127.0.0.1", port))  # EADDRINUSE if the server kept it
                again.listen()
            finally:
                again.close()
            os.set_blocking(r, False)
            assert os.read(r, 1) == b""  # EOF; BlockingIOError if the server kept the write end
            wc.close()
        finally:
            wc._wcsrv.stop()
    finally:
        sock.close()
        os.close(r)
        if w is not None:
            os.close(w)
    no_server(wcfs_db.zurl)


# ---- a lock file of another user ----

def test_foreign_lock_file(wcfs_db, second_user):
    """A lock file another user put at the server's lock path keeps neither
    `python -m wcfs stop` from stopping the server, nor start from
    starting one."""
    zurl = wcfs_db.zurl
    lock = wcfs._mountpoint(zurl) + ".lock"
    srv = wcfs.start(zurl)
    try:
        second_user.run(["touch", lock], check=True)
        assert os.stat(lock).st_uid == second_user.uid
        p = run_cli("stop", zurl)
        assert p.returncode == 0, p.stderr
        wcfs._waitfor(10, lambda: srv._proc.poll() is not None)
        no_server(zurl)

        second_user.run(["touch", lock], check=True)
        srv = wcfs.start(zurl)
        assert srv._proc.poll() is None
    finally:
        srv.stop()
    no_server(zurl)


# ---- python -m wcfs serve leaves nothing behind ----

def test_cli_serve_leaves_nothing(wcfs_db, tmp_path, wcfs_leakcheck):
    zurl = wcfs_db.zurl
    mntpt = wcfs._mountpoint(zurl)

    p = run_cli("serve", "-bogus", zurl)
    assert p.returncode == 2 and "flag provided but not defined: -bogus" in p.stderr, p.stderr
    assert not os.path.lexists(mntpt)

    p = run_cli("serve", "file:///some/other.fs", zurl)  # two zurls
    assert p.returncode == 2 and 'unexpected argument "file:///some/other.fs"' in p.stderr, p.stderr
    assert not os.path.lexists(mntpt)

    missing = "file://%s/missing.fs" % tmp_path
    wcfs_leakcheck(missing)
    p = run_cli("serve", missing)
    assert p.returncode == 1 and "missing.fs: no such file or directory" in p.stderr, p.stderr
    no_server(missing)

    # Ctrl-C
    proc = serve_cli(zurl)
    try:
        assert wait_served(zurl) == zurl
        assert server_pids(mntpt) == [proc.pid]  # exec: the python process became the server
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        finish(proc)
    no_server(zurl)


# ---- a slow start says why while it waits ----

def test_start_progress_is_logged_while_waiting(wcfs_leakcheck, caplog):
    """A start that waits for a storage that never answers reports its
    progress ("not ready after ...: opening storage ...") through the "wcfs"
    logger while the call still runs (from the log thread, not after the
    call returned in the caller's thread), then fails with the start
    timeout and leaves nothing behind."""
    caplog.set_level(logging.INFO, logger="wcfs")
    with socket.socket() as l:  # accepts connections (backlog), never answers
        l.bind(("127.0.0.1", 0))
        l.listen(8)
        zurl = "zeo://127.0.0.1:%d" % l.getsockname()[1]
        wcfs_leakcheck(zurl)
        with pytest.raises(wcfs.WCFSError) as exc:
            wcfs.start(zurl, timeout=3)
    assert "not ready within 3s" in str(exc.value) and "opening storage" in str(exc.value), exc.value
    progress = [r for r in caplog.records if "not ready after" in r.getMessage()]
    assert progress, caplog.text
    assert "opening storage " + zurl in progress[0].getMessage()
    assert progress[0].thread != threading.get_ident(), \
        "the progress was emitted by the caller's thread: only once the call had returned"
    # the server's log is kept for the diagnosis the error points to
    logpath = wcfs._mountpoint(zurl) + ".log"
    with open(logpath) as f:
        assert "SIGQUIT" in f.read(), "no goroutine dump in " + logpath
    os.unlink(logpath)
