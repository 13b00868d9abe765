"""ztestdb: ZODB test and demo databases for WCFS, written by genuine ZODB.

Test/demo tooling of the WCFS project (not part of ``wendelin.wcfs``). Databases hold
ZBigFiles with wendelin.core's persistent layout (:mod:`wendelin.bigfile.file_zodb`),
and the toolkit reports what every file holds at every revision as a manifest in the
format of ``../shared/testdata/zodb/small.json`` (see :mod:`ztestdb.manifest`)::

    import ztestdb
    with ztestdb.Database.create("/tmp/x/1.fs") as db:
        db.create_file("zf", blksize=64 * ztestdb.KiB, fmt="ZBlk1")
        db.write_block("zf", 0, b"hello")
        tid = db.commit("t1")              # '03f5...' (16 hex)
        db.write_manifest("/tmp/x/1.json")

Entry points: ``python -m ztestdb serve DB`` (JSON lines for Go tests, see
:mod:`ztestdb.serve`), ``python -m ztestdb gen OUT.fs`` (demo/benchmark databases,
see :mod:`ztestdb.gen`), ``python -m ztestdb manifest DB`` (read a database back).
"""

import os as _os
import sys as _sys

try:
    import wendelin.bigfile.file_zodb as _fz  # noqa: F401
except ImportError:  # tools/pylib is not on sys.path: the classes live beside us
    _sys.path.insert(0, _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))))
    import wendelin.bigfile.file_zodb as _fz  # noqa: F401

from .database import FORMATS, KiB, MiB, Database, ZTestDBError
from .manifest import (HASH_LIMIT, ManifestError, diff_manifests, dump_manifest,
                       load_manifest, normalize, read_manifest)
from .storage import ZURLError, open_storage, parse_zurl, storage_zurl

__all__ = [
    "Database", "ZTestDBError", "FORMATS", "KiB", "MiB",
    "read_manifest", "load_manifest", "dump_manifest", "diff_manifests", "normalize",
    "ManifestError", "HASH_LIMIT",
    "open_storage", "parse_zurl", "storage_zurl", "ZURLError",
]
