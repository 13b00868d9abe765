"""JSON-lines server: drive a :class:`ztestdb.Database` from another process.

``python -m ztestdb serve DB [--create] [--no-history] [--dataset NAME]``

DB is a FileStorage path, ``file://`` or ``zeo://`` zurl. ``--create`` makes a new
FileStorage (error if it exists); otherwise the database must exist and its history is
read back (``--no-history``: only its head) so that manifests cover it.

Protocol: one JSON object per line on stdin, one JSON object per line on stdout, in
order. The first line the server writes is a greeting::

    {"ok": true, "ready": true, "zurl": "file:///…/1.fs", "head": "<tid>", "pid": N}

or ``{"error": "..."}`` followed by exit status 1 if the database cannot be opened.
A request is ``{"op": NAME, ...arguments}`` with an optional ``"id"`` that is echoed.
The answer is ``{"ok": true, ...results}`` or ``{"error": "message"}``; an error
leaves the server running (uncommitted changes stay pending). tids and oids are 16
lowercase hex digits; block data is base64 (what Go's encoding/json does for []byte).

========================  =========================================  =======================
op                        arguments                                  results
========================  =========================================  =======================
ping                      -                                          -
create_file               name, blksize=2097152, fmt="ZBlk0"         oid
delete_file               name                                       -
write_block               name, blk, data, fmt=null                  -
write                     name, offset, data, fmt=null               -
zero_block                name, blk, fmt=null                        -
delete_block              name, blk                                  -
punch_hole                name, lo, hi                               -
truncate                  name, nblk                                 -
set_format                name, blk, fmt                             -
set_default_format        name, fmt                                  -
set_blksize               name, blksize                              -
replace_blktab            name, keep_blocks=true                     -
set_object                key, value (any JSON)                      oid
commit                    description=""                             tid (null: no change),
                                                                     changed_files
abort                     -                                          -
head                      -                                          tid
files                     -                                          files (names)
file                      name                                       file: manifest entry +
                                                                     name, fmt, blktab_oid
read_block                name, blk                                  data (expected content)
manifest                  path=null                                  manifest, or path
read_back                 path=null                                  manifest, or path
close                     -                                          - (then the server exits)
========================  =========================================  =======================

fmt is one of ZBlk0, ZBlk1, auto, ZBlk (legacy class name). Writes are stored into
ZBlk objects at commit (like wendelin.core's dirty pages). EOF on stdin closes the
database too.
"""

import argparse
import base64
import binascii
import json
import os
import sys

from .database import Database, MiB, ZTestDBError
from . import manifest as _manifest
from .storage import ZURLError

__all__ = ["serve", "main"]


class RequestError(Exception):
    """A malformed request (unknown op, missing or bad argument)."""


# errors whose message says it all (others are prefixed with their type)
_OWN_ERRORS = (RequestError, ZTestDBError, _manifest.ManifestError, ZURLError)


def _arg(req, key, default=RequestError, types=None):
    if key not in req:
        if default is RequestError:
            raise RequestError("missing argument %r" % key)
        return default
    v = req[key]
    if types is not None and (not isinstance(v, types) or (types is int and isinstance(v, bool))):
        want = types if isinstance(types, tuple) else (types,)
        raise RequestError("argument %r must be %s, not %r"
                           % (key, " or ".join(t.__name__ for t in want), v))
    return v


def _data(req, key="data"):
    v = _arg(req, key, types=str)
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError) as e:
        raise RequestError("argument %r is not valid base64: %s" % (key, e)) from None


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _manifest_result(m, req):
    path = _arg(req, "path", None, (str, type(None)))
    if path:
        _manifest.dump_manifest(m, path)
        return {"path": path}
    return {"manifest": m}


