"""ZBigFile and its block objects with wendelin.core's persistent layout.

This is test/demo tooling of the WCFS project, not wendelin.core: the classes below
reproduce exactly what wendelin.core stores in ZODB (class paths
``wendelin.bigfile.file_zodb.*`` and the same ``__getstate__``/``__setstate__``
layout), so that databases written with them are what real users write. The pickles
are byte-identical to wendelin.core's (checked against a database written by
wendelin.core in ``tests/test_ztestdb.py``). There is no virtual memory manager:
blocks are read and written as bytes.

Persistent layout (WCFS spec section 4.1)::

    ZBigFile    (blksize, blktab)       blktab: LOBTree  blk -> ZBlk0 | ZBlk1
    ZBlk0       bytes                   block data, trailing zeros stripped
    ZBlk        legacy name of ZBlk0    (early wendelin.core versions)
    ZBlk1       IOBTree                 byte offset -> ZData
    ZData       bytes                   one chunk, trailing zeros stripped

Writer side (spec 4.3): ZBlk1 writes ``CHUNKSIZE`` (4096) byte chunks at offsets that
are multiples of 4096, omits all-zero chunks and clears a chunk table that is not on
that grid; ZBlk0 stores the data with trailing zeros stripped; whenever a block's data
changes the ZBlk object itself is marked changed (also when only ZData of a ZBlk1
changed: WCFS tracks ZBlk oids, not ZData oids); changing the format of a block
replaces its blktab entry with a new object. The ``auto`` format is wendelin.core's
heuristic (see :meth:`ZBigFile._zblk_fmt_heuristic`).

The default write format comes from ``$WENDELIN_CORE_ZBLK_FMT`` (``ZBlk0``, ``ZBlk1``
or ``auto``) like in wendelin.core; :meth:`ZBigFile.storeblk` also takes it
explicitly.

Deliberate differences from wendelin.core, none visible in the database:

* ``ZBlk`` is a subclass of ``ZBlk0`` instead of an alias, so that tests can write
  records under the legacy class name. It reads and behaves exactly as ZBlk0.
* ``ZBlk1.setblkdata`` reports a change when it had to clear an off-grid chunk
  table, even if the new data is all zeros (so that the writer contract holds).
* :meth:`ZBigFile.storeblk` returns whether anything changed.
"""

import os

from BTrees.IOBTree import IOBTree
from BTrees.LOBTree import LOBTree
from persistent import Persistent

__all__ = [
    "ZBigFile", "ZBlk0", "ZBlk", "ZBlk1", "ZData", "LivePersistent",
    "ZBlk_fmt_registry", "ZBlk_fmt_write", "zblk_fmt", "InvalidBlockData",
]


class InvalidBlockData(ValueError):
    """Block data in the database cannot be assembled (corrupt ZBlk1, too long)."""


def _oidhex(obj):
    oid = getattr(obj, "_p_oid", None)
    return oid.hex() if oid is not None else "(new)"


class LivePersistent(Persistent):
    """Persistent object that is never ghostified except by invalidation.

    Like wendelin.lib.zodb.LivePersistent: cache garbage collection leaves it
    alone; invalidation by another transaction still turns it into a ghost.
    """

    __slots__ = ()

    def _p_deactivate(self):
        pass


class ZBlkBase(Persistent):
    """Data of one file block as stored in ZODB (base of ZBlk0 and ZBlk1)."""

    __slots__ = ()

    def loadblkdata(self):
        """Return the block data as stored (bytes, at most blksize long)."""
        raise NotImplementedError

    def setblkdata(self, buf):
        """Set new block data; return whether the stored data changed."""
        raise NotImplementedError


class ZBlk0(ZBlkBase):
    """Block format 0: the whole block as one bytes object (trailing zeros stripped)."""

    __slots__ = ("_v_blkdata",)

    def __init__(self):
        self._v_blkdata = None

    def loadblkdata(self):
        self._p_activate()
        data = self._v_blkdata
        if self._p_jar is None or self._p_changed:
            # new, or set in this transaction: the data is pending here
            return b"" if data is None else bytes(data)
        if data is None:
            # already handed out (see below) or to the database at commit
            # (see __getstate__): reload it from the database
            Persistent._p_invalidate(self)
            self._p_activate()
            data = self._v_blkdata
        # like wendelin.core: the data was an intermediate copy on its way from
        # the database; do not keep it in the live cache
        self._v_blkdata = None
        return b"" if data is None else bytes(data)

    def setblkdata(self, buf):
        if not isinstance(buf, bytes):
            buf = memoryview(buf).cast("B").tobytes()
        self._v_blkdata = buf.rstrip(b"\0")
        # ZBlk0 keeps no old data to compare with: always a change
        return True

    def __getstate__(self):
        data = self._v_blkdata
        if data is None:
            raise RuntimeError(
                "ZBlk0 %s: state requested but no block data is set" % _oidhex(self))
        # like wendelin.core: the data was only an intermediate copy on its way to
        # the database; do not keep it in memory once pickled.
        self._v_blkdata = None
        return data

    def __setstate__(self, state):
        self._v_blkdata = state


