"""Manifests: the expected content of every ZBigFile at every revision.

The format is the one of ``../shared/testdata/zodb/small.json``
(``wendelin-zbigfile-fixture/1``)::

    {
     "format": "wendelin-zbigfile-fixture/1",
     "storage": ..., "generator": ..., "semantics": {...},
     "root_oid": "0000000000000000",
     "head": "<tid>",
     "files": {NAME: {"oid", "root_key", "blksize"}},      # last known identity
     "transactions": [
       {"tid", "description", "changed_files": [NAME...],
        "files": {NAME: {"size", "sha256",
                         "blocks": {"<blk>": {"fmt", "oid", "datalen", "sha256"}},
                         "oid", "blksize"}}}],
     "dataset": NAME
    }

Manifests written by this toolkit add ``oid`` and ``blksize`` to every file entry of
every transaction, because a file can change identity (deleted and created again) or
block size (epochs). Readers fill them from the top-level ``files`` when absent (as in
small.json): see :func:`normalize`.

:func:`read_manifest` computes a manifest by reading a database back through ZODB at
every transaction; :class:`ztestdb.Database` records one while it commits.
"""

import hashlib
import json

import ZODB
from BTrees.IOBTree import IOBTree
from BTrees.LOBTree import LOBTree

from wendelin.bigfile.file_zodb import ZBigFile, ZBlk0, ZBlk1, zblk_fmt

__all__ = [
    "FORMAT", "SEMANTICS", "HASH_LIMIT", "Block", "file_state", "new_manifest",
    "read_manifest", "read_history", "normalize", "diff_manifests",
    "load_manifest", "dump_manifest", "ManifestError",
]

FORMAT = "wendelin-zbigfile-fixture/1"
SEMANTICS = {
    "size": "(max(blktab)+1)*blksize, 0 if blktab empty (as wcfs)",
    "sha256": "sha256 of the whole file data of size bytes; holes and block tails read "
              "as zeros; state right after txn tid (= DB.open(at=tid)); null when the "
              "file is larger than the generator's hash limit",
    "files": "only files that exist (reachable from root) at that tid",
    "blocks": "only blocks present in blktab: fmt=ZBlk0|ZBlk1, oid of ZBlk, "
              "datalen=len(data.rstrip(0)), sha256 of the blksize-padded block",
    "file_identity": "every file entry also gives the ZBigFile oid and blksize as of "
                     "that tid (absent in older fixtures: take them from files)",
    "changed_files": "files whose objects (ZBigFile, blktab nodes, ZBlk, ZBlk1 chunks) "
                     "were modified by the transaction, or that appeared or disappeared",
}

# files larger than this get "sha256": null (hashing terabytes of holes is pointless)
HASH_LIMIT = 16 << 30

ROOT_OID = "0000000000000000"


class ManifestError(ValueError):
    """A manifest, or a database read back for one, is inconsistent."""


_zeros = {}


def _zero(n):
    """A read-only buffer of n zero bytes (cached per size)."""
    z = _zeros.get(n)
    if z is None:
        if len(_zeros) > 8:
            _zeros.clear()
        z = _zeros[n] = memoryview(bytes(n))
    return z


class Block:
    """One block present in blktab: format, ZBlk oid (hex) and data (zeros stripped).

    Immutable; the sha256 of the blksize-padded block and the manifest entry are
    computed once (entries are shared between the transactions that have them).
    """

    __slots__ = ("fmt", "oid", "data", "_sha", "_entry", "_blksize")

    def __init__(self, fmt, oid, data):
        self.fmt = fmt
        self.oid = oid
        self.data = data
        self._sha = self._entry = self._blksize = None

    def with_identity(self, fmt, oid):
        """The same data under another format/oid (keeps the cached hash)."""
        b = Block(fmt, oid, self.data)
        b._sha, b._blksize = self._sha, self._blksize
        return b

    def sha256(self, blksize):
        if self._sha is None or self._blksize != blksize:
            h = hashlib.sha256(self.data)
            h.update(_zero(blksize)[:blksize - len(self.data)])
            self._sha, self._entry, self._blksize = h.hexdigest(), None, blksize
        return self._sha

    def entry(self, blksize):
        """The block's manifest entry {fmt, oid, datalen, sha256}."""
        sha = self.sha256(blksize)
        if self._entry is None:
            self._entry = {"fmt": self.fmt, "oid": self.oid, "datalen": len(self.data),
                           "sha256": sha}
        return self._entry

    def __repr__(self):
        return "Block(%s, %s, %d bytes)" % (self.fmt, self.oid, len(self.data))


