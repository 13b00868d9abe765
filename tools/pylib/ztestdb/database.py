"""Database: write ZBigFiles with genuine ZODB and record what every revision holds."""

import logging
import os

import transaction
import ZODB
from persistent.mapping import PersistentMapping
from BTrees.LOBTree import LOBTree

from wendelin.bigfile.file_zodb import ZBigFile, zblk_fmt
from . import manifest as _m
from .storage import open_storage, parse_zurl, storage_zurl

__all__ = ["Database", "ZTestDBError", "FORMATS", "KiB", "MiB"]

log = logging.getLogger("wcfs.ztestdb")

KiB = 1 << 10
MiB = 1 << 20

# block formats a writer can ask for; "ZBlk" writes the legacy class name
FORMATS = ("ZBlk0", "ZBlk1", "auto", "ZBlk")


class ZTestDBError(Exception):
    """A request the toolkit cannot honour (names the file/block and why)."""


class _File:
    """Model of one ZBigFile: identity, default write format and blocks."""

    __slots__ = ("name", "zfile", "oid", "blksize", "fmt", "blocks")

    def __init__(self, name, zfile, oid, blksize, fmt, blocks):
        self.name = name
        self.zfile = zfile
        self.oid = oid
        self.blksize = blksize
        self.fmt = fmt
        self.blocks = blocks   # blk -> manifest.Block

    def copy(self):
        return _File(self.name, self.zfile, self.oid, self.blksize, self.fmt,
                     dict(self.blocks))


def _check_fmt(fmt, *, allow_none=True):
    if fmt is None and allow_none:
        return None
    if fmt not in FORMATS:
        raise ZTestDBError("unknown block format %r: want one of %s" % (fmt, ", ".join(FORMATS)))
    return fmt


def _check_blk(blk):
    if not isinstance(blk, int) or isinstance(blk, bool) or blk < 0 or blk >= 1 << 63:
        raise ZTestDBError("block number must be an int in [0, 2^63), not %r" % (blk,))
    return blk


def _check_blksize(blksize):
    if not isinstance(blksize, int) or isinstance(blksize, bool) or blksize <= 0:
        raise ZTestDBError("blksize must be a positive int, not %r" % (blksize,))
    return blksize


def _bytes(data):
    if isinstance(data, str):
        raise ZTestDBError("block data must be bytes, not str")
    return bytes(data)


