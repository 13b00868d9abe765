# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""Lifecycle of wcfs servers through wendelin.wcfs: the reference scenarios
(spec 8.1), the command line, bad input. Real servers (the installed
wendelin/wcfs/wcfs), real genuine-ZODB databases (conftest.wcfs_db)."""

import errno
import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import server_pids, suspend

from wendelin import wcfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                                reason="needs root and /dev/fuse (mounts with mount(2))")


def bigfile(db):
    return "head/bigfile/" + db.oid


def no_server(zurl):
    """no_server asserts that nothing of a server for zurl is left."""
    mntpt = wcfs._mountpoint(zurl)
    assert not wcfs._is_mountpoint(mntpt)
    assert not os.path.lexists(mntpt)
    assert not os.path.lexists(mntpt + ".lock")
    assert not os.path.lexists(mntpt + ".log"), "a server log left"
    assert server_pids(mntpt) == []
    assert mntpt not in wcfs._wcregistry


def close_aborted(close):
    """close_aborted calls close of a file of a stopped server: the kernel
    may report the aborted FUSE connection."""
    try:
        close()
    except OSError as e:
        assert e.errno in (errno.ENOTCONN, errno.ECONNABORTED), e


def kill_server(srv):
    """kill_server SIGKILLs srv and waits until it is gone."""
    os.kill(srv._proc.pid, signal.SIGKILL)
    wcfs._waitfor(10, lambda: srv._proc.poll() is not None)


# ---- spec 8.1 ----

def test_mountpoint_derivation():
    z = "neo://db@b:2,a:1?ca=x&cert=y&key=z&logfile=l"
    want = "/dev/shm/wcfs/" + hashlib.sha1(b"neos://db@a:1,b:2").hexdigest()
    assert not os.path.exists(want)
    try:
        # as the reference's, it makes sure the directory exists
        # (wendelin.core's tests os.rmdir it); idempotent
        assert wcfs._mntpt_4zurl(z) == want
        assert os.path.isdir(want)
        assert wcfs._mntpt_4zurl(z) == want
    finally:
        wcfs._rmdir_ifexists(want)


def test_join(wcfs_db):
    zurl = wcfs_db.zurl
    with pytest.raises(RuntimeError, match=r"^wcfs: join .*: server not running \(nothing mounted at "):
        wcfs.join(zurl, autostart=False)
    no_server(zurl)

    srv = wcfs.start(zurl)
    try:
        mntpt = wcfs._mountpoint(zurl)
        assert srv.mountpoint == mntpt
        assert srv._proc.pid > 0 and srv._proc.poll() is None
        with pytest.raises(RuntimeError, match=r"^wcfs: start .*: already running"):
            wcfs.start(zurl)

        wc = wcfs.join(zurl, autostart=False)
        assert wc.mountpoint == mntpt
        assert wc._njoin == 1
        assert wc._wcsrv is None
        assert wc._read(".wcfs/zurl") == zurl.encode()
        assert os.path.isdir(wc._path("head"))
        assert os.path.isdir(wc._path("head/bigfile"))
        assert wc._read(bigfile(wcfs_db)) == wcfs_db.data

        wc2 = wcfs.join(zurl, autostart=False)
        assert wc2 is wc
        assert wc._njoin == 2
        assert wcfs._wcregistry == {mntpt: wc}
        wc.close()
        assert wc._njoin == 1
        wc2.close()
        assert wc._njoin == 0
        assert wcfs._wcregistry == {}
    finally:
        srv.stop()
    no_server(zurl)
    assert srv._proc.poll() == 0


def test_join_autostart(wcfs_db):
    zurl = wcfs_db.zurl
    wc = wcfs.join(zurl, autostart=True)
    try:
        assert wc._njoin == 1
        assert wc._wcsrv is not None and wc in wcfs._wcautostarted
        assert wc.mountpoint == wcfs._mountpoint(zurl)
        assert wc._read(".wcfs/zurl") == zurl.encode()
        assert wc._read(bigfile(wcfs_db)) == wcfs_db.data
        argv = open("/proc/%d/cmdline" % wc._wcsrv._proc.pid, "rb").read().split(b"\0")[:-1]
        assert argv[0] == wcfs._wcfs_exe().encode()
        assert argv[1:] == [b"-debug", b"-logtostderr", b"-autoexit", zurl.encode(), wc.mountpoint.encode()]
        wc.close()
    finally:
        wc._wcsrv.stop()
        wcfs._wcautostarted.remove(wc)
    no_server(zurl)


def test_join_autostart_environment(wcfs_db, monkeypatch):
    # read at the time of the call, not at import
    monkeypatch.setenv("WENDELIN_CORE_WCFS_AUTOSTART", "no")
    with pytest.raises(RuntimeError, match="server not running"):
        wcfs.join(wcfs_db.zurl)
    monkeypatch.setenv("WENDELIN_CORE_WCFS_AUTOSTART", "maybe")
    with pytest.raises(RuntimeError, match=r"WENDELIN_CORE_WCFS_AUTOSTART=\"maybe\": want yes or no"):
        wcfs.join(wcfs_db.zurl)
    monkeypatch.setenv("WENDELIN_CORE_WCFS_AUTOSTART", "YES")
    monkeypatch.setenv("WENDELIN_CORE_WCFS_OPTIONS", "-pintimeout 7s")
    with wcfs.join(wcfs_db.zurl) as wc:
        assert float(wc._read(".wcfs/pintimeout")) == 7
    wc._wcsrv.stop()
    wcfs._wcautostarted.remove(wc)


def test_environment_parsed_in_go(monkeypatch):
    # the reference's helpers read the variables as the gateway does (one
    # parser, in Go), at the time of the call
    monkeypatch.delenv("WENDELIN_CORE_WCFS_AUTOSTART", raising=False)
    assert wcfs._default_autostart() is True
    monkeypatch.setenv("WENDELIN_CORE_WCFS_AUTOSTART", "No")
    assert wcfs._default_autostart() is False
    monkeypatch.setenv("WENDELIN_CORE_WCFS_AUTOSTART", "maybe")
    with pytest.raises(ValueError, match=r"WENDELIN_CORE_WCFS_AUTOSTART=\"maybe\": want yes or no"):
        wcfs._default_autostart()
    monkeypatch.setenv("WENDELIN_CORE_WCFS_OPTIONS", "  -debug\t-pintimeout 7s ")
    assert wcfs._optv_with_wcfs_defaults(("-autoexit", "a b")) == ("-debug", "-pintimeout", "7s", "-autoexit", "a b")
    monkeypatch.delenv("WENDELIN_CORE_WCFS_OPTIONS")
    assert wcfs._optv_with_wcfs_defaults(()) == ()


def crash(wc):
    """crash SIGKILLs wc's server and checks what its clients see."""
    kill_server(wc._wcsrv)
    with pytest.raises(OSError) as exc:
        wc._read(".wcfs/zurl")
    assert exc.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    assert wcfs._is_mountpoint(wc.mountpoint)  # the dead mount is still there
    with pytest.raises(OSError) as exc:
        wc.close()  # closing the held .wcfs/zurl reports the dead server ...
    assert exc.value.errno == errno.ENOTCONN
    assert wc.mountpoint not in wcfs._wcregistry  # ... and unregisters anyway