class FileHasher:
    """Incremental sha256 of a file's content across revisions.

    Keeps the hash state after every present block, so that hashing the next
    revision of the same file resumes at its first changed block (appends and
    changes near the end cost what they change).
    """

    def __init__(self):
        self.blksize = None
        self.keys = []      # present blocks hashed, ascending
        self.datas = []     # their data objects (compared by identity)
        self.states = []    # hash state after each of them (holes before it included)

    def sha256(self, blksize, blocks):
        keys = sorted(blocks)
        i = 0
        if blksize == self.blksize:
            n = min(len(keys), len(self.keys))
            while i < n and self.keys[i] == keys[i] and self.datas[i] is blocks[keys[i]].data:
                i += 1
        self.blksize = blksize
        del self.keys[i:], self.datas[i:], self.states[i:]
        h = self.states[i - 1].copy() if i else hashlib.sha256()
        nxt = keys[i - 1] + 1 if i else 0
        zero = _zero(blksize)
        for blk in keys[i:]:
            for _ in range(blk - nxt):
                h.update(zero)
            data = blocks[blk].data
            h.update(data)
            h.update(zero[:blksize - len(data)])
            nxt = blk + 1
            self.keys.append(blk)
            self.datas.append(data)
            self.states.append(h.copy())
        return h.hexdigest()


def file_state(oid, blksize, blocks, *, hash_limit=HASH_LIMIT, hasher=None):
    """Manifest entry of a file: blocks maps blk (int) -> Block.

    hasher (a FileHasher of this file) makes hashing incremental across calls.
    """
    keys = sorted(blocks)
    size = (keys[-1] + 1) * blksize if keys else 0
    sha = None
    if size <= hash_limit:
        sha = (hasher or FileHasher()).sha256(blksize, blocks)
    return {
        "size": size,
        "sha256": sha,
        "blocks": {str(blk): blocks[blk].entry(blksize) for blk in keys},
        "oid": oid,
        "blksize": blksize,
    }


def new_manifest(storage, generator, dataset=None):
    """An empty manifest (transactions are appended by the caller)."""
    return {
        "format": FORMAT,
        "storage": storage,
        "generator": generator,
        "semantics": dict(SEMANTICS),
        "root_oid": ROOT_OID,
        "head": None,
        "files": {},
        "transactions": [],
        "dataset": dataset,
    }


def generator_name():
    import ZODB as _z
    try:
        from importlib.metadata import version
        zv = version("ZODB")
    except Exception:  # pragma: no cover - metadata missing
        zv = getattr(_z, "__version__", "?")
    return ("ztestdb (genuine ZODB %s, pickle protocol 3, classes "
            "wendelin.bigfile.file_zodb.*)" % zv)


# ---- reading a database back ----

def _hex(oid):
    return oid.hex()


def btree_oids(tree):
    """Oids of all nodes of a BTree (interior trees and buckets, not values)."""
    out = []
    todo = [tree]
    tree_type = type(tree)
    while todo:
        node = todo.pop()
        if node._p_oid is not None:
            out.append(node._p_oid)
        state = node.__getstate__()
        if state is None:
            continue
        children = state[0]
        if len(state) == 1 and len(children) == 1 and isinstance(children[0], tuple):
            continue  # single bucket stored inline in the tree's own record
        for child in children[::2]:
            if isinstance(child, tree_type):
                todo.append(child)
            elif child._p_oid is not None:
                out.append(child._p_oid)
    return out


