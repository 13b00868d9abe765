"""Tests of the test-database toolkit: tools/pylib/ztestdb and wendelin.bigfile.file_zodb."""

import base64
import io
import json
import os
import pickle
import random
import re
import subprocess
import sys

import pytest
import ZODB
from ZODB.FileStorage import FileStorage
from ZODB.serialize import ObjectWriter
from ZODB.utils import p64, u64

from ztestdb_fixtures import REPO, shared_zodb, toolkit_env, zeo_server  # noqa: F401

import ztestdb
from ztestdb import Database, KiB, MiB, ZTestDBError
from ztestdb import manifest as zm
from wendelin.bigfile import file_zodb
from wendelin.bigfile.file_zodb import InvalidBlockData, ZBigFile, ZBlk0, ZBlk1, ZData


def rnd(rng, n):
    """n random bytes whose last byte is not zero."""
    if n == 0:
        return b""
    return rng.randbytes(n - 1) + b"\x01"


def agree(db):
    """The manifest recorded while committing equals the one read back."""
    diff = ztestdb.diff_manifests(db.manifest(), db.read_back_manifest())
    assert diff == []


# ---- persistent layout: byte-identical to wendelin.core ----

def test_fixture_records_reserialize_identically():
    """Every object of small.fs (written with wendelin.core's classes) pickles back
    to exactly its record through our classes."""
    stor = FileStorage(os.path.join(shared_zodb(), "small.fs"),
                                        read_only=True)
    db = ZODB.DB(stor)
    try:
        conn = db.open()
        kinds = set()
        for oid in list(stor._index.keys()):
            data, _ = stor.load(oid)
            obj = conn.get(oid)
            obj._p_activate()
            kinds.add(type(obj).__name__)
            assert ObjectWriter(obj).serialize(obj) == data, oid.hex()
        assert {"ZBigFile", "ZBlk0", "ZBlk1", "ZData", "LOBTree", "IOBTree"} <= kinds
    finally:
        db.close()


class _RefUnpickler(pickle.Unpickler):
    def __init__(self, f, refs):
        super().__init__(f)
        self.refs = refs

    def find_class(self, module, name):
        return (module, name)

    def persistent_load(self, pid):
        self.refs.append(pid[0] if isinstance(pid, tuple) else pid)
        return pid


def _record_refs(record):
    refs = []
    u = _RefUnpickler(io.BytesIO(record), refs)
    u.load()
    u.load()
    return refs


def _same_graph(sa, oid_a, at_a, sb, oid_b, at_b):
    """Records reachable from oid_a (storage sa as of at_a) are byte-identical to those
    from oid_b, up to the oid values; returns the number of records compared."""
    seen = {}
    todo = [(oid_a, oid_b)]
    while todo:
        a, b = todo.pop()
        if a in seen:
            assert seen[a] == b
            continue
        seen[a] = b
        ra = sa.loadBefore(a, p64(u64(at_a) + 1))[0]
        rb = sb.loadBefore(b, p64(u64(at_b) + 1))[0]
        refs_a, refs_b = _record_refs(ra), _record_refs(rb)
        assert len(refs_a) == len(refs_b), (a.hex(), b.hex())
        oidmap = dict(zip(refs_a, refs_b))
        todo.extend(oidmap.items())
        # oids are pickled as SHORT_BINBYTES (C, length 8): rename them all at once
        translated = re.sub(rb"C\x08(.{8})", lambda m: b"C\x08" + oidmap.get(m[1], m[1]),
                            ra, flags=re.DOTALL)
        assert translated == rb, "record %s differs from %s" % (a.hex(), b.hex())
    return len(seen)


