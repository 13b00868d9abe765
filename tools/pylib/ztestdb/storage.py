"""Open ZODB storages by zurl: FileStorage paths and ZEO servers.

Accepted forms (the writer side of WCFS spec 4.4)::

    /abs/or/rel/path.fs             FileStorage
    file:///abs/path.fs             FileStorage
    zeo://host:port[?storage=NAME]  ZEO ClientStorage over TCP (NAME defaults to "1")
    zeo://[ipv6]:port[?storage=NAME]
    zeo:///path/to/socket[?storage=NAME]   ZEO over a unix socket
"""

import os
import urllib.parse

__all__ = ["ZURLError", "parse_zurl", "open_storage", "storage_zurl"]

ZEO_WAIT_TIMEOUT = 30.0   # seconds to wait for a ZEO server to answer


class ZURLError(ValueError):
    """A zurl that the toolkit cannot open."""


def parse_zurl(zurl):
    """Split zurl into (kind, address, options).

    kind is 'file' (address = absolute path) or 'zeo' (address = (host, port) or a
    unix socket path); options is a dict (ZEO: 'storage').
    """
    if not isinstance(zurl, (str, os.PathLike)):
        raise ZURLError("zurl must be a string, not %r" % (zurl,))
    zurl = os.fspath(zurl)
    if not zurl:
        raise ZURLError("empty zurl")
    if "://" not in zurl:
        return "file", os.path.abspath(zurl), {}
    u = urllib.parse.urlsplit(zurl)
    if u.scheme == "file":
        if u.netloc not in ("", "localhost"):
            raise ZURLError("%s: file:// zurl with host %r" % (zurl, u.netloc))
        if not u.path:
            raise ZURLError("%s: no path" % zurl)
        return "file", os.path.abspath(urllib.parse.unquote(u.path)), {}
    if u.scheme == "zeo":
        query = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        unknown = set(query) - {"storage"}
        if unknown:
            raise ZURLError("%s: unknown zeo option(s) %s" % (zurl, ", ".join(sorted(unknown))))
        opts = {"storage": query.get("storage", ["1"])[-1] or "1"}
        if u.netloc:
            try:
                host, port = u.hostname, u.port
            except ValueError as e:
                raise ZURLError("%s: %s" % (zurl, e)) from None
            if not host or port is None:
                raise ZURLError("%s: want zeo://host:port" % zurl)
            if u.path not in ("", "/"):
                raise ZURLError("%s: unexpected path %r after host:port" % (zurl, u.path))
            return "zeo", (host, port), opts
        if not u.path:
            raise ZURLError("%s: want zeo://host:port or zeo:///unix/socket" % zurl)
        return "zeo", u.path, opts
    raise ZURLError("%s: unsupported scheme %r (want a path, file:// or zeo://)"
                    % (zurl, u.scheme))


def storage_zurl(zurl):
    """Normal form of zurl as WCFS users would pass it (file:// for FileStorage)."""
    kind, addr, opts = parse_zurl(zurl)
    if kind == "file":
        return "file://" + addr
    if isinstance(addr, tuple):
        host, port = addr
        where = "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)
    else:
        where = addr
    q = "" if opts["storage"] == "1" else "?storage=" + urllib.parse.quote(opts["storage"])
    return "zeo://" + where + q


def open_storage(zurl, *, read_only=False, create=False):
    """Open the storage named by zurl.

    FileStorage: the file must exist unless create is true; create makes a new,
    empty file (and fails if one exists). ZEO: connects and waits up to
    ZEO_WAIT_TIMEOUT seconds for the server.
    """
    kind, addr, opts = parse_zurl(zurl)
    if kind == "file":
        from ZODB.FileStorage import FileStorage
        exists = os.path.exists(addr)
        if create and exists:
            raise FileExistsError("%s: database already exists" % addr)
        if not create and not exists:
            raise FileNotFoundError("%s: no such database" % addr)
        if create and read_only:
            raise ZURLError("%s: cannot create a database read-only" % addr)
        return FileStorage(addr, read_only=read_only, create=create)
    if create:
        raise ZURLError("%s: the toolkit cannot create ZEO storages (start a ZEO server "
                        "on a FileStorage instead)" % zurl)
    from ZEO.ClientStorage import ClientStorage
    try:
        return ClientStorage(addr, storage=opts["storage"], read_only=read_only,
                             wait_timeout=ZEO_WAIT_TIMEOUT)
    except Exception as e:
        raise ConnectionError("%s: cannot connect to ZEO server: %s" % (zurl, e)) from e