def crash_new_server(zurl):
    """crash_new_server autostarts a server for zurl (this test stops it, not
    the session's cleanup), crashes it (see crash) and returns its WCFS."""
    wc = wcfs.join(zurl, autostart=True)
    wcfs._wcautostarted.remove(wc)
    crash(wc)
    return wc


def test_join_after_crash(wcfs_db):
    zurl = wcfs_db.zurl
    wc = crash_new_server(zurl)
    with pytest.raises(RuntimeError, match="server not running .*died and left a stale mount"):
        wcfs.join(zurl, autostart=False)
    wc2 = wcfs.join(zurl, autostart=True)
    try:
        assert wc2 is not wc
        assert wc2._wcsrv._proc.pid != wc._wcsrv._proc.pid
        assert wc2._read(bigfile(wcfs_db)) == wcfs_db.data
        wc2.close()
    finally:
        wc2._wcsrv.stop()
        wcfs._wcautostarted.remove(wc2)
    wc._wcsrv.stop()  # the crashed one: nothing left to do
    no_server(zurl)


def test_join_while_joined_to_a_dead_server(wcfs_db):
    """A join does not return the WCFS of a server that died, even while that
    WCFS is still joined: it starts a new server (or attaches to one)."""
    zurl = wcfs_db.zurl
    wc = wcfs.join(zurl, autostart=True)
    wcfs._wcautostarted.remove(wc)
    kill_server(wc._wcsrv)
    with pytest.raises(RuntimeError, match="server not running .*died and left a stale mount"):
        wcfs.join(zurl, autostart=False)
    wc2 = wcfs.join(zurl, autostart=True)
    try:
        assert wc2 is not wc
        assert wc2._wcsrv._proc.pid != wc._wcsrv._proc.pid
        assert wc2._read(bigfile(wcfs_db)) == wcfs_db.data
        assert wcfs.join(zurl) is wc2
        wc2.close()
        close_aborted(wc.close)  # the old join: its server is gone
        assert wcfs._wcregistry[wc2.mountpoint] is wc2
        wc2.close()
    finally:
        wc2._wcsrv.stop()
        wcfs._wcautostarted.remove(wc2)
    wc._wcsrv.stop()
    no_server(zurl)


