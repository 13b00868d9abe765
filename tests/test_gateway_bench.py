# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""Benchmarks of wendelin.wcfs for BENCHMARKS.md ("## Gateway"); skipped
unless $WCFS_BENCH is set:

    WCFS_BENCH=1 .venv/bin/python -m pytest -s -q tests/test_gateway_bench.py

They print a markdown table. Everything is measured side by side in one run,
against plain file operations on the same mount.
"""

import json
import os
import statistics
import subprocess
import sys
import time
import timeit

import pytest

from wendelin import wcfs

pytestmark = pytest.mark.skipif(not os.environ.get("WCFS_BENCH"), reason="benchmark: set $WCFS_BENCH=1")

# a new process: import, then time a plain open+read+close of .wcfs/zurl on
# the mount and a join (autostart as argv[2] says) + close
CHILD = r"""
import json, sys, time
from wendelin import wcfs
zurl, autostart, mntpt = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
res = {}
if not autostart:
    t0 = time.perf_counter()
    with open(mntpt + "/.wcfs/zurl") as f:
        f.read()
    res["open"] = time.perf_counter() - t0
t0 = time.perf_counter()
wc = wcfs.join(zurl, autostart=autostart)
res["join"] = time.perf_counter() - t0
wc.close()
print(json.dumps(res))
"""


def child(zurl, autostart):
    mntpt = wcfs._mountpoint(zurl)
    env = dict(os.environ, WENDELIN_CORE_WCFS_OPTIONS="")  # no -debug -logtostderr
    t0 = time.perf_counter()
    out = subprocess.check_output([sys.executable, "-c", CHILD, zurl, "1" if autostart else "0", mntpt],
                                  env=env, stderr=subprocess.DEVNULL)
    res = json.loads(out)
    res["process"] = time.perf_counter() - t0
    return res


def stats(v):
    v = sorted(v)
    p99 = v[min(len(v) - 1, int(round(0.99 * (len(v) - 1))))]
    return statistics.median(v), p99


def row(what, v, unit=1e3, fmt="%.2f ms"):
    med, p99 = stats(v)
    print("| %s | %s | %s | %d |" % (what, fmt % (med * unit), fmt % (p99 * unit), len(v)))


def test_bench_gateway(wcfs_db):
    zurl = wcfs_db.zurl
    os.environ["WENDELIN_CORE_WCFS_OPTIONS"] = ""  # servers without -debug -logtostderr
    print("\n\n| operation | median | p99 | n |\n|---|---|---|---|")

    # join to a running server from a new process, vs a plain open there
    srv = wcfs.start(zurl)
    try:
        runs = [child(zurl, False) for _ in range(60)]
    finally:
        srv.stop()
    row("new process: `wcfs.join()` of a running server (+close)", [r["join"] for r in runs])
    row("new process: plain `open().read()` of `.wcfs/zurl` on the mount", [r["open"] for r in runs])
    row("new process: whole process (python start, import, open, join, exit)", [r["process"] for r in runs])

    # autostart until ready (new process), and stop of that server by zurl
    joins, stops = [], []
    for _ in range(15):
        joins.append(child(zurl, True)["join"])
        t0 = time.perf_counter()
        wcfs.stop(zurl)
        stops.append(time.perf_counter() - t0)
    row("new process: `wcfs.join()` autostarting the server, until ready", joins)
    row("`wcfs.stop(zurl)` of an idle server (found in /proc)", stops)

    # start + clean stop in this process
    starts, stops = [], []
    for _ in range(15):
        t0 = time.perf_counter()
        srv = wcfs.start(zurl)
        starts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        srv.stop()
        stops.append(time.perf_counter() - t0)
    row("`wcfs.start()` until ready", starts)
    row("`Server.stop()` clean (idle server: unmount, exit, rmdir)", stops)

    # per-call cost of the binding vs plain file operations on the mount
    srv = wcfs.start(zurl)
    try:
        wc = wcfs.join(zurl, autostart=False)
        path = os.path.join(wc.mountpoint, ".wcfs/zurl")

        def joinclose():
            wcfs.join(zurl).close()

        def openclose():
            open(path, "rb", buffering=0).close()

        calls = [
            ("binding: `wc._njoin` (one Go call)", lambda: wc._njoin),
            ("binding: `wcfs._mountpoint()` (normalize + sha1 in Go)", lambda: wcfs._mountpoint(zurl)),
            ("binding: `wcfs.join()` + `close()` of a joined server (registry hit)", joinclose),
            ("plain: `os.stat()` of a file on the mount", lambda: os.stat(path)),
            ("plain: `open()` + `close()` of a file on the mount", openclose),
        ]
        print("\n| call (same process, side by side) | median per call | p99 per call | n |\n|---|---|---|---|")
        for what, f in calls:
            n = 2000
            per = [t / n for t in timeit.repeat(f, number=n, repeat=15)]
            row(what, per, unit=1e6, fmt="%.2f µs")
        wc.close()
    finally:
        srv.stop()