class ZBlk(ZBlk0):
    """Legacy class name of ZBlk0 (early wendelin.core versions wrote it).

    In wendelin.core ``ZBlk`` is an alias of ZBlk0. Here it is a subclass so that
    records can be written under the legacy name; it behaves exactly as ZBlk0.
    """

    __slots__ = ()


class ZData(Persistent):
    """One chunk of a ZBlk1 block: bytes with trailing zeros stripped."""

    __slots__ = ("data",)

    def __init__(self, data=b""):
        self.data = data

    def __getstate__(self):
        data = self.data
        # like wendelin.core: free the chunk once the database has its data
        self._p_invalidate()
        return data

    def __setstate__(self, state):
        self.data = state


class ZBlk1(ZBlkBase):
    """Block format 1: ``chunktab``, an IOBTree of byte offset -> ZData.

    Written chunks are CHUNKSIZE bytes at offsets multiple of CHUNKSIZE; all-zero
    chunks are not stored. The reader does not assume any chunk size.
    """

    __slots__ = ("chunktab",)

    CHUNKSIZE = 4096

    def __init__(self):
        self.chunktab = IOBTree()

    def loadblkdata(self):
        """Assemble the block from its chunks (spec 4.2); empty table -> b''."""
        chunktab = self.chunktab
        if not chunktab:
            return b""
        chunks = list(chunktab.items())
        tail_start, tail = chunks[-1]
        tail_data = tail.data
        if tail_start < 0:
            raise InvalidBlockData("ZBlk1 %s: negative chunk offset %d"
                                   % (_oidhex(self), tail_start))
        blkdata = bytearray(tail_start + len(tail_data))
        blkdata[tail_start:] = tail_data
        stop = 0
        for start, chunk in chunks[:-1]:
            data = chunk.data
            if start < 0:
                raise InvalidBlockData("ZBlk1 %s: negative chunk offset %d"
                                       % (_oidhex(self), start))
            if start < stop or start + len(data) > tail_start:
                raise InvalidBlockData("ZBlk1 %s: chunk at offset %d overlaps its neighbour"
                                       % (_oidhex(self), start))
            stop = start + len(data)
            blkdata[start:stop] = data
        return bytes(blkdata)

    def setblkdata(self, buf):
        buf = memoryview(buf).cast("B")
        chunktab = self.chunktab
        size = self.CHUNKSIZE
        changed = False

        # only one chunk size at a time: clear a table written on another grid
        for start, chunk in chunktab.items():
            if start % size or len(chunk.data) > size:
                chunktab.clear()
                changed = True
                break

        for start in range(0, len(buf), size):
            data = buf[start:start + size].tobytes().rstrip(b"\0")
            chunk = chunktab.get(start)
            if not data:
                if chunk is not None:
                    del chunktab[start]
                    changed = True
            else:
                if chunk is None:
                    chunk = chunktab[start] = ZData(b"")
                if chunk.data != data:
                    chunk.data = data
                    changed = True
        return changed

    def __getstate__(self):
        return self.chunktab

    def __setstate__(self, state):
        self.chunktab = state


# format name -> class; "auto" selects ZBlk0 or ZBlk1 per block (heuristic)
_ZBlk_auto = object()
ZBlk_fmt_registry = {
    "ZBlk0": ZBlk0,
    "ZBlk1": ZBlk1,
    "auto": _ZBlk_auto,
    "ZBlk": ZBlk,   # legacy class name, written only when asked for explicitly
}


def _default_fmt_write():
    virtmem = os.environ.get("WENDELIN_CORE_VIRTMEM", "rw:uvmm").lower()
    modes = {"r:wcfs+w:uvmm": "auto", "rw:uvmm": "ZBlk0"}
    if virtmem not in modes:
        raise KeyError("$WENDELIN_CORE_VIRTMEM=%r: want one of %s" % (virtmem, sorted(modes)))
    fmt = os.environ.get("WENDELIN_CORE_ZBLK_FMT", modes[virtmem])
    if fmt not in ("ZBlk0", "ZBlk1", "auto"):
        raise RuntimeError("E: Unknown ZBlk format %r ($WENDELIN_CORE_ZBLK_FMT)" % fmt)
    return fmt


# default format for written blocks
ZBlk_fmt_write = _default_fmt_write()


def zblk_fmt(zblk):
    """Format name of a ZBlk object as reported in manifests: 'ZBlk0' or 'ZBlk1'."""
    if isinstance(zblk, ZBlk0):
        return "ZBlk0"
    if isinstance(zblk, ZBlk1):
        return "ZBlk1"
    raise TypeError("not a ZBlk: %s.%s" % (type(zblk).__module__, type(zblk).__qualname__))


