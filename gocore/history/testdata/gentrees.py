# Copyright (C) 2025  WCFS authors.
# SPDX-License-Identifier: GPL-3.0-or-later
"""Database of blktab edge cases for gocore/history (TestTreeEdges), by genuine ZODB.

    python gentrees.py OUT.fs

What the toolkit's writer does not do, done on the BTrees directly (classes of
tools/pylib/wendelin/bigfile/file_zodb.py, which must be on sys.path):

  - blktab.clear() of a three-level tree: interior nodes and buckets dropped whole,
    without being modified themselves;
  - blktab.update() of many keys in the middle of a big tree;
  - one ZBlk object shared by two keys of a file and by a key of another file,
    then changed in place;
  - a file given the blktab of another file (an epoch for it; then both files share
    every node);
  - deletions of ranges through the BTree API.

It prints {"files": ["<oid>", ...]} on stdout.
"""

import json
import sys

import transaction
import ZODB
import ZODB.FileStorage

from wendelin.bigfile.file_zodb import ZBigFile, ZBlk0

N = 40000  # > 31000 keys: the root of an LOBTree splits, three levels


def commit(note):
    transaction.get().note(note)
    transaction.commit()


def main():
    db = ZODB.DB(ZODB.FileStorage.FileStorage(sys.argv[1], create=True))
    conn = db.open()
    root = conn.root()
    zfa = root["zfa"] = ZBigFile(16)
    zfb = root["zfb"] = ZBigFile(16)
    for blk in range(N):
        zfa.storeblk(blk, b"a%d" % blk, "ZBlk0")
    for blk in range(100):
        zfb.storeblk(blk, b"b%d" % blk, "ZBlk0")
    commit("create zfa (3 levels), zfb")

    for blk in range(0, N, 997):
        zfa.storeblk(blk, b"a%d v2" % blk, "ZBlk0")
    commit("zfa: scattered rewrites")

    zfa.blktab.clear()
    commit("zfa: blktab.clear()")

    for blk in range(5000, 5000 + 35000):
        zfa.storeblk(blk, b"a%d v3" % blk, "ZBlk0")
    commit("zfa: refilled")

    shared = zfb.blktab[6]
    zfb.blktab[5] = shared
    zfa.blktab[7] = shared
    commit("one ZBlk for zfb #5, #6 and zfa #7")

    shared.setblkdata(b"shared v2")
    shared._p_changed = True
    commit("the shared ZBlk changed in place")

    zfa.blktab.update({k: ZBlk0() for k in range(20000, 20500)})
    for k in range(20000, 20500):
        zfa.blktab[k].setblkdata(b"u%d" % k)
    commit("zfa: update() of 500 keys in the middle")

    zfb.blktab = zfa.blktab
    commit("zfb takes zfa's blktab")

    for blk in range(5000, 40000, 1500):
        zfa.storeblk(blk, b"a%d v4" % blk, "ZBlk0")
    commit("rewrites seen by both files")

    for k in list(zfa.blktab.keys(10000, 30000)):
        del zfa.blktab[k]
    commit("del [10000, 30000] through the BTree API")

    shared.setblkdata(b"shared v3")
    shared._p_changed = True
    for k in list(zfa.blktab.keys(30000)):
        del zfa.blktab[k]
    commit("shared ZBlk changed again; the end deleted")

    files = [zfa._p_oid.hex(), zfb._p_oid.hex()]
    db.close()
    print(json.dumps({"files": files}))


if __name__ == "__main__":
    main()
