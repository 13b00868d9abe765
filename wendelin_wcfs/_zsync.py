# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""A wcfs Conn kept in sync with a ZODB connection (the reference's
wcfs/client/_wczsync and the helpers of wendelin/lib/zodb it needs).

    wconn = pywconnOf(zconn)    # the Conn of zconn: at == zconn_at(zconn)

The Conn is made on first use (join of the server of zconn's storage,
connect at the connection's view) and cached on the connection. Every time
the connection's view moves (a new transaction begins: ZODB5's
Connection.newTransaction) the Conn is resynced to it. When the connection's
resources are released (DB.close, the pool dropping it) the Conn and its join
are closed; when the connection is garbage-collected they are closed in the
background (a finalizer must not take locks; an atexit hook waits for them).
A connection returned to the pool keeps its Conn, at its view.

Only ZODB >= 5 is supported (ZODB4 needs a patch, ZODB3 cannot tell its
view).
"""

import atexit
import threading
import weakref
from urllib.parse import quote

__all__ = ["pywconnOf", "zconn_at", "zstor_2zurl"]


def _p64(v):
    return v.to_bytes(8, "big")


def _u64(b):
    return int.from_bytes(b, "big")


def zconn_at(zconn):  # -> tid (8 bytes)
    """zconn_at returns the revision the ZODB connection views: the
    transaction before its MVCC start (or before its `before`)."""
    if zconn.before is not None:
        return _p64(_u64(zconn.before) - 1)
    start = getattr(zconn._storage, "_start", None)
    if start is None:
        raise RuntimeError("wcfs: zconn_at: %r has no view (closed, or not ZODB >= 5)" % zconn)
    return _p64(_u64(start) - 1)


def _hostport(addr):
    if isinstance(addr, str):
        return addr  # unix socket
    host, port = addr
    if ":" in host:
        host = "[%s]" % host
    return "%s:%d" % (host, port)


def zstor_2zurl(storage):  # -> zurl
    """zstor_2zurl returns the zurl of a ZODB storage (spec 7.2): FileStorage,
    ZEO ClientStorage, DemoStorage. In-RAM MappingStorage: ValueError; other
    storages: NotImplementedError."""
    typ = type(storage).__module__ + "." + type(storage).__qualname__
    if typ == "ZODB.FileStorage.FileStorage.FileStorage":
        return "file://" + storage._file_name
    if typ == "ZODB.DemoStorage.DemoStorage":
        return "demo:(%s)/(%s)" % (zstor_2zurl(storage.base), zstor_2zurl(storage.changes))
    if typ == "ZODB.MappingStorage.MappingStorage":
        raise ValueError("wcfs: zstor_2zurl: in-RAM MappingStorage is not supported "
                         "(a second process would see another database)")
    if typ == "ZEO.ClientStorage.ClientStorage":
        addrs = storage._addr
        if not isinstance(addrs, list):
            addrs = [addrs]
        if len(addrs) != 1:
            raise NotImplementedError("wcfs: zstor_2zurl: ZEO client of several servers %r" % (addrs,))
        zurl = "zeo://" + _hostport(addrs[0])
        name = getattr(storage, "_storage", "1")
        if name != "1":
            zurl += "?storage=" + quote(name)
        return zurl
    raise NotImplementedError("wcfs: zstor_2zurl: don't know the zurl of %s" % typ)


# ---- pywconnOf ----

_mu = threading.Lock()


def pywconnOf(zconn):  # -> Conn
    """pywconnOf returns the wcfs Conn attached to the ZODB connection zconn,
    making it on first use; it follows the connection's view."""
    from wendelin import wcfs

    with _mu:
        zs = zconn.__dict__.get("_wcfs_zsync")
        if zs is not None and not zs.closed:
            return zs.wconn
        wc = wcfs.join(zstor_2zurl(zconn.db().storage))
        try:
            wconn = wc.connect(zconn_at(zconn))
        except BaseException:
            wc.close()
            raise
        zs = _ZSync(zconn, wc, wconn)
        zconn._wcfs_zsync = zs
        return wconn


class _ZSync:
    """_ZSync keeps wconn at the view of zconn (it holds zconn weakly)."""

    def __init__(self, zconn, wc, wconn):
        self.wc, self.wconn = wc, wconn
        self.closed = False
        self._mu = threading.Lock()
        self._zref = weakref.ref(zconn)
        # the connection calls these through its instance: hooks
        zconn.newTransaction = self.newTransaction
        zconn._release_resources = self.release_resources
        self._fin = weakref.finalize(zconn, _close_async, self)

    def newTransaction(self, transaction, sync=True):
        zconn = self._zref()
        type(zconn).newTransaction(zconn, transaction, sync)
        try:
            with self._mu:
                if not self.closed:
                    self.wconn.resync(zconn_at(zconn))
        except BaseException:
            # a failed resync closed the Conn: drop it (and its join), the
            # next pywconnOf makes a new one
            self.close()
            raise

    def release_resources(self):
        zconn = self._zref()
        self.close()
        type(zconn)._release_resources(zconn)

    def close(self):
        """close closes the Conn and the join it holds (once)."""
        with self._mu:
            if self.closed:
                return
            self.closed = True
        self._fin.detach()
        try:
            self.wconn.close()
        finally:
            self.wc.close()


# closes started by finalizers of collected connections
_pending = set()
_pending_mu = threading.Lock()


def _close_async(zs):
    def run():
        try:
            zs.close()
        except Exception as e:  # noqa: BLE001 (nobody to raise to)
            from wendelin.wcfs import log
            log.warning("wcfs: close of the Conn of a collected ZODB connection: %s", e)
        finally:
            with _pending_mu:
                _pending.discard(th)

    th = threading.Thread(target=run, name="wcfs-zsync-close", daemon=True)
    with _pending_mu:
        _pending.add(th)
    th.start()


@atexit.register
def _wait_pending():
    with _pending_mu:
        pending = list(_pending)
    for th in pending:
        th.join(30)
