#!/usr/bin/env python3
# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""dpkg-lock-wait.py [--timeout S] [LOCK...]: wait until no process holds the
locks of apt and dpkg, at most S seconds (default 600).

A new machine often runs unattended upgrades for its first minutes, and apt-get
fails at once ("Could not get lock /var/lib/dpkg/lock-frontend") while they
hold the lock. This waits instead, saying which process holds which lock and
for how long it has waited (a line every 10 s), and exits 1 naming the holder
when the lock is still held after S seconds. It only looks: the holders are
read from /proc/locks (apt and dpkg take fcntl locks), nothing is locked
here, so apt-get can still lose a race to another process afterwards (give it
-o DPkg::Lock::Timeout as well).
"""

import argparse
import os
import sys
import time

LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock",
         "/var/cache/apt/archives/lock")


def holders(paths):
    """holders returns {path: pid} of the paths that some process holds a
    POSIX or OFD lock on (pid -1 for an OFD lock, whose owner is unknown)."""
    ids = {}
    for path in paths:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        ids["%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)] = path
    held = {}
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if "->" in fields:  # a waiter: "1: -> POSIX ..."
                continue
            if len(fields) < 6 or fields[1] not in ("POSIX", "OFDLCK"):
                continue
            path = ids.get(fields[5])
            if path is not None:
                held[path] = int(fields[4])
    return held


def describe(pid):
    if pid <= 0:
        return "an open file description (OFD lock)"
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")[:-1]
        cmd = " ".join(a.decode(errors="replace") for a in argv).replace("\n", " ")[:80]
    except OSError:
        cmd = "?"
    return "process %d (%s)" % (pid, cmd)


def main(argv=None):
    p = argparse.ArgumentParser(prog="dpkg-lock-wait.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait at most (default 600)")
    p.add_argument("locks", nargs="*", default=list(LOCKS), help="lock files (default: apt's and dpkg's)")
    a = p.parse_args(argv)

    t0 = time.monotonic()
    said = None
    while True:
        held = holders(a.locks)
        if not held:
            if said is not None:
                print("deps-system: the apt/dpkg locks are free after %.0f s" % (time.monotonic() - t0),
                      flush=True)
            return 0
        waited = time.monotonic() - t0
        what = "; ".join("%s is held by %s" % (path, describe(pid)) for path, pid in sorted(held.items()))
        if waited >= a.timeout:
            print("deps-system: ERROR: %s, still after %.0f s: wait for it to finish (e.g. unattended "
                  "upgrades on a new machine) and run again" % (what, waited), file=sys.stderr, flush=True)
            return 1
        if said is None or waited - said >= 10:
            print("deps-system: %s: waiting (%.0f s of at most %.0f s)" % (what, waited, a.timeout), flush=True)
            said = waited
        time.sleep(min(1.0, max(a.timeout - waited, 0.05)))


if __name__ == "__main__":
    sys.exit(main())
