# Copyright (C) 2025  WCFS authors.
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark database of gocore/history (bench_test.go), written by genuine ZODB.

    python genbench.py OUT.fs --nblk N --blksize B --commits C --touch T --seed S

One ZBigFile root['zf'] (classes of tools/pylib/wendelin/bigfile/file_zodb.py, which
must be on sys.path) with N blocks of tiny ZBlk0 data (the history never reads block
data), committed at once; then C commits, each touching T random blocks:

  - 80 %: the block's data rewritten in place (same ZBlk, its format kept);
  - 10 %: its format switched ZBlk0 <-> ZBlk1 (a new ZBlk: a blktab entry changes);
  - 10 %: a hole punched, or the hole filled again (a blktab entry deleted/added).

The toolkit's own writer (ztestdb) records a manifest of every file at every commit,
which does not scale to 10,000 commits of a 32768-block file; this script writes with
the same persistent classes and no manifest. It prints {"oid": "<16 hex>"} on stdout.
"""

import argparse
import json
import random

import transaction
import ZODB
import ZODB.FileStorage

from wendelin.bigfile.file_zodb import ZBigFile, ZBlk1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out")
    p.add_argument("--nblk", type=int, required=True)
    p.add_argument("--blksize", type=int, required=True)
    p.add_argument("--commits", type=int, required=True)
    p.add_argument("--touch", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = random.Random(a.seed)

    db = ZODB.DB(ZODB.FileStorage.FileStorage(a.out, create=True))
    conn = db.open()
    root = conn.root()
    zf = root["zf"] = ZBigFile(a.blksize)
    for blk in range(a.nblk):
        zf.storeblk(blk, b"blk %d" % blk, "ZBlk0")
    transaction.get().note("create zf: %d blocks of %d bytes" % (a.nblk, a.blksize))
    transaction.commit()
    oid = zf._p_oid.hex()

    for i in range(a.commits):
        for blk in rng.sample(range(a.nblk), a.touch):
            data = b"blk %d v%d" % (blk, i)
            zblk = zf.blktab.get(blk)
            r = rng.random()
            if zblk is None or r >= 0.9:
                if zblk is None:
                    zf.storeblk(blk, data, "ZBlk0")
                else:
                    del zf.blktab[blk]
            elif r < 0.8:
                zf.storeblk(blk, data, "ZBlk1" if isinstance(zblk, ZBlk1) else "ZBlk0")
            else:
                zf.storeblk(blk, data, "ZBlk0" if isinstance(zblk, ZBlk1) else "ZBlk1")
        transaction.get().note("commit %d" % i)
        transaction.commit()
        if i % 100 == 0:
            conn.cacheGC()
    db.close()
    print(json.dumps({"oid": oid}))


if __name__ == "__main__":
    main()