class Database:
    """A ZODB database written by genuine ZODB, with the expected content of its files.

    Use :meth:`create` or :meth:`open`; then change files and :meth:`commit`. Every
    change is applied to real persistent objects (wendelin.core's layout) and to a
    model of the expected content, so that :meth:`manifest` reports every file at
    every committed revision without reading the database back.

    Writes (:meth:`write`, :meth:`write_block`, :meth:`zero_block`, :meth:`set_format`)
    are like dirty pages in wendelin.core: they are stored into ZBlk objects at
    commit, in ascending block order per file, so that the 'auto' format sees the
    same history as wendelin.core's writer. Structural changes (delete blocks,
    blksize, blktab) first store pending writes of that file.

    Only this process must write to the database while it is open (a WCFS server
    may read it at the same time).
    """

    def __init__(self, storage, zurl, *, created, history=True, dataset=None,
                 hash_limit=_m.HASH_LIMIT, cache_size=20000):
        self.zurl = storage_zurl(zurl)
        kind, addr, _ = parse_zurl(zurl)
        self.path = addr if kind == "file" else None
        self.hash_limit = hash_limit
        self._storage = storage
        self._tm = transaction.TransactionManager()
        self._db = ZODB.DB(storage, cache_size=cache_size)
        self._conn = self._db.open(transaction_manager=self._tm)
        self._root = self._conn.root()
        self._closed = False

        self._files = {}       # name -> _File (working state, includes pending changes)
        self._pending = {}     # name -> {blk: (data, fmt)} writes not stored yet
        self._undo = {}        # name -> _File | None as of last commit (touched files)
        self._changed = {}     # names of files really changed in this transaction
        self._stored = {}      # name -> set of blks stored in this transaction
        self._states = {}      # name -> manifest entry as of head
        self._hashers = {}     # name -> manifest.FileHasher (incremental file hashes)

        name = os.path.basename(addr) if kind == "file" else self.zurl
        self._manifest = _m.new_manifest(name, _m.generator_name(), dataset)
        self._head = storage.lastTransaction().hex()

        if created:
            self._record_txn(self._head, self._describe(self._head), [])
        else:
            self._load_existing(history)

    # ---- opening and closing ----

    @classmethod
    def create(cls, zurl, **kw):
        """Create a new database (a FileStorage path or file:// zurl; must not exist)."""
        return cls(open_storage(zurl, create=True), zurl, created=True, **kw)

    @classmethod
    def open(cls, zurl, *, create=False, history=True, **kw):
        """Open an existing database (path, file:// or zeo://).

        The model starts from the database's current content. history=True reads
        every past transaction back so that the manifest covers them too; False
        reports only the current head and what is committed from now on.
        create=True creates a FileStorage that does not exist yet.
        """
        kind, addr, _ = parse_zurl(zurl)
        if create and kind == "file" and not os.path.exists(addr):
            return cls.create(zurl, **kw)
        return cls(open_storage(zurl), zurl, created=False, history=history, **kw)

    def close(self):
        """Abort uncommitted changes and close the database (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._tm.abort()
        finally:
            try:
                self._conn.close()
            finally:
                self._db.close()
                if self.path is not None:
                    # FileStorage keeps its commit buffer (as big as the largest
                    # transaction) in PATH.tmp; it is recreated on open
                    try:
                        os.unlink(self.path + ".tmp")
                    except FileNotFoundError:
                        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _check_open(self):
        if self._closed:
            raise ZTestDBError("%s: database is closed" % self.zurl)

    # ---- files ----

    def files(self):
        """Names of the ZBigFiles (including uncommitted changes)."""
        return list(self._files)

    def _file(self, name):
        self._check_open()
        f = self._files.get(name)
        if f is None:
            raise ZTestDBError("%s: no such ZBigFile" % (name,))
        return f

    def _touch(self, name):
        """Remember the committed model of name before its first change."""
        if name not in self._undo:
            f = self._files.get(name)
            self._undo[name] = f.copy() if f is not None else None

    def create_file(self, name, blksize=2 * MiB, fmt="ZBlk0"):
        """Create an empty ZBigFile at root[name]; returns its oid (16 hex).

        fmt is the format used for this file's writes that do not give one.
        """
        self._check_open()
        if not isinstance(name, str) or not name:
            raise ZTestDBError("file name must be a non-empty string, not %r" % (name,))
        _check_blksize(blksize)
        _check_fmt(fmt, allow_none=False)
        if name in self._root:
            raise ZTestDBError("%s: root already has an object with that name" % name)
        self._touch(name)
        zfile = ZBigFile(blksize)
        self._root[name] = zfile
        self._conn.add(zfile)   # allocate the oid now so that callers know it
        oid = zfile._p_oid.hex()
        self._files[name] = _File(name, zfile, oid, blksize, fmt, {})
        self._changed[name] = True
        return oid

    def delete_file(self, name):
        """Remove root[name] (the ZBigFile becomes unreachable)."""
        self._file(name)
        self._touch(name)
        self._pending.pop(name, None)
        del self._root[name]
        del self._files[name]
        self._changed[name] = True

    def set_default_format(self, name, fmt):
        """Change the format used for name's writes that do not give one."""
        _check_fmt(fmt, allow_none=False)
        self._file(name).fmt = fmt

    # ---- block writes (stored at commit) ----

    def _pend(self, f, blk, data, fmt):
        self._touch(f.name)
        data = data.rstrip(b"\0")
        self._pending.setdefault(f.name, {})[blk] = (data, fmt)
        old = f.blocks.get(blk)
        f.blocks[blk] = _m.Block(old.fmt if old else None, old.oid if old else None, data)

    def write_block(self, name, blk, data, fmt=None):
        """Set the whole content of block blk (data is zero-padded to blksize)."""
        f = self._file(name)
        _check_blk(blk)
        _check_fmt(fmt)
        data = _bytes(data)
        if len(data) > f.blksize:
            raise ZTestDBError("%s: blk %d: %d bytes > blksize %d"
                               % (name, blk, len(data), f.blksize))
        self._pend(f, blk, data, fmt)

    def zero_block(self, name, blk, fmt=None):
        """Store zeros as block blk (the block stays in blktab, with no data)."""
        self.write_block(name, blk, b"", fmt)

    def write(self, name, offset, data, fmt=None):
        """Write data at byte offset (read-modify-write of the blocks it covers)."""
        f = self._file(name)
        _check_fmt(fmt)
        data = _bytes(data)
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ZTestDBError("%s: offset must be an int >= 0, not %r" % (name, offset))
        bs = f.blksize
        pos, end = offset, offset + len(data)
        while pos < end:
            blk, boff = divmod(pos, bs)
            n = min(bs - boff, end - pos)
            old = f.blocks.get(blk)
            buf = bytearray(old.data if old else b"")
            if len(buf) < boff + n:
                buf.extend(bytes(boff + n - len(buf)))
            buf[boff:boff + n] = data[pos - offset:pos - offset + n]
            self._pend(f, _check_blk(blk), bytes(buf), fmt)
            pos += n

    def set_format(self, name, blk, fmt):
        """Store block blk again in format fmt (a new ZBlk object if it differs)."""
        f = self._file(name)
        _check_fmt(fmt, allow_none=False)
        b = f.blocks.get(_check_blk(blk))
        if b is None:
            raise ZTestDBError("%s: blk %d is a hole: no format to change" % (name, blk))
        self._pend(f, blk, b.data, fmt)

    def _store(self, name, progress=None):
        """Store pending writes of name into ZBlk objects (ascending blk)."""
        pending = self._pending.pop(name, None)
        if not pending:
            return
        f = self._files[name]
        zfile = f.zfile
        stored = self._stored.setdefault(name, set())
        blks = sorted(pending)
        for i, blk in enumerate(blks):
            data, fmt = pending[blk]
            fmt = fmt or f.fmt
            if fmt == "auto" and blk in stored:
                # wendelin.core stores a block once per transaction; a second store
                # keeps the format chosen by the first one
                zblk = zfile.blktab.get(blk)
                fmt = zblk_fmt(zblk) if zblk is not None else "auto"
            if zfile.storeblk(blk, data, fmt):
                self._changed[name] = True
            stored.add(blk)
            if progress is not None:
                progress(name, i + 1, len(blks), len(data))

    # ---- structural changes ----

    def delete_block(self, name, blk):
        """Delete blktab[blk]: the block becomes a hole (nothing to do for a hole)."""
        self.punch_hole(name, _check_blk(blk), blk + 1)

    def punch_hole(self, name, lo, hi):
        """Delete every blktab entry in [lo, hi): those blocks read as zeros."""
        f = self._file(name)
        _check_blk(lo)
        if not isinstance(hi, int) or hi < lo:
            raise ZTestDBError("%s: bad block range [%r, %r)" % (name, lo, hi))
        doomed = [k for k in f.blocks if lo <= k < hi]
        if not doomed:
            return
        self._touch(name)
        self._store(name)
        blktab = f.zfile.blktab
        for blk in doomed:
            del blktab[blk]
            del f.blocks[blk]
            self._changed[name] = True

    def truncate(self, name, nblk):
        """Delete every block >= nblk (the file shrinks to the last block left)."""
        self.punch_hole(name, _check_blk(nblk), 1 << 63)

    def set_blksize(self, name, blksize):
        """Change the ZBigFile's blksize (an epoch); blocks keep their data.

        Every block's data must fit the new size.
        """
        f = self._file(name)
        _check_blksize(blksize)
        for blk, b in f.blocks.items():
            if len(b.data) > blksize:
                raise ZTestDBError("%s: blk %d holds %d bytes > new blksize %d"
                                   % (name, blk, len(b.data), blksize))
        self._touch(name)
        self._store(name)
        f.zfile.blksize = blksize
        f.blksize = blksize
        self._changed[name] = True

    def replace_blktab(self, name, keep_blocks=True):
        """Give the ZBigFile a new blktab object (an epoch).

        keep_blocks: the new LOBTree maps the same ZBlk objects (same content);
        otherwise it is empty (the file becomes empty).
        """
        f = self._file(name)
        self._touch(name)
        self._store(name)
        tab = LOBTree()
        if keep_blocks:
            tab.update(f.zfile.blktab)
        else:
            f.blocks.clear()
        f.zfile.blktab = tab
        self._changed[name] = True

    # ---- other objects ----

    def set_object(self, key, value):
        """Set root[key] to a PersistentMapping {'value': value} (not a ZBigFile).

        The object is created if absent, else changed. Returns its oid if known.
        """
        self._check_open()
        obj = self._root.get(key)
        if isinstance(obj, ZBigFile) or key in self._files:
            raise ZTestDBError("%s: is a ZBigFile, not a plain object" % (key,))
        if obj is None:
            obj = self._root[key] = PersistentMapping()
            self._conn.add(obj)
        elif not isinstance(obj, PersistentMapping):
            raise ZTestDBError("%s: is a %s, not an object made by set_object"
                               % (key, type(obj).__name__))
        obj["value"] = value
        return obj._p_oid.hex()

    def get_object(self, key):
        """Value stored by set_object (KeyError if absent)."""
        return self._root[key]["value"]

    # ---- transactions ----

    @property
    def head(self):
        """Tid (16 hex) of the last committed transaction."""
        return self._head

    def commit(self, description="", *, progress=None):
        """Commit pending changes; returns the new tid (16 hex), None if nothing changed.

        progress(name, done, total, nbytes) is called after every stored block.
        """
        self._check_open()
        try:
            for name in list(self._pending):
                self._store(name, progress)
            txn = self._tm.get()
            if description:
                txn.note(description)
            self._tm.commit()
        except BaseException:
            self.abort()
            raise
        tid = self._storage.lastTransaction().hex()
        if tid == self._head:
            if self._changed:
                raise ZTestDBError("commit wrote no transaction although files %s changed"
                                   % list(self._changed))
            self._reset_txn()
            return None
        for name in self._undo:
            self._resync(name)
        # changed files in the order they were first touched in the transaction
        changed = [n for n in self._undo if n in self._changed]
        self._record_txn(tid, description, changed)
        log.debug("%s: committed %s %r: files changed: %s", self.zurl, tid, description, changed)
        self._reset_txn()
        self._conn.cacheGC()
        return tid

    def abort(self):
        """Discard uncommitted changes."""
        self._tm.abort()
        for name, f in self._undo.items():
            if f is None:
                self._files.pop(name, None)
            else:
                self._files[name] = f
        self._reset_txn()

    def _reset_txn(self):
        self._pending.clear()
        self._undo.clear()
        self._changed.clear()
        self._stored.clear()

    def _resync(self, name):
        """After commit: take formats and oids of name's blocks from the objects."""
        f = self._files.get(name)
        if f is None:
            return
        zfile = f.zfile
        f.oid = zfile._p_oid.hex()
        f.blksize = zfile.blksize
        blocks = {}
        for blk, zblk in zfile.blktab.items():
            b = f.blocks.get(blk)
            if b is None:
                raise ZTestDBError("internal error: %s: blk %d in blktab but not in the model"
                                   % (name, blk))
            fmt, oid = zblk_fmt(zblk), zblk._p_oid.hex()
            blocks[blk] = b if (b.fmt, b.oid) == (fmt, oid) else b.with_identity(fmt, oid)
        if len(blocks) != len(f.blocks):
            raise ZTestDBError("internal error: %s: model has blocks %s not in blktab"
                               % (name, sorted(set(f.blocks) - set(blocks))))
        f.blocks = blocks

    def _record_txn(self, tid, description, changed):
        files = {}
        for name, f in self._files.items():
            st = self._states.get(name)
            if st is None or name in self._undo or st["oid"] != f.oid:
                hasher = self._hashers.get(name)
                if hasher is None:
                    hasher = self._hashers[name] = _m.FileHasher()
                st = _m.file_state(f.oid, f.blksize, f.blocks, hash_limit=self.hash_limit,
                                   hasher=hasher)
            files[name] = st
            self._manifest["files"][name] = {"oid": f.oid, "root_key": name,
                                             "blksize": f.blksize}
        self._states = files
        for name in list(self._hashers):
            if name not in files:
                del self._hashers[name]
        self._manifest["transactions"].append({
            "tid": tid, "description": description, "changed_files": changed, "files": files,
        })
        self._manifest["head"] = tid
        self._head = tid

    def _describe(self, tid):
        """Description of transaction tid as stored."""
        for txn in self._storage.iterator(bytes.fromhex(tid), bytes.fromhex(tid)):
            d = txn.description
            return d.decode("utf-8", "replace") if isinstance(d, bytes) else d
        return ""

    def _load_existing(self, history):
        """Initialise the model (and manifest) from an existing database."""
        if history:
            txns = list(_m.read_history(self._db, self._storage, hash_limit=self.hash_limit))
        else:
            txns = list(_m.read_history(self._db, self._storage, start=self._head,
                                        hash_limit=self.hash_limit))
        for t in txns:
            self._manifest["transactions"].append(t)
            for name, st in t["files"].items():
                self._manifest["files"][name] = {"oid": st["oid"], "root_key": name,
                                                 "blksize": st["blksize"]}
        self._manifest["head"] = self._head
        for name, obj in self._root.items():
            if not isinstance(obj, ZBigFile):
                continue
            blksize, blocks, _ = _m.read_file(obj)
            fmt = "ZBlk0"
            if blocks:
                fmt = blocks[max(blocks)].fmt
            self._files[name] = _File(name, obj, obj._p_oid.hex(), blksize, fmt, blocks)
        self._states = dict(txns[-1]["files"]) if txns else {}

    # ---- expected content ----

    def read_block(self, name, blk):
        """Expected content of block blk (blksize bytes; includes uncommitted writes)."""
        f = self._file(name)
        b = f.blocks.get(_check_blk(blk))
        return (b.data if b else b"").ljust(f.blksize, b"\0")

    def read_file(self, name):
        """Expected content of the whole file (includes uncommitted writes)."""
        f = self._file(name)
        if not f.blocks:
            return b""
        return b"".join(self.read_block(name, blk) for blk in range(max(f.blocks) + 1))

    def file_info(self, name):
        """Committed state of name as a manifest entry plus 'name', 'fmt', 'blktab_oid'."""
        self._check_open()
        st = self._states.get(name)
        if st is None:
            raise ZTestDBError("%s: no such ZBigFile at head %s" % (name, self._head))
        f = self._files.get(name)
        info = dict(st)
        info["name"] = name
        if f is not None and f.oid == st["oid"]:
            info["fmt"] = f.fmt
            tab = f.zfile.blktab
            info["blktab_oid"] = tab._p_oid.hex() if tab._p_oid is not None else None
        return info

    def manifest(self):
        """The manifest of every committed revision (a dict in small.json's format).

        The returned dict is live: copy it if you keep it across commits.
        """
        return self._manifest

    def write_manifest(self, path):
        """Write the manifest as JSON to path."""
        _m.dump_manifest(self._manifest, path)

    def read_back_manifest(self, *, start=None):
        """The manifest computed by reading the database back at every transaction."""
        self._check_open()
        return _m.manifest_from_history(
            list(_m.read_history(self._db, self._storage, start=start,
                                 hash_limit=self.hash_limit)),
            storage=self._manifest["storage"], generator=self._manifest["generator"],
            dataset=self._manifest["dataset"])