def test_written_records_identical_to_wendelin(tmp_path):
    """Files written through the toolkit give the same records (up to oids) as the
    files wendelin.core wrote in small.fs with the same content."""
    ref = zm.load_manifest(os.path.join(shared_zodb(), "small.json"))
    fstor = FileStorage(os.path.join(shared_zodb(), "small.fs"),
                                         read_only=True)
    fdb = ZODB.DB(fstor)
    try:
        with Database.create(str(tmp_path / "w.fs")) as db:
            created = {}
            for t in ref["transactions"]:
                for name in t["changed_files"]:
                    if name in t["files"] and name not in created:
                        created[name] = t["tid"]
            assert set(created) == {"zf0", "zf1", "zf64k", "zf4k", "zfempty"}
            nrec = 0
            for name, tid in created.items():
                conn = fdb.open(at=bytes.fromhex(tid))
                zfile = conn.root()[name]
                blksize, blocks, _ = zm.read_file(zfile)
                zoid = zfile._p_oid
                conn.close()
                db.create_file(name, blksize)
                for blk in sorted(blocks):
                    db.write_block(name, blk, blocks[blk].data, fmt=blocks[blk].fmt)
                head = db.commit("copy of " + name)
                nrec += _same_graph(db._storage, bytes.fromhex(db.file_info(name)["oid"]),
                                    bytes.fromhex(head), fstor, zoid, bytes.fromhex(tid))
            assert nrec > 500
    finally:
        fdb.close()


def test_legacy_zblk_class_name(tmp_path):
    with Database.create(str(tmp_path / "1.fs")) as db:
        db.create_file("zf", 4 * KiB)
        db.write_block("zf", 1, b"legacy\0\0", fmt="ZBlk")
        db.commit("legacy")
        info = db.file_info("zf")
        assert info["blocks"]["1"]["fmt"] == "ZBlk0"
        record, _ = db._storage.load(bytes.fromhex(info["blocks"]["1"]["oid"]))
        assert record.startswith(b"\x80\x03cwendelin.bigfile.file_zodb\nZBlk\n")
        f = io.BytesIO(record)
        pickle.load(f)
        assert pickle.load(f) == b"legacy"
        # re-stored as ZBlk0: kept in place (wendelin.core loads ZBlk as ZBlk0)
        db.write_block("zf", 1, b"legacy2", fmt="ZBlk0")
        db.commit("restore")
        assert db.file_info("zf")["blocks"]["1"]["oid"] == info["blocks"]["1"]["oid"]
        agree(db)


# ---- block formats (spec 4.2, 4.3) ----

def test_zblk0_strips_trailing_zeros():
    z = ZBlk0()
    assert z.setblkdata(b"abc\0\0\0") is True
    assert z.loadblkdata() == b"abc"
    assert z.__getstate__() == b"abc"


def test_zblk0_data_not_kept_after_load(tmp_path):
    """Loaded block data is not kept in the live cache (memory of big databases)."""
    with Database.create(str(tmp_path / "1.fs")) as db:
        db.create_file("zf", 4 * KiB, "auto")
        db.write_block("zf", 0, b"x" * 4096)
        db.commit("t1")
        zblk = db._root["zf"].blktab[0]
        assert zblk._v_blkdata is None              # handed to the database
        assert zblk.loadblkdata() == b"x" * 4096    # reloaded
        assert zblk._v_blkdata is None              # and not kept
        db.write_block("zf", 0, b"y" * 4096)        # auto reads the old data
        db.commit("t2")
        assert db.read_block("zf", 0) == b"y" * 4096
        agree(db)


def test_file_hasher_incremental():
    """FileHasher resumed at the first changed block == hashing from scratch."""
    rng = random.Random(4)
    hasher = zm.FileHasher()
    blocks = {}
    for step in range(200):
        blksize = 64 if step < 150 else 128
        blk = rng.randrange(40)
        op = rng.randrange(3)
        if op == 0:
            blocks.pop(blk, None)
        else:
            blocks[blk] = zm.Block("ZBlk0", "0" * 16, rnd(rng, rng.randrange(65)))
        want = zm.file_state("0" * 16, blksize, blocks)["sha256"]
        assert hasher.sha256(blksize, blocks) == want, step


