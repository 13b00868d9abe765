# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""The client of wendelin.wcfs (Conn, FileH, Mapping, WatchLink): the
reference's client scenarios (spec 8.5) against a real server, over a
database written by genuine ZODB in this process.

Memory is read from Python, i.e. with the GIL held: a pin that such a read
triggers must be handled without the GIL (the pinner is Go)."""

import ctypes
import faulthandler
import gc
from errno import EFAULT, EINTR, EINVAL
import os
import signal
import threading
import time

import pytest

from wendelin import wcfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                                reason="needs root and /dev/fuse (mounts with mount(2))")

KiB, MiB = 1024, 1024 * 1024
# Blocks of 2 MiB, as in the reference's tests, where they check which blocks
# get pinned: a page fault also reads around it (the kernel's mmap
# read-around, 128 KiB here), and a read of a head/ block is what the server
# pins on. Small blocks would pin neighbours of what was read. Tests that
# check only data use small blocks.
BLKSIZE = 2 * MiB
PAGE = os.sysconf("SC_PAGE_SIZE")


def blkdata(s, blksize=BLKSIZE):
    """blkdata returns the content of a block written with s: s repeated
    ("" is a block of zeros)."""
    if not s:
        return b"\0" * blksize
    s = s.encode()
    return (s * (blksize // len(s) + 1))[:blksize]


class TDB:
    """TDB is a database with ZBigFiles "zf" and "zf2" (created at .at0, empty)
    written by genuine ZODB in this process, and a server started right after
    (so that the history of the server starts at at0, as the reference's
    tests expect)."""

    def __init__(self, tmp_path, leakcheck, blksize=BLKSIZE, optv=()):
        import ztestdb

        self.blksize = blksize
        self.db = ztestdb.Database.create(str(tmp_path / "data.fs"))
        self.zf = bytes.fromhex(self.db.create_file("zf", blksize=blksize, fmt="ZBlk0"))
        self.zf2 = bytes.fromhex(self.db.create_file("zf2", blksize=blksize, fmt="ZBlk0"))
        self.at0 = bytes.fromhex(self.db.commit("at0"))
        self.zurl = self.db.zurl
        leakcheck(self.zurl)
        self.srv = wcfs.start(self.zurl, *optv)
        self.wc = wcfs.join(self.zurl, autostart=False)
        self._closers = []

    @property
    def head(self):
        return bytes.fromhex(self.db.head)

    def commit(self, changes, name="zf"):
        """commit writes {blk: s} (blkdata) into file name, commits and waits
        until the server shows the commit; it returns the revision."""
        for blk, s in changes.items():
            self.db.write_block(name, blk, blkdata(s, self.blksize))
        at = self.db.commit()
        deadline = time.monotonic() + 60
        while self.wc._read("head/at").decode().strip() < at:
            assert time.monotonic() < deadline, "server did not reach @%s" % at
            time.sleep(0.005)
        return bytes.fromhex(at)

    def connect(self, at):
        """connect returns a Conn at at, closed at the end of the test."""
        conn = self.wc.connect(at)
        self.defer(conn.close)
        return conn

    def defer(self, close):
        self._closers.append(close)
        return close

    def close(self):
        for close in reversed(self._closers):
            close()
        self.wc.close()
        self.srv.stop()
        self.db.close()


@pytest.fixture
def tdb(tmp_path, wcfs_leakcheck):
    t = TDB(tmp_path, wcfs_leakcheck)
    try:
        yield t
    finally:
        t.close()


@pytest.fixture
def tdb64k(tmp_path, wcfs_leakcheck):
    t = TDB(tmp_path, wcfs_leakcheck, blksize=64 * KiB)
    try:
        yield t
    finally:
        t.close()


class _iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)  # its calls release the GIL
_libc.process_vm_readv.restype = ctypes.c_ssize_t
_libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_iovec), ctypes.c_ulong,
                                   ctypes.POINTER(_iovec), ctypes.c_ulong, ctypes.c_ulong]


def read_faults(addr, n):
    """read_faults returns, per page of memory [addr, addr+n), whether
    reading its first byte faults ('1') or not ('0'). The reads go through
    the kernel (process_vm_readv on this process, as the Go client's
    Mapping.ReadAt): a fault is EFAULT, not SIGSEGV; a page that needs a pin
    waits for it in the kernel, without the GIL."""
    buf = ctypes.create_string_buffer(1)
    local = _iovec(ctypes.cast(buf, ctypes.c_void_p), 1)
    res = []
    for off in range(0, n, PAGE):
        remote = _iovec(addr + off, 1)
        while True:
            got = _libc.process_vm_readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
            if got >= 0 or ctypes.get_errno() != EINTR:
                break
        if got < 0 and ctypes.get_errno() != EFAULT:
            raise OSError(ctypes.get_errno(), "process_vm_readv at %#x" % (addr + off))
        res.append("0" if got == 1 else "1")
    return "".join(res)


def faults(m):
    """faults returns, per page of mapping m, whether reading it faults
    ('1') or not ('0') (see read_faults)."""
    return read_faults(m._addr, m._len)


def blk(m, b):
    """blk returns the content of block b of mapping m (read with the GIL)."""
    bs = m.fileh.blksize
    off = (b - m.blk_start) * bs
    return bytes(m.mem[off:off + bs])


def assert_blk(m, b, s, pinned):
    """assert_blk checks that block b of m reads as blkdata(s), and that the
    pins of its file are then pinned ({blk: at})."""
    got = blk(m, b)
    want = blkdata(s, m.fileh.blksize)
    assert got == want, "#%d: got %r..., want %r..." % (b, got[:16], want[:16])
    assert m.fileh.pinned == pinned


# ---- spec 8.5: test_wcfs_client ----

def test_client(tdb):
    t = tdb
    at0 = t.at0
    at1 = t.commit({2: "c1", 3: "d1"})
    at2 = t.commit({2: "c2"})

    conn = t.connect(at1)
    assert conn.at() == at1
    fh = conn.open(t.zf)
    assert fh.blksize == BLKSIZE

    # a mapping with one block beyond the end of the file
    m1 = fh.mmap(2, 3)
    assert (m1.blk_start, m1.blk_stop) == (2, 5)
    assert len(m1.mem) == 3 * BLKSIZE and m1.mem.readonly
    assert fh.pinned == {}
    assert_blk(m1, 2, "c1", {2: at1})  # changed after at1: pinned on access
    assert_blk(m1, 3, "d1", {2: at1})
    assert_blk(m1, 4, "", {2: at1})

    # a commit growing the file: data as before; only what is read is pinned
    at3 = t.commit({3: "d3", 4: "e3"})
    assert_blk(m1, 2, "c1", {2: at1})
    assert_blk(m1, 3, "d1", {2: at1, 3: at1})
    assert_blk(m1, 4, "", {2: at1, 3: at1})

    # resync at1 -> at2: #2 unpinned, #3 stays, #4 inside the file now: to
    # its revision as of at2 (the server's start: zeros)
    conn.resync(at2)
    assert conn.at() == at2
    assert fh.pinned == {3: at1}
    assert_blk(m1, 2, "c2", {3: at1})
    assert_blk(m1, 3, "d1", {3: at1})
    assert_blk(m1, 4, "", {3: at1, 4: at0})

    # resync at2 -> at3: everything unpinned, #4 has data
    conn.resync(at3)
    assert fh.pinned == {}
    assert_blk(m1, 2, "c2", {})
    assert_blk(m1, 3, "d3", {})
    assert_blk(m1, 4, "e3", {})

    # a mapping entirely beyond the end of the file
    m2 = fh.mmap(5, 2)
    assert_blk(m2, 5, "", {})
    assert_blk(m2, 6, "", {})

    # the same file opened twice, closed once: every mapping keeps working
    fh2 = conn.open(t.zf)
    m3 = fh2.mmap(4, 3)
    assert_blk(m3, 4, "e3", {})
    fh2.close()
    for m in (m1, m2, m3):
        assert set(faults(m)) == {"0"}
    assert_blk(m1, 4, "e3", {})
    assert_blk(m2, 5, "", {})
    assert_blk(m3, 6, "", {})

    # resync backwards: error, the Conn is closed
    with pytest.raises(RuntimeError, match="going back in history is forbidden"):
        conn.resync(at1)
    with pytest.raises(RuntimeError, match=": connection closed"):
        conn.open(t.zf)
    for m in (m1, m2, m3):
        assert set(faults(m)) == {"1"}
        m.unmap()


# ---- spec 8.5: test_wcfs_client_down_efault ----

def test_client_down_efault(tdb):
    t = tdb
    at1 = t.commit({2: "c1", 3: "d1"})
    t.commit({1: "b2", 2: "c2"}, name="zf2")
    t.commit({2: "c2"})

    conn = t.connect(at1)
    fh1 = conn.open(t.zf)
    m11, m12 = fh1.mmap(1, 4), fh1.mmap(3, 3)
    fh2 = conn.open(t.zf2)
    m21, m22 = fh2.mmap(0, 4), fh2.mmap(2, 5)
    assert_blk(m11, 2, "c1", {2: at1})
    assert_blk(m12, 3, "d1", {2: at1})
    assert_blk(m21, 1, "", {1: t.at0})  # zf2 had no data as of at1
    assert_blk(m22, 2, "", {1: t.at0, 2: t.at0})

    # close of a FileH: its mappings fault on every page, others work
    fh1.close()
    for m in (m11, m12):
        assert set(faults(m)) == {"1"}
    for m in (m21, m22):
        assert set(faults(m)) == {"0"}
    assert_blk(m21, 1, "", {1: t.at0, 2: t.at0})

    # reopen: new mappings work, the old ones keep faulting
    fh1_ = conn.open(t.zf)
    m13 = fh1_.mmap(2, 3)
    assert_blk(m13, 2, "c1", {2: at1})
    assert_blk(m13, 3, "d1", {2: at1})
    for m in (m11, m12):
        assert set(faults(m)) == {"1"}

    # close of the Conn: every mapping faults, calls fail
    conn.close()
    for m in (m11, m12, m13, m21, m22):
        assert set(faults(m)) == {"1"}
    with pytest.raises(RuntimeError, match=": connection closed"):
        conn.open(t.zf)
    with pytest.raises(RuntimeError, match=": connection closed"):
        conn.resync(t.head)
    for fh in (fh1, fh1_, fh2):
        with pytest.raises(RuntimeError, match=": file already closed"):
            fh.mmap(0, 1)
    for m in (m11, m12, m13, m21, m22):
        m.unmap()
        m.unmap()  # idempotent


# ---- spec 8.5: test_wcfs_client_afterfork ----

def _child(f):
    """_child runs f in a forked child and returns its wait status: the exit
    code (f returned: 0; raised: 1), or -signal."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        faulthandler.disable()  # a fault is what some children check for
        code = 1
        try:
            f(w)
            code = 0
        except BaseException as e:  # noqa: BLE001
            os.write(w, ("%s: %s" % (type(e).__name__, e)).encode())
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as rf:
        msg = rf.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status), msg
    return os.WEXITSTATUS(status), msg