def test_start_after_crash(wcfs_db):
    zurl = wcfs_db.zurl
    wc = crash_new_server(zurl)
    srv = wcfs.start(zurl)
    try:
        assert wcfs._is_mountpoint(srv.mountpoint)
        with open(os.path.join(srv.mountpoint, bigfile(wcfs_db)), "rb") as f:
            assert f.read() == wcfs_db.data
    finally:
        srv.stop()
    assert not wcfs._is_mountpoint(srv.mountpoint)
    no_server(zurl)


def test_serve_after_crash(wcfs_db):
    zurl = wcfs_db.zurl
    wc = crash_new_server(zurl)
    served = []

    def run():
        try:
            wcfs.serve(zurl, ())
            served.append(None)
        except Exception as e:
            served.append(e)

    t = threading.Thread(target=run)
    t.start()
    try:
        f = wcfs._waitmount(30, zurl, wc.mountpoint)
        assert f.read() == zurl
        f.close()
        assert wcfs._is_mountpoint(wc.mountpoint)
        with pytest.raises(RuntimeError, match=r"^wcfs: serve .*: already running"):
            wcfs.serve(zurl, ())
    finally:
        wcfs.stop(zurl)
        t.join(30)
    assert served == [None]
    no_server(zurl)


def test_stuckdump(wcfs_db):
    srv = wcfs.start(wcfs_db.zurl)
    try:
        dump = srv._stuckdump()
        assert "wcfs server pid %d" % srv._proc.pid in dump
        assert "clients of fuse.wcfs on %s" % srv.mountpoint in dump
    finally:
        srv.stop()


# ---- stop ----

def test_stop_hung_server(wcfs_db):
    """A SIGSTOPped server with a client: stop finishes within its timeout
    through the FUSE abort, leaves nothing, and blocks without the GIL."""
    zurl = wcfs_db.zurl
    srv = wcfs.start(zurl)
    wc = wcfs.join(zurl, autostart=False)
    f = wc._open(bigfile(wcfs_db))
    suspend(srv._proc.pid)
    abort = srv._fuseabort
    assert abort is not None

    ticks = [0]
    stopped = threading.Event()

    def tick():
        while not stopped.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    t = threading.Thread(target=tick)
    t.start()
    t0 = time.monotonic()
    try:
        srv.stop(3)
    finally:
        stopped.set()
        t.join()
    took = time.monotonic() - t0
    assert took < 3 + 1.5, took
    assert ticks[0] > 50, "another thread did not run while stop blocked (GIL held?)"
    assert srv._proc.poll() == 0
    with pytest.raises(OSError) as exc:
        f.read()
    assert exc.value.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    close_aborted(f.close)
    close_aborted(wc.close)
    no_server(zurl)