def _zblk_class(fmt):
    try:
        return ZBlk_fmt_registry[fmt]
    except KeyError:
        raise ValueError("unknown ZBlk format %r: want one of %s"
                         % (fmt, ", ".join(ZBlk_fmt_registry))) from None


def _ndelta(old, new):
    """Number of differing bytes over the common length + the length difference."""
    n = min(len(old), len(new))
    extra = abs(len(old) - len(new))
    if n == 0:
        return extra
    a = int.from_bytes(old[:n], "little")
    b = int.from_bytes(new[:n], "little")
    return n - (a ^ b).to_bytes(n, "little").count(0) + extra


class ZBigFile(LivePersistent):
    """A big file stored in ZODB as blocks: state ``(blksize, blktab)``."""

    def __init__(self, blksize):
        LivePersistent.__init__(self)
        if not isinstance(blksize, int) or isinstance(blksize, bool) or blksize <= 0:
            raise ValueError("ZBigFile: blksize must be a positive int, not %r" % (blksize,))
        self.__setstate__((blksize, LOBTree()))

    def __getstate__(self):
        return (self.blksize, self.blktab)

    def __setstate__(self, state):
        self.blksize, self.blktab = state

    # ---- reading ----

    def size(self):
        """File size as WCFS serves it: (max key + 1) * blksize, 0 when empty."""
        if not self.blktab:
            return 0
        return (self.blktab.maxKey() + 1) * self.blksize

    def loadblkdata(self, blk):
        """Stored data of block blk (not padded); b'' for a hole."""
        zblk = self.blktab.get(blk)
        if zblk is None:
            return b""
        data = zblk.loadblkdata()
        if len(data) > self.blksize:
            raise InvalidBlockData("ZBigFile %s: blk %d: %s %s has %d bytes > blksize %d"
                                   % (_oidhex(self), blk, type(zblk).__name__,
                                      _oidhex(zblk), len(data), self.blksize))
        return data

    def loadblk(self, blk):
        """Data of block blk padded with zeros to blksize (holes read as zeros)."""
        return self.loadblkdata(blk).ljust(self.blksize, b"\0")

    # ---- writing ----

    def storeblk(self, blk, buf, fmt=None):
        """Store buf (at most blksize bytes, zero-padded) as block blk.

        fmt is 'ZBlk0', 'ZBlk1', 'auto' or 'ZBlk' (legacy name); None means the
        module default ZBlk_fmt_write. Returns whether the database state changed.
        """
        if not isinstance(buf, bytes):
            buf = memoryview(buf).cast("B").tobytes()
        if len(buf) > self.blksize:
            raise ValueError("ZBigFile %s: blk %d: %d bytes > blksize %d"
                             % (_oidhex(self), blk, len(buf), self.blksize))
        zblk = self.blktab.get(blk)
        cls = _zblk_class(fmt or ZBlk_fmt_write)
        if cls is _ZBlk_auto:
            cls = self._zblk_fmt_heuristic(zblk, blk, buf)
        return self._setzblk(blk, zblk, buf, cls)

    def _setzblk(self, blk, zblk, buf, cls):
        created = False
        same = type(zblk) is cls or (cls is ZBlk0 and type(zblk) is ZBlk)
        if zblk is None or not same:
            # absent or of another format: a new object replaces the entry
            zblk = self.blktab[blk] = cls()
            created = True
        if isinstance(zblk, ZBlk1) and len(buf) < self.blksize:
            # ZBlk1 scans the whole block to drop chunks that became zero
            full = bytearray(self.blksize)
            full[:len(buf)] = buf
            buf = full
        changed = zblk.setblkdata(buf)
        if changed:
            # writer contract: the ZBlk itself is committed whenever its data
            # changed, also for ZBlk1 when only ZData changed.
            zblk._p_changed = True
        return changed or created

    def _zblk_fmt_heuristic(self, zblk, blk, buf):
        """wendelin.core's 'auto' format choice for writing buf to block blk."""
        new = buf.rstrip(b"\0")
        if zblk is None:
            old = b""
        else:
            if zblk._p_changed:
                raise RuntimeError("ZBigFile %s: blk %d stored twice in one transaction "
                                   "with format 'auto'" % (_oidhex(self), blk))
            old = zblk.loadblkdata().rstrip(b"\0")
        ndelta = _ndelta(old, new)
        last = self.blktab.maxKey() if self.blktab else -1

        append_oldblk = blk == last and new[:len(old)] == old
        append_newblk = blk == last + 1 and len(old) == 0
        small = ndelta < 0.5 * self.blksize
        filled = len(new) == self.blksize

        if append_oldblk or append_newblk:
            if append_newblk:
                # the previous block, filled up in this same transaction, migrates
                # to ZBlk0 for fast reads
                prev = self.blktab.get(blk - 1)
                if prev is not None and prev._p_changed and not isinstance(prev, ZBlk0):
                    self._setzblk(blk - 1, prev, prev.loadblkdata(), ZBlk0)
            return ZBlk1 if (small and not filled) else ZBlk0
        return ZBlk1 if small else ZBlk0
