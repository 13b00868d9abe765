# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""A wcfs Conn kept in sync with a ZODB connection (spec 8.6, the
reference's _wczsync_test), with genuine ZODB in this process and a real
server."""

import gc
import os
import time

import pytest

from wendelin import wcfs
from wendelin.wcfs._zsync import pywconnOf, zconn_at, zstor_2zurl

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"),
                                reason="needs root and /dev/fuse (mounts with mount(2))")


@pytest.fixture
def zdb(tmp_path, wcfs_leakcheck):
    """zdb is a ZODB.DB over a FileStorage with a ZBigFile root["zf"], and a
    server started for it."""
    import ZODB
    import transaction
    from ZODB.FileStorage import FileStorage
    from wendelin.bigfile.file_zodb import ZBigFile  # tools/pylib (conftest)

    path = str(tmp_path / "1.fs")
    db = ZODB.DB(FileStorage(path))
    tm = transaction.TransactionManager()
    conn = db.open(tm)
    conn.root()["zf"] = ZBigFile(64 * 1024)
    tm.commit()
    conn.close()
    del conn, tm  # the pool's connection: tests open (and collect) it
    zurl = "file://" + path
    wcfs_leakcheck(zurl)
    srv = wcfs.start(zurl)
    wc = wcfs.join(zurl, autostart=False)  # held by the test: joins count on it
    try:
        yield db, wc
    finally:
        db.close()
        wc.close()
        srv.stop()


def commit_via(conn, v):
    """commit_via commits root["x"] = v through the connection conn (of its
    own transaction manager)."""
    conn.transaction_manager.begin()
    conn.root()["x"] = v
    conn.transaction_manager.commit()


def wait_head(wc, at):
    deadline = time.monotonic() + 60
    while bytes.fromhex(wc._read("head/at").decode().strip()) < at:
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_zstor_2zurl(tmp_path):
    from ZODB.FileStorage import FileStorage
    from ZODB.MappingStorage import MappingStorage
    from ZODB.DemoStorage import DemoStorage

    fs = FileStorage(str(tmp_path / "a.fs"))
    fs2 = FileStorage(str(tmp_path / "b.fs"))
    try:
        assert zstor_2zurl(fs) == "file://%s/a.fs" % tmp_path
        assert zstor_2zurl(DemoStorage(base=fs, changes=fs2)) == \
            "demo:(file://%s/a.fs)/(file://%s/b.fs)" % (tmp_path, tmp_path)
        with pytest.raises(ValueError, match="MappingStorage"):
            zstor_2zurl(MappingStorage())
        with pytest.raises(NotImplementedError):
            zstor_2zurl(object())
    finally:
        fs.close()
        fs2.close()


def test_zsync_resync(zdb):
    import transaction

    db, wc = zdb
    other = db.open(transaction.TransactionManager())
    tm = transaction.TransactionManager()
    zconn = db.open(tm)
    wconn = pywconnOf(zconn)
    assert pywconnOf(zconn) is wconn  # cached on the connection
    at0 = zconn_at(zconn)
    assert wconn.at() == at0
    assert wc._njoin == 2

    # a commit through the connection: its next transaction views it
    zconn.root()["x"] = 1
    tm.commit()
    at1 = db.lastTransaction()
    tm.begin()
    assert zconn_at(zconn) == wconn.at() == at1

    # a commit through another connection: not until a new transaction
    commit_via(other, 2)
    at2 = db.lastTransaction()
    assert wconn.at() == at1
    wait_head(wc, at2)
    tm.begin()
    assert wconn.at() == at2

    # back in the pool, the Conn stays at the connection's view
    zconn.close()
    commit_via(other, 3)
    at3 = db.lastTransaction()
    assert wconn.at() == at2
    fh = wconn.open(other.root()["zf"]._p_oid)  # still usable
    fh.close()
    # reopened from the pool: it follows again
    zconn2 = db.open(tm)
    assert zconn2 is zconn
    assert wconn.at() == at3 == zconn_at(zconn)
    assert pywconnOf(zconn2) is wconn
    zconn2.close()
    other.close()


def test_zsync_db_close(zdb):
    import transaction

    db, wc = zdb
    zconn = db.open(transaction.TransactionManager())
    wconn = pywconnOf(zconn)
    assert wc._njoin == 2
    db.close()  # releases the connection's resources: the Conn and its join go
    assert wc._njoin == 1
    with pytest.raises(RuntimeError, match="connection closed"):
        wconn.open(b"\0" * 8)


def test_zsync_zconn_gc(zdb):
    import transaction
    from wendelin.wcfs import _zsync

    db, wc = zdb
    hold = db.open(transaction.TransactionManager())  # the pool's connection
    zconn = db.open(transaction.TransactionManager())  # a new one
    wconn = pywconnOf(zconn)
    assert wc._njoin == 2
    del zconn  # never closed: nothing keeps it but us
    gc.collect()
    _zsync._wait_pending()
    assert wc._njoin == 1
    with pytest.raises(RuntimeError, match="connection closed"):
        wconn.open(b"\0" * 8)
    hold.close()


def test_zsync_resync_fails(zdb):
    """A resync that fails (here: back in history) closes the Conn; the
    connection then gets a new one."""
    import transaction

    db, wc = zdb
    tm = transaction.TransactionManager()
    zconn = db.open(tm)
    wconn = pywconnOf(zconn)
    at0 = zconn_at(zconn)
    # no file open: the Conn moves ahead at once, the connection's next
    # view is behind it
    wconn.resync((int.from_bytes(at0, "big") + 1).to_bytes(8, "big"))
    with pytest.raises(RuntimeError, match="going back in history is forbidden"):
        tm.begin()
    with pytest.raises(RuntimeError, match="connection closed"):
        wconn.open(b"\0" * 8)
    assert zconn.__dict__["_wcfs_zsync"].closed
    assert wc._njoin == 1  # the join of the dead Conn is closed too
    wconn2 = pywconnOf(zconn)
    assert wconn2 is not wconn
    assert wconn2.at() == zconn_at(zconn)
    assert wc._njoin == 2
    fh = wconn2.open(zconn.root()["zf"]._p_oid)
    fh.close()
    zconn.close()