def _mount_fds(mnt):
    """_mount_fds lists the descriptors of this process open on the mount."""
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink("/proc/self/fd/" + fd).startswith(mnt + "/"):
                fds.append(fd)
        except OSError:
            pass
    return fds


def test_client_afterfork(tdb):
    t = tdb
    at1 = t.commit({0: "a1", 1: "b1"})
    conn = t.connect(at1)
    fh = conn.open(t.zf)
    m = fh.mmap(0, 2)
    assert_blk(m, 0, "a1", {})
    mnt = t.wc.mountpoint
    wl = wcfs.WatchLink(t.wc)  # a raw link too
    t.defer(wl.close)

    # in the child: every page of the mapping faults (the child dies by
    # SIGSEGV reading it)
    for b in (0, 1):
        status, msg = _child(lambda w: os.write(w, blk(m, b)[:4]))
        assert status == -signal.SIGSEGV, (status, msg)

    # in the child: nothing of the client is open on the mount; close and
    # garbage collection do nothing (and raise nothing); other calls fail
    def child(w):
        fds = _mount_fds(mnt)
        assert fds == [], "descriptors on the mount in the child: %s" % fds
        with pytest.raises(RuntimeError, match="connection closed"):
            conn.open(t.zf)
        with pytest.raises(RuntimeError, match="file already closed"):
            fh.mmap(0, 1)
        m.unmap()
        fh.close()
        conn.close()
        wl.close()
        gc.collect()
    status, msg = _child(child)
    assert status == 0, msg

    # the parent keeps working: pins after a new commit, resync unpins
    at2 = t.commit({0: "a2"})
    assert_blk(m, 0, "a1", {0: at1})
    conn.resync(at2)
    assert_blk(m, 0, "a2", {})
    assert_blk(m, 1, "b1", {})