def test_close_on_hung_server(wcfs_db, caplog):
    """Closing a file of the mount returns at once while the server is
    SIGSTOPped (data files open with FOPEN_NOFLUSH: the kernel sends no
    FLUSH); WCFS.close() waits for the FLUSH of .wcfs/zurl (how a dead server
    shows, as with the reference) at most its bound, then returns with a
    warning and lets the close finish in the background."""
    caplog.set_level(logging.WARNING, logger="wcfs")
    zurl = wcfs_db.zurl
    srv = wcfs.start(zurl)
    try:
        wc = wcfs.join(zurl, autostart=False)
        f = wc._open(bigfile(wcfs_db))
        suspend(srv._proc.pid)
        try:
            fclosed, wclosed = threading.Event(), threading.Event()

            def close():
                f.close()
                fclosed.set()
                wc.close()
                wclosed.set()

            t = threading.Thread(target=close, daemon=True)
            t.start()
            assert fclosed.wait(60), "close of a data file blocked on the stopped server"
            assert wclosed.wait(60), "WCFS.close blocked on the stopped server"
        finally:
            os.kill(srv._proc.pid, signal.SIGCONT)
        t.join(60)
        assert "the server did not answer" in caplog.text
        assert wc.mountpoint not in wcfs._wcregistry
    finally:
        srv.stop()
    no_server(zurl)


class Deadline:
    """A pygolang-like context: only deadline() is used."""

    def __init__(self, timeout):
        self.t = time.time() + timeout

    def deadline(self):
        return self.t


def test_stop_busy_names_holders(wcfs_db, caplog):
    zurl = wcfs_db.zurl
    srv = wcfs.start(zurl)
    f = open(os.path.join(srv.mountpoint, bigfile(wcfs_db)), "rb")
    try:
        with pytest.raises(wcfs._FUSEUnmountError) as exc:
            wcfs._fuse_unmount(srv.mountpoint)
        msg = str(exc.value)
        assert msg.startswith("fuse_unmount %s: failed: " % srv.mountpoint)
        assert "device or resource busy" in msg
        assert "pid %d (" % os.getpid() in msg
        assert "fd %d -> %s" % (f.fileno(), os.path.join(srv.mountpoint, bigfile(wcfs_db))) in msg
        with caplog.at_level("INFO", logger="wcfs"):
            srv.stop(Deadline(10))  # a context-like object
        logged = caplog.text
        assert "unmount/stop wcfs pid%d" % srv._proc.pid in logged
        assert "fd %d -> " % f.fileno() in logged  # the holder, in the log
        assert "abort FUSE connection" in logged
    finally:
        close_aborted(f.close)
        srv.stop()
    no_server(zurl)


def test_stop_by_zurl(wcfs_db):
    zurl = wcfs_db.zurl
    wcfs.stop(zurl)  # nothing running: fine
    srv = wcfs.start(zurl)
    wcfs.stop(zurl)
    wcfs._waitfor(5, lambda: srv._proc.poll() is not None)  # reaped by this process
    no_server(zurl)
    srv.stop()  # nothing left to do


# ---- command line ----

def run_cli(*argv, module="wcfs"):
    return subprocess.run([sys.executable, "-m", module] + list(argv),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)


