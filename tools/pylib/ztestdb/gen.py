"""Create demo and benchmark databases: ``python -m ztestdb gen OUT.fs [options]``.

With no shape option it creates the *demo* dataset: several ZBigFiles with 2 MiB,
64 KiB and 4 KiB blocks in ZBlk0, ZBlk1, 'auto' and mixed formats, with holes, a blktab
split into several buckets, and a few history transactions (rewrites, a one-chunk
patch, an append, format changes, holes punched, a non-file change). With --big SIZE
the demo dataset also has zfbig, SIZE bytes of data (rounded up to whole blocks) in 2 MiB
ZBlk0 blocks, committed first on its own: enough data for read throughput to mean something.

With any of --files/--size/--blksize/--fmt/--history/--holes it creates N files of the
given size instead, then the given number of history transactions, each changing a
random file (rewrite, small patch, append, zero, punch a hole, change a format).

Data is pseudo-random and deterministic for a given --seed. The manifest (format of
``../shared/testdata/zodb/small.json``) is written beside the database as OUT.json
unless --no-manifest. Progress goes to stderr when it is a terminal or with --progress.
"""

import argparse
import os
import random
import re
import sys
import time

from .database import Database, MiB

__all__ = ["main", "parse_size", "BlockSource", "gen_demo", "gen_files", "Progress"]

SHAPE_OPTIONS = ("files", "size", "blksize", "fmt", "history", "holes")
FMT_CHOICES = ("ZBlk0", "ZBlk1", "auto", "mixed")