def test_zblk1_chunks():
    z = ZBlk1()
    data = bytearray(5 * 4096)
    data[10:20] = b"x" * 10             # chunk 0
    data[3 * 4096 + 5] = 7              # chunk 3; chunks 1, 2, 4 are zeros
    assert z.setblkdata(data) is True
    assert list(z.chunktab.keys()) == [0, 3 * 4096]
    assert z.chunktab[0].data == b"\0" * 10 + b"x" * 10        # trailing zeros stripped
    assert z.loadblkdata() == bytes(data).rstrip(b"\0")
    assert z.setblkdata(data) is False  # nothing changed
    data[3 * 4096 + 5] = 0
    assert z.setblkdata(data) is True and list(z.chunktab.keys()) == [0]


def test_zblk1_off_grid_table_is_cleared():
    z = ZBlk1()
    z.chunktab[0] = ZData(b"a" * 100)
    z.chunktab[100] = ZData(b"b")
    assert z.setblkdata(bytes(8192)) is True     # cleared, even to all zeros
    assert len(z.chunktab) == 0
    z.chunktab[0] = ZData(b"a" * 5000)           # chunk larger than 4096
    assert z.setblkdata(b"c" * 10) is True
    assert [(k, v.data) for k, v in z.chunktab.items()] == [(0, b"c" * 10)]


def test_zblk1_invalid_chunks():
    z = ZBlk1()
    z.chunktab[0] = ZData(b"x" * 200)
    z.chunktab[100] = ZData(b"y")
    with pytest.raises(InvalidBlockData, match="overlaps"):
        z.loadblkdata()
    z = ZBlk1()
    z.chunktab[0] = ZData(b"x")
    z.chunktab[8192] = ZData(b"y")              # any chunk size, gaps are zeros
    assert z.loadblkdata() == b"x" + bytes(8191) + b"y"
    assert ZBlk1().loadblkdata() == b""


def test_zbigfile_validation():
    with pytest.raises(ValueError, match="blksize must be a positive int"):
        ZBigFile(0)
    f = ZBigFile(16)
    with pytest.raises(ValueError, match="17 bytes > blksize 16"):
        f.storeblk(0, b"x" * 17)
    with pytest.raises(ValueError, match="unknown ZBlk format 'ZBlk9'"):
        f.storeblk(0, b"x", "ZBlk9")
    assert f.storeblk(2, b"ab\0", "ZBlk0") is True
    assert f.size() == 48 and f.loadblk(2) == b"ab" + bytes(14) and f.loadblk(0) == bytes(16)


def test_default_format_from_environment(monkeypatch):
    """$WENDELIN_CORE_ZBLK_FMT, default by $WENDELIN_CORE_VIRTMEM (read at import)."""
    for virtmem, fmt, want in (("rw:uvmm", None, "ZBlk0"), ("r:wcfs+w:uvmm", None, "auto"),
                               ("rw:uvmm", "ZBlk1", "ZBlk1")):
        monkeypatch.setenv("WENDELIN_CORE_VIRTMEM", virtmem)
        if fmt:
            monkeypatch.setenv("WENDELIN_CORE_ZBLK_FMT", fmt)
        else:
            monkeypatch.delenv("WENDELIN_CORE_ZBLK_FMT", raising=False)
        assert file_zodb._default_fmt_write() == want
    monkeypatch.setenv("WENDELIN_CORE_ZBLK_FMT", "ZBlk9")
    with pytest.raises(RuntimeError, match="Unknown ZBlk format 'ZBlk9'"):
        file_zodb._default_fmt_write()
    monkeypatch.setenv("WENDELIN_CORE_VIRTMEM", "bogus")
    with pytest.raises(KeyError, match="WENDELIN_CORE_VIRTMEM"):
        file_zodb._default_fmt_write()


