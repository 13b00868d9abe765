# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""The client of wendelin.wcfs: isolated, zero-copy memory views of ZBigFiles.

    conn = wc.connect(at)           # WCFS.connect: a view as of at (8-byte tid)
    fh   = conn.open(foid)          # a ZBigFile (8-byte oid) in that view
    m    = fh.mmap(blk_start, blk_len)
    a    = numpy.frombuffer(m.mem, dtype=...)   # no copy
    conn.resync(at2)                # move the view forward

The logic is in Go (gocore/client): pins from the server are applied by a
goroutine that never needs the GIL, so Python threads may hold it while they
touch mapped memory. ``Mapping.mem`` is a read-only memoryview over the mapped
memory, valid until ``unmap()``; buffers made from it (numpy arrays, slices)
keep the mapping and its file open while they live. After ``FileH.close()``,
``Conn.close()`` or ``unmap()`` the memory faults on access (SIGSEGV) rather
than showing data that is no longer isolated.

Objects closed by garbage collection: a Conn (close), a FileH (one close of
its open), the memory of a Mapping once neither it nor a buffer over it is
referenced.

After ``os.fork()`` the child sends nothing to the server: its mappings fault,
the client's descriptors are closed, and close()/garbage collection of
inherited objects do nothing; other calls fail with "connection closed" /
"file already closed". The parent is unaffected.
"""

import ctypes
import json
import os
import sys as _sys
import weakref

from . import _call, _ctxcall, _gopy, log

_pkgname = __name__.rpartition(".")[0]

__all__ = ["Conn", "FileH", "Mapping", "WatchLink", "PinReq"]


def _pkg():
    return _sys.modules[_pkgname]


def _forked():
    return _pkg()._forked


def _hex(x, what):
    """_hex returns oid/tid x (8 bytes, as ZODB's p64, or int) as 16 hex digits."""
    if isinstance(x, (bytes, bytearray)):
        if len(x) != 8:
            raise ValueError("wcfs: %s: want 8 bytes, got %d" % (what, len(x)))
        return bytes(x).hex()
    if isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 64:
        return "%016x" % x
    raise TypeError("wcfs: %s: want 8 bytes (p64) or int, got %r" % (what, x))


def _p64(h):
    """_p64 returns 16 hex digits as 8 bytes."""
    return bytes.fromhex(h)


def _in_child(what, msg):
    raise _pkg().WCFSError("wcfs: %s: %s (in pid %d, forked from the process that made it)"
                           % (what, msg, os.getpid()))


# libc, for munmap without Go (forked child)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_libc.munmap.restype = ctypes.c_int
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
_libc.mmap.restype = ctypes.c_void_p
_PROT_NONE = 0
_MAP_PRIVATE, _MAP_FIXED, _MAP_ANONYMOUS, _MAP_NORESERVE = 0x02, 0x10, 0x20, 0x4000


# ---- Conn ----

def connect(wc, at):  # -> Conn
    """connect returns a Conn of wc viewing the database as of at."""
    if _forked():
        _in_child("connect", "cannot connect")
    gowc = wc._gowc
    if gowc is None:
        raise _pkg().WCFSError("wcfs %s: connect: not joined" % wc.mountpoint)
    return Conn(wc, _call(gowc.Connect, _hex(at, "connect: at")))


class _Closable:
    """_Closable is a wrapper of a Go object that is closed once: by close(),
    or when it is garbage-collected; never in a forked child."""

    def _set_closer(self, what, goclose):
        self._closed = False
        self._goclose = goclose
        self._fin = weakref.finalize(self, _gc_close, what, goclose)

    def close(self):
        if self._closed:
            return
        self._closed = True
        self._fin.detach()
        if _forked():
            return
        _call(self._goclose)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _gc_close(what, goclose):
    if not _forked():
        try:
            _call(goclose)
        except Exception as e:  # noqa: BLE001 (garbage collection must not raise)
            log.warning("wcfs: close of a garbage-collected %s: %s", what, e)


_conns = weakref.WeakSet()  # live Conns, for fork


class Conn(_Closable):
    """Conn is a view of the database as of one revision, shared by the files it
    opens (it mirrors a ZODB Connection). Thread-safe."""

    def __init__(self, wc, goconn):
        self.wc = wc
        self._goconn = goconn
        self._set_closer("Conn", goconn.Close)
        _conns.add(self)

    def __repr__(self):
        return "<wcfs.Conn %s @%s%s>" % (self.wc.mountpoint, self._goconn.At(),
                                         " (closed)" if self._closed else "")

    def at(self):
        """at returns the revision the Conn views, as 8 bytes."""
        return _p64(self._goconn.At())

    def open(self, foid):  # -> FileH
        """open opens the ZBigFile foid (8 bytes or int) as of the Conn's at.
        Each open is closed by its FileH's close()."""
        if _forked():
            _in_child("open", "connection closed")
        return FileH(self, _call(self._goconn.Open, _hex(foid, "open: foid")))

    def resync(self, at):
        """resync moves the Conn to at (not before its at: that is an error, and
        every error closes the Conn)."""
        if _forked():
            _in_child("resync", "connection closed")
        _call(self._goconn.Resync, _hex(at, "resync: at"))

    def close(self):
        """close closes the Conn: its files are closed, their mappings fault.
        Idempotent."""
        _conns.discard(self)
        super().close()


# ---- FileH ----

class FileH(_Closable):
    """FileH is one open of a ZBigFile in a Conn.

    .blksize    block size of the file
    .pinned     {blk: rev (8 bytes)} of the pins applied now (for tests)
    """

    def __init__(self, conn, gofileh):
        self.conn = conn
        self._gofileh = gofileh
        self.blksize = gofileh.BlkSize()
        self._set_closer("FileH", gofileh.Close)

    def __repr__(self):
        return "<wcfs.FileH f%s%s>" % (self._gofileh.Foid(), " (closed)" if self._closed else "")

    @property
    def pinned(self):
        if _forked():
            return {}
        return {int(blk): _p64(rev) for blk, rev in json.loads(self._gofileh.Pinned()).items()}

    def mmap(self, blk_start, blk_len):  # -> Mapping
        """mmap maps blocks [blk_start, blk_start+blk_len) of the file,
        read-only, as of the Conn's at."""
        if _forked():
            _in_child("mmap", "file already closed")
        if blk_start < 0 or blk_len < 0:
            raise ValueError("wcfs: mmap: negative block range [%d +%d)" % (blk_start, blk_len))
        return Mapping(self, _call(self._gofileh.Mmap, blk_start, blk_len))

    def close(self):
        """close closes this open of the file; the last close of a file makes
        its mappings fault. Closing twice does nothing."""
        super().close()


# ---- Mapping ----

_mappings = {}  # id -> (addr, len) of every mapped address range, for fork


class Mapping:
    """Mapping is a read-only memory mapping of blocks [blk_start, blk_stop)
    of a FileH.

    .mem    read-only memoryview of the memory (no copy), valid until unmap()
    """

    def __init__(self, fileh, gomapping):
        self.fileh = fileh
        self._gom = gomapping
        self.blk_start = gomapping.BlkStart()
        self.blk_stop = gomapping.BlkStop()
        addr, n = gomapping.Addr(), gomapping.Len()
        self._addr, self._len = addr, n
        # the buffer object: buffers made from .mem keep it, and it keeps
        # the FileH (so its file stays open); the memory is released when
        # it goes
        arr = (ctypes.c_ubyte * n).from_address(addr)
        arr._wcfs_fileh = fileh
        key = id(arr)
        _mappings[key] = (addr, n)
        weakref.finalize(arr, _mapping_release, gomapping, key, addr, n)
        self._arr = arr
        self.mem = memoryview(arr).cast("B").toreadonly()

    def __repr__(self):
        return "<wcfs.Mapping [%d, %d) @0x%x>" % (self.blk_start, self.blk_stop, self._addr)

    def unmap(self):
        """unmap unmaps the memory: accessing it afterwards (through buffers
        made from .mem) faults. Idempotent."""
        if self._arr is None:
            return
        if not _forked():
            _call(self._gom.Unmap)
        mem, self.mem = self.mem, None
        try:
            mem.release()
        except BufferError:
            pass  # buffers over it remain; they fault
        self._arr = None  # the range is released with the last buffer


def _mapping_release(gomapping, key, addr, n):
    _mappings.pop(key, None)
    if _forked():
        _libc.munmap(addr, n)  # the child's PROT_NONE reservation
        return
    try:
        _call(gomapping.Release)
    except Exception as e:  # noqa: BLE001
        log.warning("wcfs: release of a mapping: %s", e)


# ---- WatchLink ----

def _bytes(text):
    """_bytes returns a protocol message from Go as the reference's client
    does: pygolang's bstr when pygolang is installed (bytes that also compare
    equal to the same str), else bytes."""
    b = _pkg()._golang_b
    return b(text) if b is not None else text.encode("utf-8")


def _text(x, what):
    """_text returns a protocol message (bytes or str) as str for Go."""
    if isinstance(x, (bytes, bytearray)):
        try:
            return bytes(x).decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError("wcfs: %s: not UTF-8: %s" % (what, e)) from None
    if isinstance(x, str):
        return x
    raise TypeError("wcfs: %s: want bytes or str, not %s" % (what, type(x).__name__))


class PinReq:
    """PinReq is a request of the server on a watch link (a pin).

    .foid   8 bytes;  .blk  int;  .at  8 bytes, or None for "@head";
    .msg    the request as received (bytes; pygolang's bstr with pygolang, as
            the reference's)
    """

    def __init__(self, goreq):
        self._goreq = goreq
        self.foid = _p64(goreq.Foid())
        self.blk = goreq.Blk()
        at = goreq.At()
        self.at = _p64(at) if at else None
        self.msg = _bytes(goreq.Msg())

    def __repr__(self):
        return "<wcfs.PinReq %r>" % self.msg


_links = weakref.WeakSet()  # live WatchLinks, for fork


class WatchLink(_Closable):
    """WatchLink is a raw watch link to the server (head/watch), for low-level
    use and tests, with the reference's interface: messages are bytes (str is
    accepted too; replies are pygolang's bstr with pygolang, as the
    reference's), ctx arguments are contexts (pygolang's: deadline and
    cancellation), None (no deadline) or seconds; errors are WCFSError (a
    golang.error too with pygolang; after the context was done it wraps the
    context's error). In a forked child its calls fail with "connection
    closed"."""

    def __init__(self, wc):
        if _forked():
            _in_child("WatchLink", "cannot open a watch link")
        self.wc = wc
        self._gowl = _call(wc._gowc.OpenWatchLink)
        self._fd = self._gowl.Fd()
        self._set_closer("WatchLink", self._gowl.Close)
        _links.add(self)

    def _check(self, what):
        if _forked():
            _in_child(what, "connection closed")

    def __repr__(self):
        return "<wcfs.WatchLink %s fd%d>" % (self.wc.mountpoint, self._fd)

    def sendReq(self, ctx, req):  # -> reply (bytes)
        """sendReq sends req (e.g. b"watch <foid> @<at>") and returns the reply."""
        self._check("sendReq")
        return _bytes(_ctxcall(ctx, self._gowl.SendReq, _text(req, "sendReq")))

    def recvReq(self, ctx):  # -> PinReq | None
        """recvReq returns the next request of the server, None once the server
        closed the link."""
        self._check("recvReq")
        goreq = _ctxcall(ctx, self._gowl.RecvReq)
        if goreq.EOF():
            return None
        return PinReq(goreq)

    def replyReq(self, ctx, req, reply):
        """replyReq sends reply (e.g. b"ack") to the server's request req."""
        self._check("replyReq")
        _ctxcall(ctx, self._gowl.ReplyReq, req._goreq, _text(reply, "replyReq"))

    def closeWrite(self):
        """closeWrite tells the server "bye"."""
        self._check("closeWrite")
        _call(self._gowl.CloseWrite)

    def close(self):
        """close says "bye" and closes the link. Idempotent."""
        _links.discard(self)
        super().close()

    @property
    def fatalv(self):
        """fatalv lists the notices the server sent on stream 0 (bytes)."""
        self._check("fatalv")
        return [m.encode("utf-8") for m in json.loads(_call(self._gowl.Fatalv))]


# ---- fork ----

_fork_fds = []  # taken before fork, closed in the child


def _before_fork():
    global _fork_fds
    _fork_fds = []
    if _forked() or not (_conns or _links or _mappings):
        return
    try:
        _fork_fds = json.loads(_gopy.ClientFds())
    except Exception:  # noqa: BLE001 (never fail a fork)
        _fork_fds = []


def _after_fork_in_child():
    """In the child: close the client's descriptors (the server must not see
    the child as a client), and reserve the ranges of mappings with PROT_NONE
    (not inherited: MADV_DONTFORK) so that they fault and are not reused."""
    for fd in _fork_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    for addr, n in list(_mappings.values()):
        _libc.mmap(addr, n, _PROT_NONE, _MAP_PRIVATE | _MAP_FIXED | _MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
    for c in list(_conns) + list(_links):
        c._closed = True


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