def parse_size(s):
    """Parse '512M', '64KiB', '2m', '4096' -> bytes (K, M, G, T are powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmgt]?)(i?b)?\s*", str(s), re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError("invalid size %r (want e.g. 4096, 64K, 2M, 1G)" % s)
    n = int(m.group(1))
    return n << (10 * " kmgt".index(m.group(2).lower() or " "))


class BlockSource:
    """Deterministic pseudo-random block data, fast enough for GiB-sized databases.

    A random pool made once from the seed; every block is a slice of it at a
    pseudo-random offset, stamped with (file, blk, version) so that blocks differ.
    """

    POOL = 8 * MiB

    def __init__(self, seed):
        self.rng = random.Random(seed)
        try:
            import numpy as np
            self.pool = np.random.default_rng(seed).integers(
                0, 256, self.POOL, dtype=np.uint8).tobytes()
        except ImportError:  # pragma: no cover - numpy is in requirements.txt
            self.pool = self.rng.randbytes(self.POOL)
        self._pool = memoryview(self.pool)
        self.version = 0

    def data(self, n, stamp=""):
        """n pseudo-random bytes (no trailing zeros unless n is tiny)."""
        if n <= 0:
            return b""
        self.version += 1
        head = ("<%s v%d>" % (stamp, self.version)).encode()[:n]
        rest = n - len(head)
        out = bytearray(head)
        while rest > 0:
            k = min(rest, self.POOL - 1)
            off = self.rng.randrange(self.POOL - k + 1)
            out += self._pool[off:off + k]
            rest -= k
        if out[-1] == 0:
            out[-1] = 1
        return bytes(out)


class Progress:
    """Progress of writing on stderr: a refreshed line on a terminal, else a line/s."""

    def __init__(self, enabled, stream=None):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.monotonic()
        self.last = 0.0
        self.nbytes = 0
        self.shown = False

    def __call__(self, what, done, total, nbytes=0):
        self.nbytes += nbytes
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self.last < (0.1 if self.tty else 1.0):
            return
        self.last = now
        rate = self.nbytes / max(now - self.t0, 1e-6) / MiB
        line = "%s: %d/%d blocks  %.0f MiB written  %.0f MiB/s" % (
            what, done, total, self.nbytes / MiB, rate)
        if self.tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.shown = True

    def note(self, msg):
        if not self.enabled:
            return
        if self.tty and self.shown:
            self.stream.write("\r\033[K")
        self.stream.write(msg + "\n")
        self.stream.flush()
        self.shown = False

    def done(self):
        if self.enabled and self.tty and self.shown:
            self.stream.write("\n")
            self.stream.flush()


def gen_demo(db, seed=0, progress=None, big=0):
    """The default demo dataset (a few MiB, and big bytes in zfbig): see the
    module docstring."""
    src = BlockSource(seed)
    rng = random.Random(seed)
    K = 1024

    if big:
        db.create_file("zfbig", 2 * MiB, "ZBlk0")
        nblk = -(-big // (2 * MiB))
        for blk in range(nblk):
            db.write_block("zfbig", blk, src.data(2 * MiB, "zfbig %d" % blk))
        db.commit("demo T0: create zfbig (%d MiB)" % (2 * nblk), progress=progress)

    db.create_file("zf0", 2 * MiB, "ZBlk0")
    db.create_file("zf1", 2 * MiB, "ZBlk1")
    db.create_file("zf64k", 64 * K, "auto")
    db.create_file("zf4k", 4 * K, "ZBlk1")
    db.create_file("zfempty", 2 * MiB, "ZBlk0")
    db.write_block("zf0", 0, src.data(2 * MiB, "zf0 0"))
    db.write_block("zf0", 1, src.data(300 * K, "zf0 1"))
    db.write_block("zf0", 3, src.data(2 * MiB, "zf0 3"))             # blk 2: hole
    db.write_block("zf1", 0, src.data(2 * MiB, "zf1 0"))
    blk2 = bytearray(src.data(100 * K, "zf1 2"))
    blk2[16 * K:24 * K] = bytes(8 * K)                                # chunks omitted
    db.write_block("zf1", 2, bytes(blk2))                             # blk 1: hole
    for blk in range(20):
        if blk not in (5, 6, 11):
            db.write_block("zf64k", blk, src.data(64 * K - 37 * blk, "zf64k %d" % blk))
    for blk in range(150):                                            # > 60: buckets
        if blk % 7 != 3:
            db.write_block("zf4k", blk, src.data(rng.randrange(1, 4 * K + 1), "zf4k %d" % blk),
                           fmt=rng.choice(("ZBlk0", "ZBlk1")))
    db.set_object("meta", {"dataset": "demo", "seed": seed})
    db.commit("demo T1: create zf0 zf1 zf64k zf4k zfempty", progress=progress)

    db.write_block("zf0", 1, src.data(2 * MiB - 3, "zf0 1"))
    db.write("zf1", 4096 * 5 + 100, b"one chunk patched")
    db.commit("demo T2: zf0 blk1 rewritten; zf1 blk0 one chunk patched", progress=progress)

    db.write_block("zf64k", 5, src.data(1000, "zf64k 5"))
    db.write("zf64k", 20 * 64 * K, b"appended")
    db.set_format("zf64k", 1, "ZBlk1")
    db.commit("demo T3: zf64k hole 5 filled, blk1 to ZBlk1, append blk20", progress=progress)

    db.set_object("meta", {"dataset": "demo", "seed": seed, "note": "no file change"})
    db.commit("demo T4: meta only", progress=progress)

    db.punch_hole("zf4k", 10, 20)
    db.zero_block("zf4k", 3)
    db.zero_block("zf0", 3)
    db.set_format("zf1", 2, "ZBlk0")
    db.truncate("zf64k", 16)
    db.commit("demo T5: zf4k holes 10-19, blocks zeroed, zf1 blk2 to ZBlk0, zf64k truncated",
              progress=progress)


def gen_files(db, *, files, size, blksize, fmt, history, holes, seed, progress=None):
    """files ZBigFiles of size bytes each, then history random changes."""
    src = BlockSource(seed)
    rng = random.Random(seed ^ 0x5eed)
    names = ["zf%d" % i for i in range(files)]
    nblk = -(-size // blksize)

    def pick_fmt():
        return rng.choice(("ZBlk0", "ZBlk1")) if fmt == "mixed" else None

    for name in names:
        db.create_file(name, blksize, "ZBlk0" if fmt == "mixed" else fmt)
        for blk in range(nblk):
            if holes and rng.random() < holes and blk != nblk - 1:
                continue
            n = min(blksize, size - blk * blksize)
            db.write_block(name, blk, src.data(n, "%s %d" % (name, blk)), fmt=pick_fmt())
        db.commit("create %s: %d bytes, blksize %d, %s" % (name, size, blksize, fmt),
                  progress=progress)

    ops = ["rewrite", "patch", "append", "zero", "hole"]
    if fmt == "mixed":
        ops.append("format")
    for h in range(history):
        name = rng.choice(names)
        info = db.file_info(name)
        blocks = sorted(int(b) for b in info["blocks"])
        last = blocks[-1] if blocks else -1
        op = rng.choice(ops) if blocks else "append"
        blk = rng.choice(blocks) if blocks else 0
        if op == "rewrite":
            db.write_block(name, blk, src.data(blksize, "%s %d" % (name, blk)), fmt=pick_fmt())
            what = "blk %d rewritten" % blk
        elif op == "patch":
            off = blk * blksize + rng.randrange(blksize)
            n = min(rng.randrange(1, 200), (blk + 1) * blksize - off)
            db.write(name, off, src.data(n, "p"), fmt=pick_fmt())
            what = "%d bytes patched at %d" % (n, off)
        elif op == "append":
            db.write_block(name, last + 1, src.data(rng.randrange(1, blksize + 1), name),
                           fmt=pick_fmt())
            what = "blk %d appended" % (last + 1)
        elif op == "zero":
            db.zero_block(name, blk)
            what = "blk %d zeroed" % blk
        elif op == "hole":
            db.delete_block(name, blk)
            what = "blk %d deleted (hole)" % blk
        else:
            new = "ZBlk1" if info["blocks"][str(blk)]["fmt"] == "ZBlk0" else "ZBlk0"
            db.set_format(name, blk, new)
            what = "blk %d to %s" % (blk, new)
        db.commit("history %d: %s: %s" % (h + 1, name, what))
        if progress:
            progress(name, h + 1, history)


def manifest_path(out):
    base, ext = os.path.splitext(out)
    return (base if ext == ".fs" else out) + ".json"


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m ztestdb gen",
        description="Create a demo or benchmark ZODB database of ZBigFiles with genuine "
                    "ZODB (wendelin.core's persistent layout) and its manifest OUT.json. "
                    "Without shape options: the small demo dataset.")
    p.add_argument("out", metavar="OUT.fs", help="FileStorage to create")
    p.add_argument("--files", type=int, help="number of ZBigFiles (default 1)")
    p.add_argument("--size", type=parse_size, help="size of every file (default 64M)")
    p.add_argument("--blksize", type=parse_size, help="block size (default 2M)")
    p.add_argument("--fmt", choices=FMT_CHOICES,
                   help="block format; mixed = ZBlk0/ZBlk1 at random (default ZBlk0)")
    p.add_argument("--history", type=int, help="history transactions after creation (default 0)")
    p.add_argument("--holes", type=float, help="fraction of blocks left as holes (default 0)")
    p.add_argument("--big", type=parse_size, default=0, metavar="SIZE",
                   help="demo dataset: add zfbig, SIZE bytes (rounded up to 2 MiB blocks)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data (default 0)")
    p.add_argument("--progress", action="store_true", default=None,
                   help="show progress on stderr even when it is not a terminal")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--no-manifest", action="store_true", help="do not write OUT.json")
    p.add_argument("--force", action="store_true", help="replace OUT.fs if it exists")
    a = p.parse_args(argv)

    for opt, lo in (("files", 1), ("size", 0), ("blksize", 1), ("history", 0)):
        v = getattr(a, opt)
        if v is not None and v < lo:
            p.error("--%s must be >= %d" % (opt, lo))
    if a.holes is not None and not 0 <= a.holes < 1:
        p.error("--holes must be in [0, 1)")
    demo = all(getattr(a, o) is None for o in SHAPE_OPTIONS)
    if a.big and not demo:
        p.error("--big adds a file to the demo dataset: it goes with no shape option")

    out = os.path.abspath(a.out)
    if os.path.exists(out):
        if not a.force:
            p.error("%s exists (use --force to replace it)" % out)
        for ext in ("", ".index", ".lock", ".tmp"):
            if os.path.exists(out + ext):
                os.unlink(out + ext)
    os.makedirs(os.path.dirname(out), exist_ok=True)

    progress = Progress(a.progress if a.progress is not None else sys.stderr.isatty())
    t0 = time.monotonic()
    with Database.create(out, dataset="demo" if demo else "gen") as db:
        if demo:
            gen_demo(db, a.seed, progress=progress, big=a.big)
        else:
            gen_files(db, files=a.files or 1,
                      size=a.size if a.size is not None else 64 * MiB,
                      blksize=a.blksize or 2 * MiB, fmt=a.fmt or "ZBlk0",
                      history=a.history or 0, holes=a.holes or 0.0, seed=a.seed,
                      progress=progress)
        progress.done()
        t1 = time.monotonic()
        if not a.no_manifest:
            db.write_manifest(manifest_path(out))
        ntxn = len(db.manifest()["transactions"])
        nfiles = len(db.files())
    t2 = time.monotonic()
    msg = "%s: %d files, %d transactions, %.1f MiB in %.1fs" % (
        out, nfiles, ntxn, os.path.getsize(out) / MiB, t1 - t0)
    if not a.no_manifest:
        msg += "; manifest %s (%.1fs)" % (manifest_path(out), t2 - t1)
    print(msg, file=sys.stderr)
    return 0