def read_file(zfile, *, tid=None, with_oids=False):
    """Read a ZBigFile's blocks: returns (blksize, {blk: Block}, oids).

    oids (only when with_oids) is the set of every object the file's content
    depends on: the ZBigFile, blktab nodes, ZBlks, ZBlk1 chunk tables and ZData.
    """
    where = "ZBigFile %s%s" % (_hex(zfile._p_oid), "" if tid is None else " @" + tid)
    blksize = zfile.blksize
    blktab = zfile.blktab
    if not isinstance(blksize, int) or blksize <= 0:
        raise ManifestError("%s: invalid blksize %r" % (where, blksize))
    if not isinstance(blktab, LOBTree):
        raise ManifestError("%s: blktab is %s, not LOBTree" % (where, type(blktab).__name__))
    oids = set()
    if with_oids:
        oids.add(zfile._p_oid)
        oids.update(btree_oids(blktab))
    blocks = {}
    for blk, zblk in blktab.items():
        if not isinstance(zblk, (ZBlk0, ZBlk1)):
            raise ManifestError("%s: blk %d: %s is %s.%s, not a ZBlk" % (
                where, blk, _hex(zblk._p_oid), type(zblk).__module__, type(zblk).__name__))
        data = zblk.loadblkdata()
        if len(data) > blksize:
            raise ManifestError("%s: blk %d: %s holds %d bytes > blksize %d"
                                % (where, blk, _hex(zblk._p_oid), len(data), blksize))
        if with_oids:
            oids.add(zblk._p_oid)
            if isinstance(zblk, ZBlk1):
                chunktab = zblk.chunktab
                if not isinstance(chunktab, IOBTree):
                    raise ManifestError("%s: blk %d: ZBlk1 %s: chunktab is %s, not IOBTree"
                                        % (where, blk, _hex(zblk._p_oid),
                                           type(chunktab).__name__))
                oids.update(btree_oids(chunktab))
                oids.update(z._p_oid for z in chunktab.values())
        blocks[blk] = Block(zblk_fmt(zblk), _hex(zblk._p_oid), data.rstrip(b"\0"))
        zblk._p_deactivate()
    return blksize, blocks, oids


def read_history(db, storage, *, start=None, hash_limit=HASH_LIMIT):
    """Yield one manifest transaction entry per transaction of storage.

    db is a ZODB.DB over storage (historical connections are used). start: first
    tid (bytes or hex) to report; changed_files of that first entry is computed
    without knowing the state before it.
    """
    if isinstance(start, str):
        start = bytes.fromhex(start)
    prev = {}   # name -> (zfile oid, oids, state)
    for txn in storage.iterator(start):
        tid = txn.tid
        tidhex = tid.hex()
        oids = {rec.oid for rec in txn}
        conn = db.open(at=tid)
        try:
            root = conn.root()
            cur = {}
            changed = []
            for name, obj in root.items():
                if not isinstance(obj, ZBigFile):
                    continue
                p = prev.get(name)
                if p is not None and p[0] == obj._p_oid and not (p[1] & oids):
                    cur[name] = p
                    continue
                blksize, blocks, foids = read_file(obj, tid=tidhex, with_oids=True)
                state = file_state(_hex(obj._p_oid), blksize, blocks, hash_limit=hash_limit)
                cur[name] = (obj._p_oid, foids, state)
                if p is not None or start is None or (foids & oids):
                    changed.append(name)
            changed.extend(name for name in prev if name not in cur)
        finally:
            conn.close()
        desc = txn.description
        if isinstance(desc, bytes):
            desc = desc.decode("utf-8", "replace")
        yield {
            "tid": tidhex,
            "description": desc,
            "changed_files": changed,
            "files": {name: v[2] for name, v in cur.items()},
        }
        prev = cur
        start = None


def manifest_from_history(transactions, *, storage, generator, dataset=None):
    """Assemble a manifest from transaction entries (fills head and files)."""
    m = new_manifest(storage, generator, dataset)
    for t in transactions:
        m["transactions"].append(t)
        for name, st in t["files"].items():
            m["files"][name] = {"oid": st["oid"], "root_key": name, "blksize": st["blksize"]}
    if m["transactions"]:
        m["head"] = m["transactions"][-1]["tid"]
    return m