def test_client_afterfork_watchlink(tdb):
    """A raw WatchLink alone (no Conn, no mapping) is closed in a forked
    child too; its calls fail there, the parent's link keeps working."""
    from wendelin.wcfs import _client

    t = tdb
    gc.collect()
    assert not _client._conns and not _client._mappings, "Conns or mappings of other tests live on"
    mnt = t.wc.mountpoint
    wl = wcfs.WatchLink(t.wc)
    t.defer(wl.close)
    bad = "watch zzz"  # any request: its reply shows the link works
    assert _mount_fds(mnt) != []  # this process: head/watch

    def child(w):
        fds = _mount_fds(mnt)
        assert fds == [], "descriptors on the mount in the child: %s" % fds
        with pytest.raises(RuntimeError, match="connection closed"):
            wl.sendReq(10, bad)
        wl.close()
        gc.collect()
    status, msg = _child(child)
    assert status == 0, msg
    assert wl.sendReq(10, bad).startswith(b"error bad watch")


# ---- threads ----

def test_client_threads(tdb64k):
    """Threads read one mapping (with the GIL: a read that needs a pin holds
    it until the Go pinner acknowledged the pin) while the main thread
    commits and resyncs: every block read is the data as of the Conn's at at
    that moment (between the at before the last resync begun before the read
    and the at of the first resync ended after it). The check is per page: a
    read that spans a resync may see pages of both revisions."""
    t = tdb64k
    bs = t.blksize
    nblk, nmap = 6, 8
    hist = []  # [(at, {blk: s})]
    cur = {b: "v0#%d" % b for b in range(nblk)}
    hist.append((t.commit(cur), dict(cur)))
    conn = t.connect(hist[0][0])
    fh = conn.open(t.zf)
    m = fh.mmap(0, nmap)
    window = [hist[0][0], hist[0][0]]  # [lo, hi]: at is lo, or moving lo -> hi
    stop = threading.Event()
    errors, nreads = [], [0]

    cache = {}

    def expect(at, b):
        want = ""
        for hat, tags in hist:
            if hat <= at:
                want = tags.get(b, "")
        if want not in cache:
            cache[want] = blkdata(want, bs)
        return cache[want]

    def reader(i):
        b = i
        while not stop.is_set() and not errors:
            b = (b * 7 + 3) % nmap
            lo = window[0]
            got = blk(m, b)
            hi = window[1]
            ats = [at for at, _ in list(hist) if lo <= at <= hi]
            for off in range(0, bs, PAGE):
                page = got[off:off + PAGE]
                if not any(page == expect(at, b)[off:off + PAGE] for at in ats):
                    errors.append("#%d page %d: %r... is no data as of [%s, %s]"
                                  % (b, off // PAGE, page[:8], lo.hex(), hi.hex()))
                    break
            nreads[0] += 1
            time.sleep(0.001)  # let the main thread (commits: Python) have the GIL

    maxpinned = 0
    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    try:
        for i in range(1, 10):
            changes = {b: "v%d#%d" % (i, b) for b in ((i * 5) % (nblk + i // 3), (i * 3 + 1) % nblk)}
            at = t.commit(changes)
            cur.update(changes)
            hist.append((at, dict(cur)))
            time.sleep(0.02)
            maxpinned = max(maxpinned, len(fh.pinned))
            if i % 3 == 0:
                target = at if i % 2 == 0 else hist[-2][0]
                window[1] = target
                conn.resync(target)
                window[0] = target
            assert not errors, errors[0]
    finally:
        stop.set()
        for th in threads:
            th.join(30)
    assert not errors, errors[0]
    assert nreads[0] > 100, nreads[0]
    assert maxpinned > 0  # the reads needed pins
    conn.resync(hist[-1][0])
    assert fh.pinned == {}
    for b in range(nmap):
        assert blk(m, b) == expect(hist[-1][0], b)


# ---- memory: zero copy, numpy, lifetime ----

def test_mem_numpy(tdb):
    np = pytest.importorskip("numpy")
    t = tdb
    at1 = t.commit({0: "a1", 1: "b1"})
    conn = t.connect(at1)
    fh = conn.open(t.zf)
    m = fh.mmap(0, 3)

    a = np.frombuffer(m.mem, dtype=np.uint8)
    assert a.ctypes.data == m._addr  # the mapped memory itself, no copy
    assert not a.flags.writeable
    assert bytes(a[:BLKSIZE]) == blkdata("a1")
    assert a[2 * BLKSIZE:].sum() == 0  # beyond EOF
    u64 = np.frombuffer(m.mem, dtype=np.uint64)
    assert u64.shape == (3 * BLKSIZE // 8,)

    # a commit: the array still shows at1 (the block gets pinned on access)
    at2 = t.commit({0: "a2"})
    assert bytes(a[:BLKSIZE]) == blkdata("a1")
    assert fh.pinned == {0: at1}
    conn.resync(at2)
    assert bytes(a[:BLKSIZE]) == blkdata("a2")

    # buffers keep the memory (and the file) alive without the Mapping;
    # unmap makes them fault
    addr, n = m._addr, m._len
    b = np.frombuffer(m.mem, dtype=np.uint8)
    m.unmap()
    assert m.mem is None
    assert set(read_faults(addr, n)) == {"1"}
    del a, b, u64
    gc.collect()

    m2 = fh.mmap(0, 1)
    a2 = np.frombuffer(m2.mem, dtype=np.uint8)
    addr2 = m2._addr
    del m2
    gc.collect()
    assert bytes(a2[:8]) == blkdata("a2")[:8]  # still mapped: a2 holds it
    del a2
    gc.collect()
    # released now: the address range is not ours any more (another mmap may
    # take it); nothing to read there
    assert addr2 not in [addr for addr, _ in wcfs._client._mappings.values()]


def test_bad_input(tdb):
    t = tdb
    conn = t.connect(t.head)
    with pytest.raises(ValueError, match="8 bytes"):
        conn.open(b"\0" * 7)
    with pytest.raises(TypeError):
        conn.open("zf")
    with pytest.raises(RuntimeError, match=r"open f0000000000000000: "):
        conn.open(0)  # the root object is not a ZBigFile
    fh = conn.open(t.zf)
    with pytest.raises(ValueError, match="negative"):
        fh.mmap(-1, 2)
    with pytest.raises(RuntimeError, match="invalid block range"):
        fh.mmap(0, 0)
    with pytest.raises(RuntimeError, match="overflows"):
        fh.mmap(1 << 62, 1 << 40)
    fh.close()


# ---- WatchLink (raw protocol) ----

def test_watchlink(tdb):
    t = tdb
    at1 = t.commit({0: "a1"})
    t.commit({0: "a2"})
    # the file must be known to the server before it is watched
    t.wc._stat("head/bigfile/" + t.zf.hex())

    wl = wcfs.WatchLink(t.wc)
    try:
        # messages are bytes, as the reference's (str is accepted too)
        assert wl.sendReq(10, b"watch %s @%s" % (t.zf.hex().encode(), at1.hex().encode())) == b"ok"
        assert wl.sendReq(10, "watch zzz") == b'error bad watch: expected 2 arguments, got 1'
        # a read of the changed block through head/ pins it on this link
        done = []
        rd = threading.Thread(target=lambda: done.append(t.wc._read("head/bigfile/" + t.zf.hex())))
        rd.start()
        req = wl.recvReq(10)
        assert (req.foid, req.blk, req.at) == (t.zf, 0, at1)
        assert req.msg == b"pin %s #0 @%s" % (t.zf.hex().encode(), at1.hex().encode())
        wl.replyReq(10, req, b"ack")
        rd.join(10)
        assert done and done[0][:BLKSIZE] == blkdata("a2")
        # moving the watch to head unpins
        rx = []
        th = threading.Thread(target=lambda: rx.append(wl.recvReq(10)))
        th.start()
        reply = []
        tx = threading.Thread(target=lambda: reply.append(
            wl.sendReq(10, "watch %s @%s" % (t.zf.hex(), t.head.hex()))))
        tx.start()
        th.join(10)
        assert rx[0].at is None and rx[0].blk == 0  # "@head"
        wl.replyReq(10, rx[0], "ack")
        tx.join(10)
        assert reply == [b"ok"]
        assert wl.fatalv == []
    finally:
        wl.close()
    wl.close()  # idempotent


class Ctx:
    """Ctx is a context of the kind the reference's callers pass (pygolang's),
    duck-typed without pygolang: deadline(), done() (here a threading.Event)
    and err()."""

    canceled = RuntimeError("context canceled")

    def __init__(self, timeout=None):
        self._deadline = None if timeout is None else time.time() + timeout
        self._done = threading.Event()

    def deadline(self):
        return self._deadline

    def done(self):
        return self._done

    def err(self):
        if self._done.is_set():
            return self.canceled
        return None

    def cancel(self):
        self._done.set()


def test_watchlink_ctx_cancel(tdb):
    """A WatchLink call blocked in Go returns when the caller's context is
    cancelled, with an error that unwraps to the context's error (the Go
    side gets the cancellation while it blocks, not only a deadline)."""
    t = tdb
    wl = wcfs.WatchLink(t.wc)
    try:
        ctx = Ctx()  # no deadline: only the cancellation can end the wait
        threading.Timer(0.2, ctx.cancel).start()
        with pytest.raises(wcfs.WCFSError, match="recvReq: context canceled") as exc:
            wl.recvReq(ctx)
        assert exc.value.Unwrap() is Ctx.canceled
        # a context cancelled already: the call does not block at all
        with pytest.raises(wcfs.WCFSError) as exc:
            wl.recvReq(ctx)
        assert exc.value.Unwrap() is Ctx.canceled
        # the link still works
        assert wl.sendReq(Ctx(10), b"watch zzz").startswith(b"error bad watch")
    finally:
        wl.close()


def test_waitfor_ctx():
    """_waitfor raises the context's error when it is done, as the
    reference's; _waitfor_ says False; a number is a deadline in seconds."""
    ctx = Ctx()
    ctx.cancel()
    with pytest.raises(RuntimeError) as exc:
        wcfs._waitfor(ctx, lambda: False)
    assert exc.value is Ctx.canceled
    assert wcfs._waitfor_(ctx, lambda: False) is False
    assert wcfs._waitfor_(Ctx(10), lambda: True) is True
    assert wcfs._waitfor_(0.05, lambda: False) is False
    with pytest.raises(TimeoutError):
        wcfs._waitfor(0.05, lambda: False)


def test_open_not_zbigfile(tdb):
    """open of an oid that is no ZBigFile says why (the server's reason), not
    only "invalid argument"; the Conn keeps working."""
    t = tdb
    conn = t.connect(t.at0)
    for foid, reason in ((0xdeadbeef, "invalid argument: no such object as of @"),
                         (0, "invalid argument: not a ZBigFile: class persistent.mapping.PersistentMapping")):
        with pytest.raises(Exception) as exc:
            conn.open(foid)
        assert reason in str(exc.value)
        assert exc.value.errno == EINVAL
    conn.open(t.zf).close()


def test_connect_after_close(wcfs_db):
    """connect fails once the WCFS is closed (its last join released)."""
    srv = wcfs.start(wcfs_db.zurl)
    try:
        wc = wcfs.join(wcfs_db.zurl, autostart=False)
        assert wcfs.join(wcfs_db.zurl, autostart=False) is wc
        wc.close()  # one join left: usable
        at = bytes.fromhex(wc._read("head/at").decode())
        wc.connect(at).close()
        wc.close()
        with pytest.raises(Exception, match=r"connect: the WCFS is closed \(close was called\): join again"):
            wc.connect(at)
    finally:
        srv.stop()
