# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""Benchmarks of the client from Python for BENCHMARKS.md ("## Client");
skipped unless $WCFS_BENCH is set:

    WCFS_BENCH=1 .venv/bin/python -m pytest -s -q tests/test_client_bench.py

Side by side in one run, interleaved: NumPy summing a 512 MiB file (2 MiB
blocks, data in the page cache) through a fresh isolated mapping
(wc.connect(head)/open/mmap, numpy.frombuffer(m.mem)) and through a fresh
plain mmap of head/bigfile/<oid> (Python's mmap module); and the cost of
Conn.resync over K pinned blocks from Python. Prints a markdown table.
"""

import mmap
import os
import statistics
import subprocess
import sys
import time

import pytest

from wendelin import wcfs

pytestmark = pytest.mark.skipif(not os.environ.get("WCFS_BENCH"), reason="benchmark: set $WCFS_BENCH=1")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = os.environ.get("WCFS_BENCH_SIZE", "512M")


def test_bench_client_scan(tmp_path, wcfs_leakcheck):
    np = pytest.importorskip("numpy")
    path = str(tmp_path / "bench.fs")
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "tools", "pylib"))
    subprocess.check_call([sys.executable, "-m", "ztestdb", "gen", path, "--files=1", "--size=" + SIZE,
                           "--blksize=2M", "--fmt=ZBlk0", "--no-manifest", "--no-progress"], env=env,
                          stdout=subprocess.DEVNULL)
    import ztestdb
    with ztestdb.Database.open(path, history=False) as db:
        oid = bytes.fromhex(db.file_info("zf0")["oid"])
    zurl = "file://" + path
    wcfs_leakcheck(zurl)
    srv = wcfs.start(zurl)
    wc = wcfs.join(zurl, autostart=False)
    try:
        head = bytes.fromhex(wc._read("head/at").decode().strip())
        conn = wc.connect(head)
        fh = conn.open(oid)
        f = open(wc._path("head/bigfile/" + oid.hex()), "rb")
        size = os.fstat(f.fileno()).st_size
        nblk = size // fh.blksize

        def plain():
            t0 = time.perf_counter()
            mm = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)
            s = np.frombuffer(mm, dtype=np.uint64).sum()
            dt = time.perf_counter() - t0
            mm.close()
            return dt, s

        def isolated():
            t0 = time.perf_counter()
            m = fh.mmap(0, nblk)
            s = np.frombuffer(m.mem, dtype=np.uint64).sum()
            dt = time.perf_counter() - t0
            m.unmap()
            return dt, s

        s0 = plain()[1]  # into the page cache
        assert isolated()[1] == s0
        tp, ti = [], []
        for i in range(10):
            for which in ((plain, tp), (isolated, ti))[:: 1 if i % 2 == 0 else -1]:
                dt, s = which[0]()
                assert s == s0
                which[1].append(dt)
        mibps = lambda v: size / (1 << 20) / statistics.median(v)  # noqa: E731
        print()
        print("| %s scan, NumPy sum (uint64), fresh mapping | median MiB/s | runs |" % SIZE)
        print("|---|---|---|")
        print("| plain mmap of head/bigfile/<oid> | %.0f | %d |" % (mibps(tp), len(tp)))
        print("| isolated mapping (connect/open/mmap) | %.0f | %d |" % (mibps(ti), len(ti)))
        print("| ratio isolated/plain | %.3f | |" % (mibps(ti) / mibps(tp)))
        f.close()
        fh.close()
        conn.close()
    finally:
        wc.close()
        srv.stop()