def test_wcfs_main_dispatch(monkeypatch):
    calls = []
    monkeypatch.setattr(wcfs, "serve", lambda *a, **kw: calls.append(("serve", a, kw)))
    monkeypatch.setattr(wcfs, "status", lambda *a, **kw: calls.append(("status", a, kw)))
    monkeypatch.setattr(wcfs, "stop", lambda *a, **kw: calls.append(("stop", a, kw)))
    wcfs.main(["serve", "-arg0", "file:///x.fs"])
    wcfs.main(["status", "file:///x.fs"])
    wcfs.main(["stop", "file:///x.fs"])
    assert calls == [
        ("serve", ("file:///x.fs", ("-arg0",)), {"exec_": True}),
        ("status", ("file:///x.fs",), {}),
        ("stop", ("file:///x.fs",), {}),
    ]


def test_cli(wcfs_db):
    zurl = wcfs_db.zurl
    p = run_cli("-h")
    assert p.returncode == 0 and "Usage: wcfs (serve|stop|status)" in p.stdout
    assert "wcfs.go" not in p.stdout
    # usage errors say what is wrong first, then the usage
    for argv, want in [((), "wcfs: no command given"), (("frob", zurl), 'wcfs: unknown command "frob"'),
                       (("bogus",), 'wcfs: unknown command "bogus"'), (("status",), "wcfs: status: no zurl given"),
                       (("stop", "-x", zurl), "wcfs: stop takes no options")]:
        p = run_cli(*argv)
        assert p.returncode == 2, argv
        assert p.stderr.splitlines()[0].startswith(want), (argv, p.stderr)
        assert "Usage: wcfs (serve|stop|status)" in p.stderr, argv
    # serve -h: what serve users give (no mountpoint), and the server's options
    p = run_cli("serve", "-h", module="wendelin.wcfs")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Usage: wcfs serve [options] zurl\n")
    assert "-autoexit" in p.stdout and "-pintimeout" in p.stdout
    assert "mntpt" not in p.stdout

    p = run_cli("status", zurl)
    assert p.returncode == 1
    assert p.stdout.startswith("fail - mount entry: nothing mounted at ")

    srv = wcfs.start(zurl)
    try:
        p = run_cli("status", zurl)
        assert p.returncode == 0, p.stdout + p.stderr
        lines = p.stdout.splitlines()
        assert all(l.startswith("ok - ") for l in lines), lines
        assert any(l.startswith("ok - server process: pid %d " % srv._proc.pid) for l in lines)
        assert "ok - .wcfs/zurl: " + zurl in lines
        p = run_cli("stop", zurl, module="wendelin.wcfs")
        assert p.returncode == 0, p.stderr
        assert "unmount/stop wcfs pid%d" % srv._proc.pid in p.stderr  # glog-like log on stderr
    finally:
        srv.stop()
    no_server(zurl)