def _handlers():
    s, i, o = str, int, (str, type(None))
    return {
        "ping": lambda db, r: {},
        "create_file": lambda db, r: {"oid": db.create_file(
            _arg(r, "name", types=s), _arg(r, "blksize", 2 * MiB, i),
            _arg(r, "fmt", "ZBlk0", s))},
        "delete_file": lambda db, r: db.delete_file(_arg(r, "name", types=s)),
        "write_block": lambda db, r: db.write_block(
            _arg(r, "name", types=s), _arg(r, "blk", types=i), _data(r), _arg(r, "fmt", None, o)),
        "write": lambda db, r: db.write(
            _arg(r, "name", types=s), _arg(r, "offset", types=i), _data(r),
            _arg(r, "fmt", None, o)),
        "zero_block": lambda db, r: db.zero_block(
            _arg(r, "name", types=s), _arg(r, "blk", types=i), _arg(r, "fmt", None, o)),
        "delete_block": lambda db, r: db.delete_block(
            _arg(r, "name", types=s), _arg(r, "blk", types=i)),
        "punch_hole": lambda db, r: db.punch_hole(
            _arg(r, "name", types=s), _arg(r, "lo", types=i), _arg(r, "hi", types=i)),
        "truncate": lambda db, r: db.truncate(_arg(r, "name", types=s), _arg(r, "nblk", types=i)),
        "set_format": lambda db, r: db.set_format(
            _arg(r, "name", types=s), _arg(r, "blk", types=i), _arg(r, "fmt", types=s)),
        "set_default_format": lambda db, r: db.set_default_format(
            _arg(r, "name", types=s), _arg(r, "fmt", types=s)),
        "set_blksize": lambda db, r: db.set_blksize(
            _arg(r, "name", types=s), _arg(r, "blksize", types=i)),
        "replace_blktab": lambda db, r: db.replace_blktab(
            _arg(r, "name", types=s), _arg(r, "keep_blocks", True, bool)),
        "set_object": lambda db, r: {"oid": db.set_object(_arg(r, "key", types=s),
                                                          _arg(r, "value"))},
        "commit": _commit,
        "abort": lambda db, r: db.abort(),
        "head": lambda db, r: {"tid": db.head},
        "files": lambda db, r: {"files": db.files()},
        "file": lambda db, r: {"file": db.file_info(_arg(r, "name", types=s))},
        "read_block": lambda db, r: {"data": _b64(db.read_block(
            _arg(r, "name", types=s), _arg(r, "blk", types=i)))},
        "manifest": lambda db, r: _manifest_result(db.manifest(), r),
        "read_back": lambda db, r: _manifest_result(db.read_back_manifest(), r),
    }


def _commit(db, req):
    tid = db.commit(_arg(req, "description", "", str))
    changed = []
    if tid is not None:
        changed = db.manifest()["transactions"][-1]["changed_files"]
    return {"tid": tid, "changed_files": changed}


def serve(db, fin, fout):
    """Answer requests from fin (text lines) on fout until close or EOF."""
    handlers = _handlers()

    def reply(obj):
        fout.write(json.dumps(obj, separators=(",", ":")) + "\n")
        fout.flush()

    for line in fin:
        line = line.strip()
        if not line:
            continue
        rid = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise RequestError("request must be a JSON object")
            rid = req.get("id")
            op = req.get("op")
            if op == "close":
                db.close()
                reply(_with_id({"ok": True}, rid))
                return
            h = handlers.get(op)
            if h is None:
                raise RequestError("unknown op %r (known: %s)"
                                   % (op, ", ".join(sorted(list(handlers) + ["close"]))))
            res = h(db, req) or {}
            out = {"ok": True}
            out.update(res)
        except json.JSONDecodeError as e:
            out = {"error": "bad request line: %s" % e}
        except _OWN_ERRORS as e:
            out = {"error": str(e)}
        except Exception as e:  # every error is an answer; the server keeps going
            out = {"error": "%s: %s" % (type(e).__name__, e)}
        reply(_with_id(out, rid))


def _with_id(obj, rid):
    if rid is not None:
        obj["id"] = rid
    return obj


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m ztestdb serve",
                                description="JSON-lines server over a ztestdb Database "
                                            "(protocol: see ztestdb/serve.py)")
    p.add_argument("db", help="FileStorage path, file:// or zeo:// zurl")
    p.add_argument("--create", action="store_true", help="create a new FileStorage")
    p.add_argument("--no-history", action="store_true",
                   help="existing database: report only its head, not its history")
    p.add_argument("--dataset", default=None, help="dataset name put in manifests")
    args = p.parse_args(argv)

    # the protocol owns stdout: anything else printed goes to stderr
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout = sys.stderr
    try:
        if args.create:
            db = Database.create(args.db, dataset=args.dataset)
        else:
            db = Database.open(args.db, history=not args.no_history, dataset=args.dataset)
    except Exception as e:
        out.write(json.dumps({"error": "open %s: %s: %s" % (args.db, type(e).__name__, e)})
                  + "\n")
        out.flush()
        return 1
    try:
        out.write(json.dumps({"ok": True, "ready": True, "zurl": db.zurl, "head": db.head,
                              "pid": os.getpid()}) + "\n")
        out.flush()
        serve(db, sys.stdin, out)
    finally:
        db.close()
    return 0
