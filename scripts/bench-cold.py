#!/usr/bin/env python3
# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""bench-cold: cold sequential reads through fresh WCFS servers, side by side.

Each iteration starts every given server anew on the same FileStorage (in
the OS page cache first), reads one ZBigFile from start to end with read(2)
of 2 MiB, and stops the server; the servers take turns, so that they share
the machine's state (BENCHMARKS.md: these machines are noisy). It prints
MB/s per server and iteration, the medians, the ratios to the server named
"ref" in each iteration, and the CPU time of each server and of the reader.

    scripts/bench-cold.py DB.fs OID NAME=COMMAND [NAME=COMMAND ...] [-n N]

COMMAND is a server command line without zurl and mountpoint (split on
spaces), e.g. ours=bin/wcfs prefetch="bin/wcfs -prefetch=16M"
ref=.upstream/env/wendelin.core/wcfs/wcfs.orig (the reference, built by
`make test-upstream`). A database: bin/wcfs-zgen --size=512M --blksize=2M
--fmt=ZBlk0 DB.fs (the file's oid is in DB.json).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def warm(path):
    with open(path, "rb") as f:
        while f.read(8 << 20):
            pass


def mounted(mnt):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == mnt for line in f)


def cputime(pid):
    with open("/proc/%d/stat" % pid) as f:
        st = f.read().rpartition(")")[2].split()
    return (int(st[11]) + int(st[12])) / os.sysconf("SC_CLK_TCK")


def cold(db, oid, argv):
    """cold starts argv on db, reads file oid through it and stops it; it
    returns (MB/s, server CPU s, reader CPU s)."""
    warm(db)
    mnt = tempfile.mkdtemp(prefix="wcfs-bench-cold-")
    # -logtostderr: the reference's glog would otherwise leave log files in /tmp
    p = subprocess.Popen(argv[:1] + ["-logtostderr"] + argv[1:] + ["file://" + db, mnt],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (mounted(mnt) and os.path.exists(mnt + "/.wcfs/zurl")):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("%s: not serving (exit %s)" % (" ".join(argv), p.poll()))
            time.sleep(0.01)
        buf = bytearray(2 << 20)
        n = 0
        c0 = os.times()
        t0 = time.perf_counter()
        with open("%s/head/bigfile/%s" % (mnt, oid), "rb", buffering=0) as f:
            while True:
                k = f.readinto(buf)
                if not k:
                    break
                n += k
        dt = time.perf_counter() - t0
        c1 = os.times()
        srvcpu = cputime(p.pid)
    finally:
        if mounted(mnt):
            subprocess.run(["umount", mnt])
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()  # our own child, by its pid
            p.wait()
            subprocess.run(["umount", "-l", mnt])
        os.rmdir(mnt)
    return n / dt / 1e6, srvcpu, (c1.user - c0.user) + (c1.system - c0.system)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("db")
    ap.add_argument("oid")
    ap.add_argument("servers", nargs="+", metavar="NAME=COMMAND")
    ap.add_argument("-n", type=int, default=6, help="iterations (default 6)")
    args = ap.parse_args()
    servers = []
    for s in args.servers:
        name, eq, cmd = s.partition("=")
        if not eq or not cmd:
            ap.error("%r: want NAME=COMMAND" % s)
        servers.append((name, cmd.split()))
    res = {name: [] for name, _ in servers}
    print("load average before: %s" % open("/proc/loadavg").read().split()[:3])
    for _ in range(args.n):
        for name, argv in servers:
            res[name].append(cold(os.path.abspath(args.db), args.oid, argv))
    print("load average after:  %s" % open("/proc/loadavg").read().split()[:3])
    for name, v in res.items():
        mbs = [x[0] for x in v]
        print("%-12s MB/s %s  median %.0f | server CPU s %s | reader CPU s %s" % (
            name, " ".join("%.0f" % x for x in mbs), statistics.median(mbs),
            " ".join("%.2f" % x[1] for x in v), " ".join("%.2f" % x[2] for x in v)))
    if "ref" in res:
        for name, v in res.items():
            if name != "ref":
                r = [a[0] / b[0] for a, b in zip(v, res["ref"])]
                print("%s/ref: %s  median %.1f" % (name, " ".join("%.1f" % x for x in r), statistics.median(r)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