def test_cli_serve(wcfs_db):
    zurl = wcfs_db.zurl
    proc = subprocess.Popen([sys.executable, "-m", "wcfs", "serve", "-autoexit.grace", "1h", zurl],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        mntpt = wcfs._mountpoint(zurl)
        f = wcfs._waitmount(60, zurl, mntpt)
        f.close()
        # exec: the python process became the server
        argv = open("/proc/%d/cmdline" % proc.pid, "rb").read().split(b"\0")[:-1]
        assert argv[0] == wcfs._wcfs_exe().encode() and argv[-2:] == [zurl.encode(), mntpt.encode()]
        wcfs.stop(zurl)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    no_server(zurl)


# ---- bad input ----

@pytest.mark.parametrize("zurl, want", [
    ("", "invalid zurl \"\": empty"),
    ("neo://db@127.0.0.1:99999", 'port "99999" is not a number from 1 to 65535'),
    ("zeo://localhost", 'address "localhost": want host:port'),
    ("https://example.com/x", "can't normalize zurl with scheme https"),
    ("postgres://db/x", "can't normalize zurl with scheme postgres"),
    ("neo://x:1", "needs <cluster>@<master>"),
    ("file:///a\nb", "control character"),
])
def test_bad_zurl(zurl, want):
    for f in (lambda: wcfs.join(zurl), lambda: wcfs.start(zurl), lambda: wcfs.stop(zurl),
              lambda: wcfs._mountpoint(zurl)):
        with pytest.raises(RuntimeError) as exc:
            f()
        assert want in str(exc.value)
    assert os.listdir("/dev/shm/wcfs") == [x for x in os.listdir("/dev/shm/wcfs") if not x.endswith(".lock")]


def test_missing_database(tmp_path, wcfs_leakcheck):
    zurl = "file://%s/nonexistent.fs" % tmp_path
    wcfs_leakcheck(zurl)
    with pytest.raises(RuntimeError) as exc:
        wcfs.join(zurl, autostart=True)
    msg = str(exc.value)
    assert msg.startswith("wcfs: join %s: server pid" % zurl)
    assert "exited with status 1 before it was ready" in msg
    assert "nonexistent.fs" in msg
    # the server's log explains the failure; it stays until the next start or stop
    log = wcfs._mountpoint(zurl) + ".log"
    assert "(server log: %s)" % log in msg
    with open(log) as f:
        assert "nonexistent.fs: no such file or directory" in f.read()
    wcfs.stop(zurl)
    assert not os.path.exists(log)
    no_server(zurl)


def test_foreign_mount(wcfs_db):
    zurl = wcfs_db.zurl
    mntpt = wcfs._mountpoint(zurl)
    os.makedirs(mntpt)
    subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=1m", "wcfs-test-tmpfs", mntpt])
    try:
        for f in (lambda: wcfs.join(zurl), lambda: wcfs.start(zurl), lambda: wcfs.stop(zurl)):
            with pytest.raises(RuntimeError, match="is a tmpfs mount .*not a wcfs server: refusing to use it"):
                f()
        p = run_cli("status", zurl)
        assert p.returncode == 1 and "fail - mount entry: " in p.stdout and "tmpfs" in p.stdout
        assert wcfs._is_mountpoint(mntpt)  # left alone
    finally:
        subprocess.check_call(["umount", mntpt])
        os.rmdir(mntpt)
    no_server(zurl)


def test_foreign_directory(wcfs_db):
    zurl = wcfs_db.zurl
    mntpt = wcfs._mountpoint(zurl)
    os.makedirs(mntpt)
    os.chown(mntpt, 65534, 65534)
    try:
        with pytest.raises(RuntimeError, match="belongs to uid 65534, not to uid 0: refusing to mount there"):
            wcfs.join(zurl)
        assert os.stat(mntpt).st_uid == 65534  # left alone
        assert server_pids(mntpt) == []
    finally:
        os.rmdir(mntpt)
    no_server(zurl)


def test_path_of_zbigfile(wcfs_db):
    """_path/_read/_stat/_open accept a ZBigFile object (genuine ZODB)."""
    import ZODB
    from ZODB.FileStorage import FileStorage

    db = ZODB.DB(FileStorage(wcfs_db.path, read_only=True))
    try:
        conn = db.open()
        zf = conn.root()["zf"]
        at = db.lastTransaction()
        with wcfs.join(wcfs_db.zurl) as wc:
            try:
                assert wc._path(zf) == os.path.join(wc.mountpoint, "head/bigfile/" + wcfs_db.oid)
                assert wc._path(zf, at=at) == os.path.join(wc.mountpoint, "@%s/bigfile/%s" % (at.hex(), wcfs_db.oid))
                assert wc._read(zf) == wcfs_db.data
                assert wc._read(zf, at=at) == wcfs_db.data
                assert wc._stat(zf).st_size == len(wcfs_db.data)
                with wc._open(zf, at=at) as f:
                    assert f.read(4) == wcfs_db.data[:4]
                with pytest.raises(TypeError, match="want str or ZBigFile"):
                    wc._path(conn.root())
                with pytest.raises(ValueError):
                    wc._path("head/at", at=at)
            finally:
                srv = wc._wcsrv
        srv.stop()
        wcfs._wcautostarted.remove(wc)
    finally:
        db.close()