def read_manifest(zurl, *, dataset=None, start=None, hash_limit=HASH_LIMIT):
    """Compute the manifest of the database at zurl by reading it back through ZODB.

    Opens the storage read-only; every transaction (from start, a tid) is
    reported with the state of every file as of that transaction.
    """
    from .storage import open_storage, parse_zurl
    storage = open_storage(zurl, read_only=True)
    db = ZODB.DB(storage)
    try:
        kind, addr, _ = parse_zurl(zurl)
        name = addr.rsplit("/", 1)[-1] if kind == "file" else str(zurl)
        return manifest_from_history(
            list(read_history(db, storage, start=start, hash_limit=hash_limit)),
            storage=name, generator=generator_name() + " read back", dataset=dataset)
    finally:
        db.close()


# ---- reading, writing and comparing manifests ----

def load_manifest(path):
    """Load a manifest file and check it is of the supported format."""
    with open(path, "rb") as f:
        m = json.load(f)
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise ManifestError("%s: not a %s manifest" % (path, FORMAT))
    return m


def dump_manifest(manifest, path):
    """Write a manifest as indented JSON (like small.json)."""
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


def normalize(manifest):
    """A copy of manifest where every file entry has its oid and blksize."""
    files = manifest.get("files", {})
    out = dict(manifest)
    out["transactions"] = []
    for t in manifest["transactions"]:
        t2 = dict(t)
        t2["files"] = {}
        for name, st in t["files"].items():
            st2 = dict(st)
            if "oid" not in st2 or "blksize" not in st2:
                if name not in files:
                    raise ManifestError("tid %s: file %s has no oid/blksize and is not in "
                                        "files" % (t["tid"], name))
                st2.setdefault("oid", files[name]["oid"])
                st2.setdefault("blksize", files[name]["blksize"])
            t2["files"][name] = st2
        out["transactions"].append(t2)
    return out


def diff_manifests(a, b, *, descriptions=True):
    """Differences between manifests a and b as human-readable strings.

    Compares transactions (tids, descriptions unless descriptions=False,
    changed_files as sets) and every file state; [] means they agree.
    """
    a, b = normalize(a), normalize(b)
    out = []
    ta, tb = a["transactions"], b["transactions"]
    if [t["tid"] for t in ta] != [t["tid"] for t in tb]:
        out.append("tids differ: %s vs %s" % ([t["tid"] for t in ta], [t["tid"] for t in tb]))
        return out
    for x, y in zip(ta, tb):
        tid = x["tid"]
        if descriptions and x["description"] != y["description"]:
            out.append("@%s: description %r vs %r" % (tid, x["description"], y["description"]))
        if set(x["changed_files"]) != set(y["changed_files"]):
            out.append("@%s: changed_files %s vs %s"
                       % (tid, sorted(x["changed_files"]), sorted(y["changed_files"])))
        if set(x["files"]) != set(y["files"]):
            out.append("@%s: files %s vs %s" % (tid, sorted(x["files"]), sorted(y["files"])))
        for name in sorted(set(x["files"]) & set(y["files"])):
            fx, fy = x["files"][name], y["files"][name]
            for key in ("oid", "blksize", "size", "sha256"):
                if fx[key] != fy[key]:
                    out.append("@%s: %s: %s %r vs %r" % (tid, name, key, fx[key], fy[key]))
            bx, by = fx["blocks"], fy["blocks"]
            if set(bx) != set(by):
                out.append("@%s: %s: blocks %s vs %s" % (tid, name, sorted(bx, key=int),
                                                         sorted(by, key=int)))
            for blk in sorted(set(bx) & set(by), key=int):
                if bx[blk] != by[blk]:
                    out.append("@%s: %s: blk %s: %s vs %s" % (tid, name, blk, bx[blk], by[blk]))
    if a.get("head") != b.get("head"):
        out.append("head %s vs %s" % (a.get("head"), b.get("head")))
    return out