def test_auto_heuristic(tmp_path):
    rng = random.Random(1)
    bs = 64 * KiB
    with Database.create(str(tmp_path / "1.fs")) as db:
        db.create_file("zf", bs, "auto")

        def fmts():
            return {int(k): v["fmt"] for k, v in db.file_info("zf")["blocks"].items()}

        db.write_block("zf", 0, rnd(rng, 100))             # small append into a new block
        db.commit("a")
        assert fmts() == {0: "ZBlk1"}
        db.write("zf", 100, rnd(rng, bs - 100))            # append filling the block
        db.commit("b")
        assert fmts() == {0: "ZBlk0"}
        db.write_block("zf", 1, rnd(rng, 100))
        db.commit("c")
        assert fmts() == {0: "ZBlk0", 1: "ZBlk1"}
        oid1 = db.file_info("zf")["blocks"]["1"]["oid"]
        db.write("zf", bs + 100, rnd(rng, 100))            # append to blk 1 (changed) ...
        db.write_block("zf", 2, rnd(rng, 50))              # ... and into blk 2: blk 1 -> ZBlk0
        db.commit("d")
        assert fmts() == {0: "ZBlk0", 1: "ZBlk0", 2: "ZBlk1"}
        assert db.file_info("zf")["blocks"]["1"]["oid"] != oid1
        db.write("zf", 1000, b"small patch")                # not an append, small
        db.commit("e")
        assert fmts()[0] == "ZBlk1"
        db.write_block("zf", 0, rnd(rng, bs))               # not an append, big
        db.commit("f")
        assert fmts()[0] == "ZBlk0"
        agree(db)


def test_writer_contract_zblk1_committed_with_its_zdata(tmp_path):
    """A ZBlk1 whose only change is one ZData is committed too (spec 4.3)."""
    rng = random.Random(2)
    with Database.create(str(tmp_path / "1.fs")) as db:
        db.create_file("zf", 2 * MiB, "ZBlk1")
        db.write_block("zf", 0, rnd(rng, 2 * MiB))
        db.commit("t1")
        zblk = db.file_info("zf")["blocks"]["0"]["oid"]
        db.write("zf", 5 * 4096 + 7, b"patch")
        tid = db.commit("t2")
        txn = next(db._storage.iterator(bytes.fromhex(tid), bytes.fromhex(tid)))
        recs = {r.oid.hex(): r.data for r in txn}
        assert zblk in recs and len(recs) == 2   # the ZBlk1 and one ZData
        assert db.file_info("zf")["blocks"]["0"]["oid"] == zblk
        agree(db)


# ---- Database: recorded manifest, read back, every kind of change ----

