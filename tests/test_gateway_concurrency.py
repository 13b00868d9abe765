# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""wendelin.wcfs under concurrency: many processes joining one zurl at once,
threads, fork."""

import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from conftest import server_pids

from wendelin import wcfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                                reason="needs root and /dev/fuse (mounts with mount(2))")

# a joiner: imports wcfs and says "ready"; then, every round, waits for "go",
# joins, reports, waits for "close", closes and says "closed"
JOINER = r"""
import json, os, sys
from wendelin import wcfs
print("ready", flush=True)
while sys.stdin.readline() == "go\n":
    try:
        wc = wcfs.join(sys.argv[1])
        res = {"started": wc._wcsrv is not None, "zurl": wc._read(".wcfs/zurl").decode()}
    except Exception as e:
        wc, res = None, {"error": str(e)}
    print(json.dumps(res), flush=True)
    sys.stdin.readline()
    if wc is not None:
        wc.close()
    print("closed", flush=True)
"""


def test_join_storm(wcfs_db):
    """16 processes join one zurl at once, 20 rounds: every round exactly one
    server starts and every join works. The processes are started once (the
    rounds measure joins, not interpreter startups)."""
    zurl = wcfs_db.zurl
    mntpt = wcfs._mountpoint(zurl)
    nproc, nround = 16, 20

    def tell(msg):
        for p in procs:
            p.stdin.write(msg + "\n")
            p.stdin.flush()

    with tempfile.TemporaryFile() as errlog:  # the joiners' (and servers') stderr
        procs = [subprocess.Popen([sys.executable, "-c", JOINER, zurl], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=errlog, text=True)
                 for _ in range(nproc)]
        try:
            for p in procs:
                assert p.stdout.readline() == "ready\n"
            for rnd in range(nround):
                tell("go")  # all at once
                results = [json.loads(p.stdout.readline()) for p in procs]
                errors = [r["error"] for r in results if "error" in r]
                assert errors == [], "round %d" % rnd
                assert all(r["zurl"] == zurl for r in results)
                nstarted = sum(r["started"] for r in results)
                assert nstarted == 1, "round %d: %d servers started" % (rnd, nstarted)
                assert len(server_pids(mntpt)) == 1
                tell("close")
                assert all(p.stdout.readline() == "closed\n" for p in procs)
                wcfs.stop(zurl)
                assert server_pids(mntpt) == []
                assert not os.path.exists(mntpt)
            tell("exit")
            for p in procs:
                assert p.wait(60) == 0
        except BaseException:
            errlog.seek(0)
            sys.stderr.write(errlog.read().decode(errors="replace")[-20000:])
            raise
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait()
                p.stdin.close()
                p.stdout.close()


def test_join_threads(wcfs_db):
    """Threads of one process joining at once share one WCFS and one server."""
    zurl = wcfs_db.zurl
    got, errors = [], []
    start = threading.Barrier(8)

    def joiner():
        start.wait()
        try:
            got.append(wcfs.join(zurl))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=joiner) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    wc = got[0]
    try:
        assert all(x is wc for x in got)
        assert wc._njoin == 8
        assert wc._wcsrv is not None
        assert len(server_pids(wc.mountpoint)) == 1
    finally:
        for x in got:
            x.close()
        wc._wcsrv.stop()
        wcfs._wcautostarted.remove(wc)
    assert wcfs._wcregistry == {}


def test_fork(wcfs_db):
    """In a child forked without exec, Go calls fail at once with a clear
    error and pure-Python access still works; the parent is unaffected."""
    zurl = wcfs_db.zurl
    wc = wcfs.join(zurl)
    wcfs._wcautostarted.remove(wc)
    try:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            res = {}
            try:
                res["registry"] = len(wcfs._wcregistry)
                res["read"] = wc._read(".wcfs/zurl").decode()  # plain file access works
                for name, f in [("join", lambda: wcfs.join(zurl)), ("status", lambda: wcfs.status(zurl)),
                                ("mntpt", lambda: wcfs._mountpoint(zurl)), ("close", wc.close)]:
                    t0 = time.monotonic()
                    try:
                        f()
                        res[name] = "ok"
                    except Exception as e:
                        res[name] = "%s: %s" % (type(e).__name__, e)
                    res[name + "_time"] = time.monotonic() - t0
            except BaseException as e:
                res["crash"] = repr(e)
            finally:
                os.write(w, json.dumps(res).encode())
                os._exit(0)
        os.close(w)
        with os.fdopen(r) as f:
            res = json.loads(f.read())
        assert os.waitpid(pid, 0)[1] == 0
        assert "crash" not in res, res
        assert res["registry"] == 0
        assert res["read"] == zurl
        for name in ("join", "status", "mntpt"):
            assert res[name].startswith("WCFSError: wcfs: cannot use the Go runtime in pid "), res
            assert "forked without exec" in res[name]
            assert res[name + "_time"] < 1, res
        assert res["close"] == "ok"  # the child's copy: nothing to do

        # the parent is unaffected
        assert wc._njoin == 1
        wc2 = wcfs.join(zurl)
        assert wc2 is wc and wc._njoin == 2
        wc2.close()
        assert wc._read(".wcfs/zurl") == zurl.encode()
        wc.close()
    finally:
        wc._wcsrv.stop()