def test_database_history(tmp_path):
    rng = random.Random(3)
    path = str(tmp_path / "1.fs")
    with Database.create(path, dataset="t") as db:
        expect = {}                                        # name -> bytearray

        def put(name, off, data):
            buf = expect.setdefault(name, bytearray())
            if len(buf) < off + len(data):
                buf.extend(bytes(off + len(data) - len(buf)))
            buf[off:off + len(data)] = data

        db.create_file("f2m", 2 * MiB, "ZBlk0")
        db.create_file("f64k", 64 * KiB, "ZBlk1")
        db.create_file("f4k", 4 * KiB, "auto")
        db.create_file("fempty", 4 * KiB)
        for blk in (0, 1, 3):
            d = rnd(rng, 2 * MiB if blk != 1 else 1000)
            db.write_block("f2m", blk, d)
            put("f2m", blk * 2 * MiB, d)
        for blk in range(0, 40, 3):
            d = rnd(rng, 64 * KiB - blk)
            db.write_block("f64k", blk, d, fmt=rng.choice(("ZBlk0", "ZBlk1")))
            put("f64k", blk * 64 * KiB, d)
        for blk in range(300):                              # several buckets
            if blk % 11:
                d = rnd(rng, rng.randrange(1, 4 * KiB))
                db.write_block("f4k", blk, d)
                put("f4k", blk * 4 * KiB, d)
        db.set_object("meta", [1, 2])
        db.commit("create")

        def content(name):
            buf = expect.get(name, bytearray())
            bs = db.file_info(name)["blksize"]
            return bytes(buf).ljust(-(-len(buf) // bs) * bs, b"\0")

        assert db.read_file("f2m") == content("f2m")
        assert db.read_file("f4k") == content("f4k")

        db.write("f2m", 2 * MiB - 10, b"spans two blocks")
        put("f2m", 2 * MiB - 10, b"spans two blocks")
        db.write("f64k", 3 * 64 * KiB + 4096 * 2, b"one chunk")
        put("f64k", 3 * 64 * KiB + 4096 * 2, b"one chunk")
        db.set_format("f64k", 6, "ZBlk0")
        db.commit("patch")
        assert db.read_file("f2m") == content("f2m")

        db.punch_hole("f4k", 0, 150)                         # buckets emptied
        db.zero_block("f2m", 3)
        db.delete_file("fempty")
        db.set_object("meta", [3])
        tid3 = db.commit("holes")
        assert db.manifest()["transactions"][-1]["changed_files"] == ["f4k", "f2m", "fempty"]

        db.set_object("meta", [4])
        assert db.commit("meta only") is not None
        assert db.manifest()["transactions"][-1]["changed_files"] == []

        db.create_file("fempty", 64 * KiB, "ZBlk1")         # same name, new oid
        db.set_blksize("f2m", 4 * MiB)
        db.replace_blktab("f64k", keep_blocks=True)
        db.replace_blktab("f4k", keep_blocks=False)
        db.truncate("fempty", 0)
        db.commit("epochs")
        assert db.commit("nothing") is None

        db.write("f2m", 0, b"discarded")
        db.create_file("new", 4 * KiB)
        db.abort()
        assert db.files() == ["f2m", "f64k", "f4k", "fempty"]
        assert db.read_block("f2m", 0)[:9] != b"discarded"

        m = db.manifest()
        assert [t["description"] for t in m["transactions"]] == [
            "initial database creation", "create", "patch", "holes", "meta only", "epochs"]
        assert m["files"]["f2m"]["blksize"] == 4 * MiB
        assert m["transactions"][1]["files"]["f2m"]["blksize"] == 2 * MiB
        assert m["transactions"][1]["files"]["fempty"]["oid"] != \
            m["transactions"][-1]["files"]["fempty"]["oid"]
        assert "fempty" not in m["transactions"][3]["files"]
        assert m["transactions"][-1]["files"]["f4k"]["size"] == 0
        agree(db)
        db.write_manifest(str(tmp_path / "1.json"))

    # read back from outside, from a tid on, and reopened with its history
    m = zm.load_manifest(str(tmp_path / "1.json"))
    assert ztestdb.diff_manifests(m, ztestdb.read_manifest(path)) == []
    part = ztestdb.read_manifest(path, start=tid3)
    assert [t["tid"] for t in part["transactions"]] == [t["tid"] for t in m["transactions"][3:]]
    with Database.open(path) as db:
        assert ztestdb.diff_manifests(m, db.manifest()) == []
        db.write_block("f2m", 5, b"more")
        db.commit("after reopen")
        agree(db)
    with Database.open(path, history=False) as db:
        assert len(db.manifest()["transactions"]) == 1


def test_errors(tmp_path):
    path = str(tmp_path / "1.fs")
    with Database.create(path) as db:
        db.create_file("zf", 4 * KiB)
        with pytest.raises(ZTestDBError, match="root already has an object"):
            db.create_file("zf")
        with pytest.raises(ZTestDBError, match="nope: no such ZBigFile"):
            db.write_block("nope", 0, b"")
        with pytest.raises(ZTestDBError, match="unknown block format"):
            db.write_block("zf", 0, b"", fmt="ZBlk2")
        with pytest.raises(ZTestDBError, match="4097 bytes > blksize 4096"):
            db.write_block("zf", 0, bytes(4097))
        with pytest.raises(ZTestDBError, match="block number"):
            db.write_block("zf", -1, b"")
        with pytest.raises(ZTestDBError, match="is a hole"):
            db.set_format("zf", 3, "ZBlk1")
        db.delete_block("zf", 3)                    # a hole: nothing to do
        db.punch_hole("zf", 5, 9)
        db.write_block("zf", 0, b"x" * 3000)
        with pytest.raises(ZTestDBError, match="holds 3000 bytes > new blksize 2048"):
            db.set_blksize("zf", 2048)
        with pytest.raises(ZTestDBError, match="is a ZBigFile"):
            db.set_object("zf", 1)
    with pytest.raises(FileExistsError):
        Database.create(path)
    with pytest.raises(FileNotFoundError, match="no such database"):
        Database.open(str(tmp_path / "absent.fs"))
    with pytest.raises(ztestdb.ZURLError, match="unsupported scheme"):
        Database.open("neo://x@y")


def test_zurls():
    assert ztestdb.parse_zurl("/a/b.fs") == ("file", "/a/b.fs", {})
    assert ztestdb.parse_zurl("file:///a/b.fs") == ("file", "/a/b.fs", {})
    assert ztestdb.parse_zurl("zeo://h:8100") == ("zeo", ("h", 8100), {"storage": "1"})
    assert ztestdb.parse_zurl("zeo://[::1]:8100?storage=x") == ("zeo", ("::1", 8100),
                                                                 {"storage": "x"})
    assert ztestdb.parse_zurl("zeo:///run/z.sock") == ("zeo", "/run/z.sock", {"storage": "1"})
    assert ztestdb.storage_zurl("zeo://[::1]:8100?storage=1") == "zeo://[::1]:8100"
    for bad in ("", "zeo://h", "zeo://h:1?x=2", "file://host/x", "http://x"):
        with pytest.raises(ztestdb.ZURLError):
            ztestdb.parse_zurl(bad)


def test_small_fixture_read_back():
    """Reading small.fs back gives exactly small.json."""
    d = shared_zodb()
    ref = zm.load_manifest(os.path.join(d, "small.json"))
    got = ztestdb.read_manifest(os.path.join(d, "small.fs"), dataset="small")
    assert ztestdb.diff_manifests(ref, got) == []
    # changed_files even in the same order, except for transactions that changed
    # several files (the fixture lists them in the order its generator touched them)
    for a, b in zip(ref["transactions"], got["transactions"]):
        assert sorted(a["changed_files"]) == sorted(b["changed_files"])


def test_zeo(zeo_server, tmp_path):
    """Commits through a genuine ZEO server; the manifest agrees with the data."""
    with Database.open(zeo_server.zurl) as db:
        assert db.zurl == zeo_server.zurl
        db.create_file("zf", 64 * KiB, "ZBlk1")
        db.write_block("zf", 2, b"over zeo")
        db.commit("zeo 1")
        db.write("zf", 10, b"more")
        db.commit("zeo 2")
        agree(db)
        m = db.manifest()
    assert ztestdb.diff_manifests(m, ztestdb.read_manifest(zeo_server.zurl)) == []


# ---- command line: serve and gen ----

def _serve(args, lines):
    r = subprocess.run([sys.executable, "-m", "ztestdb", "serve"] + args,
                       input="".join(json.dumps(x) + "\n" for x in lines),
                       capture_output=True, text=True, env=toolkit_env(), timeout=60)
    return r, [json.loads(x) for x in r.stdout.splitlines()]


def test_serve(tmp_path):
    path = str(tmp_path / "1.fs")
    data = b"hello"
    r, out = _serve(["--create", path], [
        {"op": "create_file", "name": "zf", "blksize": 4096, "fmt": "ZBlk1", "id": 7},
        {"op": "write_block", "name": "zf", "blk": 1, "data": base64.b64encode(data).decode()},
        {"op": "commit", "description": "t1"},
        {"op": "read_block", "name": "zf", "blk": 1},
        {"op": "write_block", "name": "zf", "blk": "1", "data": ""},
        {"op": "nope"},
        {"op": "manifest", "path": str(tmp_path / "m.json")},
        {"op": "read_back"},
    ])
    assert r.returncode == 0, r.stderr
    greet, created, wrote, commit, read, bad, unknown, man, rb = out
    assert greet["ready"] and greet["zurl"] == "file://" + path
    assert created == {"ok": True, "oid": "0000000000000001", "id": 7}
    assert wrote == {"ok": True}
    assert commit["changed_files"] == ["zf"] and len(commit["tid"]) == 16
    assert base64.b64decode(read["data"]) == data.ljust(4096, b"\0")
    assert bad == {"error": "argument 'blk' must be int, not '1'"}
    assert unknown["error"].startswith("unknown op 'nope'")
    assert ztestdb.diff_manifests(zm.load_manifest(man["path"]), rb["manifest"]) == []

    # existing database: history read back; EOF closes
    r, out = _serve([path], [{"op": "head"}])
    assert r.returncode == 0 and out[1]["tid"] == commit["tid"]
    r, out = _serve([str(tmp_path / "absent.fs")], [])
    assert r.returncode == 1 and "no such database" in out[0]["error"]


def test_gen_demo(tmp_path):
    """wcfs-zgen OUT.fs from another directory: the demo dataset and its manifest."""
    out = tmp_path / "sub" / "demo.fs"
    zgen = os.path.join(REPO, "tools", "bin", "wcfs-zgen")
    env = dict(os.environ, WCFS_PYTHON=sys.executable)
    r = subprocess.run([zgen, str(out)], cwd="/", env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = zm.load_manifest(str(tmp_path / "sub" / "demo.json"))
    assert m["dataset"] == "demo" and len(m["transactions"]) == 6
    assert not os.path.exists(str(out) + ".tmp")
    head = m["transactions"][-1]["files"]
    fmts = {b["fmt"] for f in head.values() for b in f["blocks"].values()}
    assert fmts == {"ZBlk0", "ZBlk1"}
    assert {f["blksize"] for f in head.values()} == {2 * MiB, 64 * KiB, 4 * KiB}
    assert any(f["size"] > len(f["blocks"]) * f["blksize"] for f in head.values())  # holes
    assert ztestdb.diff_manifests(m, ztestdb.read_manifest(str(out))) == []
    r = subprocess.run([zgen, str(out)], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "exists (use --force" in r.stderr


def test_gen_demo_big(tmp_path):
    """wcfs-zgen --big SIZE: the demo dataset and zfbig, SIZE bytes in whole 2 MiB
    ZBlk0 blocks, committed first; --big goes with the demo dataset only."""
    out = str(tmp_path / "demo.fs")
    r = subprocess.run([sys.executable, "-m", "ztestdb", "gen", out, "--big", "5M"],
                       env=toolkit_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    m = zm.load_manifest(str(tmp_path / "demo.json"))
    assert len(m["transactions"]) == 7
    assert set(m["transactions"][1]["files"]) == {"zfbig"}
    big = m["transactions"][-1]["files"]["zfbig"]
    assert big["size"] == 6 * MiB and big["blksize"] == 2 * MiB and len(big["blocks"]) == 3
    assert {b["fmt"] for b in big["blocks"].values()} == {"ZBlk0"}
    assert ztestdb.diff_manifests(m, ztestdb.read_manifest(out)) == []
    r = subprocess.run([sys.executable, "-m", "ztestdb", "gen", str(tmp_path / "x.fs"), "--big", "5M",
                        "--files", "2"], env=toolkit_env(), capture_output=True, text=True)
    assert r.returncode == 2 and "--big adds a file to the demo dataset" in r.stderr


def test_gen_options(tmp_path):
    out = str(tmp_path / "g.fs")
    r = subprocess.run([sys.executable, "-m", "ztestdb", "gen", out, "--files", "2",
                        "--size", "1M", "--blksize", "64K", "--fmt", "mixed", "--history", "8",
                        "--holes", "0.2", "--seed", "5", "--progress"],
                       env=toolkit_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "blocks" in r.stderr and "MiB" in r.stderr      # progress lines
    m = zm.load_manifest(str(tmp_path / "g.json"))
    assert len(m["transactions"]) == 1 + 2 + 8
    assert set(m["files"]) == {"zf0", "zf1"}
    assert ztestdb.diff_manifests(m, ztestdb.read_manifest(out)) == []
    r = subprocess.run([sys.executable, "-m", "ztestdb", "gen", out, "--size", "x"],
                       env=toolkit_env(), capture_output=True, text=True)
    assert r.returncode == 2 and "invalid size 'x'" in r.stderr


def test_parse_size():
    from ztestdb.gen import parse_size
    assert parse_size("4096") == 4096
    assert parse_size("64K") == parse_size("64KiB") == 64 * KiB
    assert parse_size("2m") == 2 * MiB and parse_size("1G") == 1 << 30
