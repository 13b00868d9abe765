# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""wendelin.wcfs: start, join, check and stop WCFS servers.

WCFS is the FUSE filesystem of wendelin.core: it shows every ZBigFile of a
ZODB database as a file (``head/bigfile/<oid>``, ``@<rev>/bigfile/<oid>``).
There is one server per database, mounted at
``/dev/shm/wcfs/<sha1 of the normalized zurl>``.

- ``join(zurl)`` connects to the server of zurl and returns a `WCFS`, starting
  the server (with ``-autoexit``) if none runs and autostart allows it;
- ``start(zurl, *optv)`` starts a server and returns its `Server`;
- ``serve(zurl, optv)`` runs a server in the foreground;
- ``stop(zurl)`` / ``status(zurl)`` stop / check the server of zurl;
- ``python -m wcfs (serve|stop|status) [options] zurl`` is the command line.

This module keeps the API of wendelin.core's wcfs.py; the logic lives in Go
(gocore/gateway, bound with gopy). Differences from the reference: autostart is
decided at call time, a start lock makes concurrent joins start one server,
only mounts that are fuse.wcfs, owned by us and serving an equivalent zurl are
used, probing a mount never hangs, readiness is signalled by the server (no
polling), and stop escalates within a deadline. Blocking calls release the
GIL. In a child forked (without exec) from a process that imported this
module, calls into the Go runtime fail at once with a clear error.

Environment variables (read at the time of each call)
-----------------------------------------------------

  $WENDELIN_CORE_WCFS_AUTOSTART
      yes       join: start a server if none runs and join was not given
                autostart=  (default)
      no        join: don't start one unless asked with autostart=True

  $WENDELIN_CORE_WCFS_OPTIONS
      ""        serve/start/join: options for the server, before the others

  $WENDELIN_CORE_WCFS_START_TIMEOUT
      60s       start/join: how long to wait for a spawned server to be ready
"""

import errno as _errno
import json
import logging
import os
import re
import sys
import threading
import time

log = logging.getLogger("wcfs")

from ._gopy import _pybind as _gox  # the extension module: functions patched after fork
from ._gopy import pybind as _gopy  # its Python wrapper: classes WCFS, Server

__all__ = ["join", "start", "serve", "stop", "status", "main", "WCFS", "Server",
           "Conn", "FileH", "Mapping", "WatchLink", "PinReq"]


# ---- calls into Go ----

try:  # pygolang is optional: with it our errors are golang.error as well
    import golang as _golang
except ImportError:
    _golang = None

_error_bases = (RuntimeError,) if _golang is None else (_golang.error, RuntimeError)
_golang_b = None if _golang is None else _golang.b  # bytes/str -> bstr


class WCFSError(*_error_bases):
    """An error reported by the Go side; .errno is set when an errno caused it.

    It is a RuntimeError, and also a ``golang.error`` when pygolang is
    installed (as the errors of wendelin.core's C++ client are), so that
    ``except error`` and ``errors.Is(e, context.canceled)`` work: Unwrap gives
    the caller's context error when the call ended because its context was
    done.
    """

    def __init__(self, msg, errno=None):
        super().__init__(msg)
        self.msg = msg
        self.errno = errno
        self._cause = None

    def __str__(self):
        return self.msg

    def Error(self):
        """Error returns the message (golang.error's interface)."""
        return self.msg

    def Unwrap(self):
        """Unwrap returns the error this one wraps (golang.error's interface)."""
        return self._cause


class _FUSEUnmountError(WCFSError):
    """Unmounting failed (the message says why, e.g. which processes keep it busy)."""


_errno_suffix = re.compile(r" \[errno (\d+)\]$")


def _goerror(e, cls=WCFSError):
    """_goerror converts the RuntimeError of a Go call into cls(msg, errno)."""
    msg = str(e)
    m = _errno_suffix.search(msg)
    errno = None
    if m is not None:
        msg, errno = msg[: m.start()], int(m.group(1))
    return cls(msg, errno)


_logmu = threading.RLock()  # one drain at a time: records keep their order (a handler may call us)


def _drain_log():
    """_drain_log emits through the "wcfs" logger what the Go side logged."""
    if _forked:
        return
    with _logmu:
        js = _gox.pybind_TakeLog()
        if js:
            for rec in json.loads(js):
                log.log(rec["level"], "%s", rec["msg"])


_LOG_PUMP_EVERY = 0.25  # seconds


class _LogPump:
    """_LogPump, as a context manager, emits what Go logs while a slow call
    runs (start, the slow path of join, stop, serve), every _LOG_PUMP_EVERY
    seconds from a thread of its own: a start that takes long says why as it
    happens ("server pid... not ready after 10s: opening storage ..."), not
    once it is over. Go calls release the GIL, so the thread runs."""

    def __init__(self):
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wcfs-log", daemon=True)

    def __enter__(self):
        try:
            self._thread.start()
        except RuntimeError:  # e.g. at interpreter shutdown (an atexit stop): log after the call
            self._thread = None
        return self

    def __exit__(self, *exc):
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self):
        while not self._done.wait(_LOG_PUMP_EVERY):
            try:
                _drain_log()
            except Exception:  # noqa: BLE001 (a failing handler must not end the call)
                log.exception("wcfs: emitting the Go log")


def _call(f, *argv, errcls=WCFSError, slow=False):
    """_call runs a Go function, then emits its log, converting its error.
    With slow (a call that may take seconds) the log is emitted as it comes
    (_LogPump)."""
    try:
        if slow:
            with _LogPump():
                return f(*argv)
        return f(*argv)
    except RuntimeError as e:
        if isinstance(e, WCFSError):
            raise
        raise _goerror(e, errcls) from None
    finally:
        _drain_log()


def _environ():
    """_environ returns os.environ for Go (whose own copy does not see changes)."""
    return json.dumps(["%s=%s" % kv for kv in os.environ.items()])


def _deadline(ctx):
    """_deadline returns the deadline (time.time() scale) of ctx: None for
    no ctx or one without deadline, now + ctx for a number of seconds, else
    ctx.deadline() (pygolang contexts and alike)."""
    if ctx is None:
        return None
    if isinstance(ctx, (int, float)):
        return time.time() + max(float(ctx), 1e-3)
    return ctx.deadline() if hasattr(ctx, "deadline") else None


def _ctx_err(ctx):
    """_ctx_err returns the error of ctx if it is done (pygolang's
    context.canceled or deadlineExceeded), else None; None for ctx without
    .err()."""
    if ctx is not None and hasattr(ctx, "err") and callable(ctx.err):
        return ctx.err()
    return None


class _GoCtx:
    """_GoCtx(ctx) gives, as a context manager, the Go side of ctx for one
    blocking call into Go (.go, a pybind Ctx): ctx is None (no deadline), a
    number of seconds, or a context -- pygolang's, or any object with
    .deadline() and, to be cancellable, .done() (a pygolang channel, or an
    object with .wait(timeout) such as threading.Event) and .err(). Its
    deadline is passed to Go; its cancellation is forwarded by a watcher
    that lives as long as the call. Duck-typed: pygolang stays optional."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.go = None
        self._stop = None

    def __enter__(self):
        ctx = self.ctx
        dl = _deadline(ctx)
        sec = 0 if dl is None else max(dl - time.time(), 1e-3)
        self.go = _gox_ctx(sec)
        done = getattr(ctx, "done", None) if ctx is not None and not isinstance(ctx, (int, float)) else None
        if callable(done):
            if _ctx_err(ctx) is not None:
                self.go.Cancel()
            else:
                self._watch(done())
        return self

    def _watch(self, done):
        gocx = self.go
        if hasattr(done, "recv"):  # a pygolang channel
            from golang import chan, go, select
            stop = chan()

            def watch():
                i, _ = select(done.recv, stop.recv)
                if i == 0:
                    gocx.Cancel()

            go(watch)
            self._stop = stop.close
        elif hasattr(done, "wait"):  # threading.Event-like
            stop = threading.Event()

            def watch():
                while not stop.is_set():
                    if done.wait(0.1):
                        gocx.Cancel()
                        return

            threading.Thread(target=watch, name="wcfs-ctx", daemon=True).start()
            self._stop = stop.set

    def __exit__(self, *exc):
        if self._stop is not None:
            self._stop()
        self.go.Cancel()

    def call(self, f, *argv, errcls=None):
        """call runs the Go function f(*argv, <Go ctx>) as _call does; an
        error after the context was done wraps the context's error."""
        try:
            return _call(f, *argv, self.go, errcls=errcls or WCFSError, slow=True)
        except WCFSError as e:
            e._cause = _ctx_err(self.ctx)
            raise


def _ctxcall(ctx, f, *argv, errcls=None):
    """_ctxcall runs the Go function f(*argv, <Go ctx of ctx>): see _GoCtx."""
    with _GoCtx(ctx) as gc:
        return gc.call(f, *argv, errcls=errcls)


def _gox_ctx(sec):
    return _gopy.NewCtx(sec)


# ---- fork ----

_pid = os.getpid()
_forked = False  # set in a child forked without exec


def _forked_call(*argv, **kw):
    raise RuntimeError(
        "wcfs: cannot use the Go runtime in pid %d: it was forked without exec from pid %d, "
        "whose Go runtime threads do not exist here; use wendelin.wcfs in the parent, or start "
        "children with exec (e.g. multiprocessing's 'spawn' or 'forkserver')" % (os.getpid(), _pid))


def _after_fork_in_child():
    """In a forked child every call into Go fails at once instead of
    deadlocking; Go objects are released without calling Go; joined
    connections are dropped (their descriptors closed) so that the child does
    not keep servers busy."""
    global _forked
    _forked = True
    for name in dir(_gox):
        if name.startswith("__"):
            continue
        if name in ("IncRef", "DecRef"):
            setattr(_gox, name, lambda *argv: None)
        elif callable(getattr(_gox, name)):
            setattr(_gox, name, _forked_call)
    for wc in list(_wcregistry.values()):
        wc._forked()
    _wcregistry.clear()
    del _wcautostarted[:]


os.register_at_fork(after_in_child=_after_fork_in_child)


# ---- the client: ours (Go), or wendelin.core's C++ one ----

def _cxx_client():
    """_cxx_client returns wendelin.core's C++ client module
    (wendelin.wcfs.client._wcfs) when it is importable, i.e. when this module
    is installed inside a wendelin.core tree in place of its
    wendelin/wcfs/__init__.py; else None. $WENDELIN_WCFS_CLIENT=go forces our
    Go client."""
    if os.environ.get("WENDELIN_WCFS_CLIENT", "") == "go":
        return None
    try:
        from .client import _wcfs
    except ImportError as e:
        if getattr(e, "name", None) not in (__name__ + ".client", __name__ + ".client._wcfs"):
            log.debug("wcfs: wendelin.core's C++ client is not usable: %s", e)
        return None
    return _wcfs


# With wendelin.core's C++ client, WCFS derives from its PyWCFS as the
# reference's WCFS does: connect() is the C++ client's and gives its PyConn,
# which wendelin.core's virtual memory layer (bigfile/_file_zodb.pyx,
# wcfs/client/_wczsync.pyx) requires, and WatchLink is its PyWatchLink. The
# gateway (join, start, stop, ...) stays ours (Go) either way.
_cxx = _cxx_client()
_WCFSBase = object if _cxx is None else _cxx.PyWCFS


# ---- WCFS ----

class WCFS(_WCFSBase):
    """WCFS is a filesystem-level connection to a joined wcfs server.

    Use join to get one and close to release it; it is also a context manager.
    Raw files of the mount are accessed with _path/_read/_stat/_open. With
    wendelin.core's C++ client it is a PyWCFS (see _cxx_client).

    .mountpoint     path of the mount
    ._njoin         how many joins returned it and were not closed
    ._wcsrv         the Server this connection started, or None
    """

    def __init__(self, gowc):
        self._gowc = gowc
        self._serial = gowc.Serial()
        self._heldfd = gowc.HeldFd()
        self.mountpoint = gowc.Mountpoint()
        self._wcsrv = Server(gowc.Server()) if gowc.HasServer() else None

    def __repr__(self):
        return "<wcfs.WCFS %s njoin=%s>" % (self.mountpoint, self._njoin)

    @property
    def _njoin(self):
        if self._gowc is None:
            return 0
        return self._gowc.NJoin()

    def close(self):
        """close releases one join. The last close closes the held .wcfs/zurl
        (and raises OSError if that fails, e.g. ENOTCONN after a server crash,
        the connection is released anyway); it never stops the server."""
        if self._gowc is None or self._gowc.NJoin() <= 0:
            return  # closed already: nothing to release (as the reference)
        try:
            _call(self._gowc.Close, errcls=_CloseError)
        except _CloseError as e:
            if e.errno is not None:
                raise OSError(e.errno, str(e)) from None
            raise
        finally:
            with _wcmu:
                if self._gowc.NJoin() == 0 and _wcregistry.get(self.mountpoint) is self:
                    del _wcregistry[self.mountpoint]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _forked(self):
        # in a forked child: drop the inherited descriptor, never call Go
        try:
            os.close(self._heldfd)
        except OSError:
            pass
        self._gowc = None

    # ---- raw file access (primarily for tests) ----

    def _path(self, obj, at=None):
        """_path returns the path of obj on the mount: a str is relative to
        the mount; a ZBigFile is head/bigfile/<oid>, or @<at>/bigfile/<oid>
        with at (8-byte tid, or int)."""
        if not isinstance(obj, str):
            typ = type(obj)
            cls = typ.__module__ + "." + typ.__qualname__
            if cls != "wendelin.bigfile.file_zodb.ZBigFile":
                raise TypeError("wcfs: _path: want str or ZBigFile, not %s" % cls)
            head = "head" if at is None else "@" + _hex(at)
            obj = "%s/bigfile/%s" % (head, _hex(obj._p_oid))
        elif at is not None:
            raise ValueError("wcfs: _path: at= is for ZBigFile objects, not with a path")
        return os.path.join(self.mountpoint, obj)

    def _read(self, obj, at=None):
        """_read returns the content of obj's file."""
        with open(self._path(obj, at=at), "rb") as f:
            return f.read()

    def _stat(self, obj, at=None):
        """_stat stats obj's file."""
        return os.stat(self._path(obj, at=at))

    def _open(self, obj, mode="rb", at=None):
        """_open opens obj's file unbuffered."""
        return open(self._path(obj, at=at), mode, 0)

    # ---- the client (wendelin_wcfs/_client.py; PyWCFS's with the C++ client) ----

    if _cxx is None:
        def connect(self, at):  # -> Conn
            """connect returns a Conn viewing the database as of at (8-byte
            tid, as ZODB's p64, or int): see Conn, FileH, Mapping."""
            return _client.connect(self, at)


class _CloseError(WCFSError):
    pass


def _hex(x):
    """_hex formats an oid/tid (8 bytes or int) as 16 hex digits."""
    if isinstance(x, bytes):
        x = int.from_bytes(x, "big")
    return "%016x" % x


# ---- Server ----

class _Proc:
    """_Proc is the server process (what tests poke as ._proc.pid)."""

    def __init__(self, srv):
        self._srv = srv
        self.pid = srv._gosrv.Pid()

    def poll(self):
        """poll returns None while the process runs, else 0 (it exited)."""
        return 0 if self._srv._gosrv.Exited() else None

    def __repr__(self):
        return "<wcfs server pid%d>" % self.pid


class Server:
    """Server is a running wcfs server started by this process.

    .mountpoint     where it is mounted
    ._proc          its process (.pid)
    ._fuseabort     the FUSE connection's abort file, open for writing
    """

    def __init__(self, gosrv):
        self._gosrv = gosrv
        self.mountpoint = gosrv.Mountpoint()
        self._proc = _Proc(self) if gosrv.Pid() else None
        self._fuseabort_f = None
        self._mu = threading.Lock()

    def __repr__(self):
        return "<wcfs.Server %s pid%d>" % (self.mountpoint, self._gosrv.Pid())

    @property
    def _fuseabort(self):
        with self._mu:
            if self._fuseabort_f is None:
                fd = _call(self._gosrv.AbortFd)
                if fd < 0:
                    return None
                self._fuseabort_f = open(fd, "wb", buffering=0)
            return self._fuseabort_f

    def stop(self, ctx=None):
        """stop stops the server: unmount; if that fails SIGTERM and abort of
        the FUSE connection; SIGQUIT; SIGKILL; lazy unmount; removal of the
        mountpoint, within ctx: None (20 s), a timeout in seconds, or a
        context (pygolang's: its deadline and cancellation are honoured). It
        runs once; later calls return at once."""
        self._stop(ctx)

    def _stop(self, ctx, _on_wcfs_stuck=None, _on_fs_busy=None, _on_last_unmount_try=None):
        """_stop is stop with the reference's hooks (wendelin.core's tests use
        them): _on_wcfs_stuck() when the server does not exit even after
        SIGKILL; _on_fs_busy() when processes still use the mount after the
        server exited (by default they are logged, never killed);
        _on_last_unmount_try(mountpoint) instead of the last unmount (lazy by
        default) of a mount still there. The first exception a hook raises
        is raised once the stop is over."""
        hooks = {"stuck": _on_wcfs_stuck, "busy": _on_fs_busy, "lastunmount": _on_last_unmount_try}
        mask = 0
        for bit, name in ((_gopy.HookStuck, "stuck"), (_gopy.HookBusy, "busy"),
                          (_gopy.HookLastUnmountTry, "lastunmount")):
            if hooks[name] is not None:
                mask |= bit
        try:
            with _GoCtx(ctx) as gc:
                if mask == 0:
                    gc.call(self._gosrv.Stop)
                    return
                run = self._gosrv.StopHooked(gc.go, mask)
                hookexc = None
                while True:
                    try:
                        ev = _call(run.Next, slow=True)
                    except WCFSError:
                        if hookexc is not None:
                            raise hookexc
                        raise
                    if ev == "":
                        break
                    name, _, arg = ev.partition("\n")
                    err = ""
                    try:
                        if name == "stuck":
                            hooks[name]()
                        elif name == "busy":
                            hooks[name]()
                        else:
                            hooks[name](arg)
                    except BaseException as e:  # noqa: BLE001 (raised after the stop)
                        hookexc = hookexc or e
                        err = "%s: %s" % (name, e)
                    finally:
                        run.Resume(err)
                if hookexc is not None:
                    raise hookexc
        finally:
            with self._mu:
                if self._fuseabort_f is not None:
                    self._fuseabort_f.close()
                    self._fuseabort_f = None

    def _stuckdump(self):
        """_stuckdump returns (and logs) the kernel stacks of the server and
        of the processes using its mount, with what they use."""
        dump = _call(self._gosrv.StuckDump)
        log.warning("%s", dump)
        return dump


# ---- join / start / serve / stop / status ----

_wcmu = threading.Lock()
_wcregistry = {}  # mountpoint -> WCFS (kept in sync with the Go registry)
_wcautostarted = []  # of WCFS that started their server (for tests to stop them)


class _Autostart:
    """The default of join's autostart: $WENDELIN_CORE_WCFS_AUTOSTART at the
    time of the call (yes if unset). bool() of it evaluates the variable (in
    Go, the one parser of it: ValueError naming a value other than yes or
    no)."""

    def __bool__(self):
        try:
            return _call(_gopy.DefaultAutostart, _environ())
        except WCFSError as e:
            raise ValueError("wcfs: %s" % e) from None

    def __repr__(self):
        return "$WENDELIN_CORE_WCFS_AUTOSTART"


_default_autostart_value = _Autostart()


def _default_autostart():
    """_default_autostart returns the autostart setting of join from the
    environment, now."""
    return bool(_default_autostart_value)


def join(zurl, autostart=_default_autostart_value):  # -> WCFS
    """join connects to the wcfs server for ZODB at zurl and returns its WCFS.

    The same WCFS is returned for every join of an (equivalent) zurl until its
    last close. If no server runs it is started with -autoexit when autostart
    is true (default: $WENDELIN_CORE_WCFS_AUTOSTART, yes); otherwise join
    raises RuntimeError("wcfs: join <zurl>: server not running (...)").
    """
    gowc = _call(_gopy.JoinRunning, zurl)  # the common case, without the environment
    if not gowc.OK():
        if autostart is _default_autostart_value:
            a = _gopy.AutostartEnv  # Go reads it from _environ()
        else:
            a = _gopy.AutostartYes if autostart else _gopy.AutostartNo
        gowc = _call(_gopy.Join, zurl, a, _environ(), 0, slow=True)
    serial, mntpt = gowc.Serial(), gowc.Mountpoint()
    with _wcmu:
        wc = _wcregistry.get(mntpt)
        if wc is None or wc._serial != serial:
            wc = WCFS(gowc)
            _wcregistry[mntpt] = wc
            if wc._wcsrv is not None:
                _wcautostarted.append(wc)
        return wc


def start(zurl, *optv, timeout=None):  # -> Server
    """start starts a wcfs server for ZODB at zurl with options optv and
    returns it once it serves (at most timeout seconds, default
    $WENDELIN_CORE_WCFS_START_TIMEOUT or 60). It raises
    RuntimeError("wcfs: start <zurl>: already running ...") if one runs."""
    gosrv = _call(_gopy.Start, zurl, json.dumps(list(optv)), _environ(), timeout or 0, slow=True)
    return Server(gosrv)


def serve(zurl, optv, exec_=False, _tstartingq=None):
    """serve runs a wcfs server for ZODB at zurl in the foreground with
    options optv, until it exits; with exec_ this process becomes the server.
    It raises RuntimeError("wcfs: serve <zurl>: already running ...") if one
    runs. _tstartingq (for tests) is closed once the server is about to be
    run: nothing runs for zurl any more, a stale mount was cleaned."""
    if exec_:
        sys.stdout.flush()
        sys.stderr.flush()
    run = _call(_gopy.ServeAsync, zurl, json.dumps(list(optv)), _environ(), bool(exec_))
    try:
        _call(run.WaitStarting, slow=True)
    finally:
        if _tstartingq is not None:
            _tstartingq.close()
    _call(run.Wait, slow=True)


def stop(zurl, ctx=None):
    """stop stops the wcfs server for zurl, whoever started it (see
    Server.stop). Nothing mounted is not an error."""
    _ctxcall(ctx, _gopy.Stop, zurl)


def status(zurl):
    """status checks the wcfs server for zurl and prints "ok - ..." /
    "fail - ..." lines; it raises RuntimeError("(failed)") at the first
    failure. Every access to the mount is bounded in time."""
    checks = json.loads(_call(_gopy.Status, zurl))
    for c in checks:
        print("%s - %s" % ("ok" if c["ok"] else "fail", c["msg"]))
        if not c["ok"]:
            raise RuntimeError("(failed)")


# ---- helpers (kept from the reference; tests use them) ----

def _wcfs_exe():
    """_wcfs_exe returns the path of the server binary: beside this module."""
    return os.path.join(os.path.dirname(__file__), "wcfs")


def _mountpoint(zurl):
    """_mountpoint returns the mountpoint of zurl; it creates nothing."""
    return _call(_gopy.Mountpoint, zurl)


def _mntpt_4zurl(zurl):
    """_mntpt_4zurl returns the mountpoint of zurl and, as the reference's
    does, makes sure the directory exists (creating /dev/shm/wcfs if needed)."""
    return _call(_gopy.MakeMountpoint, zurl)


def _optv_with_wcfs_defaults(optv):
    """_optv_with_wcfs_defaults returns optv after $WENDELIN_CORE_WCFS_OPTIONS
    (split in Go, as for the servers it starts)."""
    return tuple(json.loads(_call(_gopy.ServerOptions, json.dumps(list(optv)), _environ())))


def _is_mountpoint(path):
    """_is_mountpoint reports whether something is mounted at path, from the
    mount table (never touching path, so a hung server cannot block it)."""
    return _call(_gopy.IsMounted, path)


def _fuse_unmount(mntpt, *optv):
    """_fuse_unmount unmounts mntpt ("-z": lazily); on failure (e.g. busy:
    the message names the processes using it) it raises _FUSEUnmountError."""
    lazy = False
    for opt in optv:
        if opt == "-z":
            lazy = True
        else:
            raise ValueError("wcfs: _fuse_unmount: unsupported option %r" % opt)
    _call(_gopy.Unmount, mntpt, lazy, 0, errcls=_FUSEUnmountError)


def _waitmount(ctx, zurl, mntpt):  # -> file
    """_waitmount waits (within ctx) until a server for zurl serves at mntpt
    and returns its .wcfs/zurl opened. It waits on mount table changes."""
    fd = _ctxcall(ctx, _gopy.WaitMount, zurl, mntpt)
    return open(fd, "r")


def _rmdir_ifexists(path):
    """_rmdir_ifexists removes the directory path if it exists."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass


def _ready(ch):
    """_ready reports whether ch is ready: a pygolang channel with data (or
    closed), a threading.Event that is set, or a context-like object that is
    done."""
    if hasattr(ch, "recv"):
        from golang import default, select  # pygolang, only if the caller uses it
        i, _ = select(default, ch.recv)
        return bool(i)
    if hasattr(ch, "is_set"):
        return ch.is_set()
    if hasattr(ch, "err") and callable(ch.err):
        return ch.err() is not None
    raise TypeError("wcfs: _ready: want a channel, an Event or a context, not %r" % (ch,))


class _DeadlineExceeded(TimeoutError):
    """A wait with a deadline of seconds (no context) ran out."""


def _waitfor(ctx, condf):
    """_waitfor waits until condf() is true, checking every 10 ms, within ctx
    (None: forever; a number of seconds; or a context, pygolang's or alike).
    When ctx is done it raises ctx.err() (pygolang's context.canceled or
    deadlineExceeded), or TimeoutError for a deadline without context."""
    # a context with .err() says itself when it is done (its timer and
    # time.time() may disagree by a bit); else the deadline is ours to check
    deadline = None if callable(getattr(ctx, "err", None)) else _deadline(ctx)
    while True:
        err = _ctx_err(ctx)
        if err is not None:
            raise err
        if condf():
            return
        if deadline is not None and time.time() >= deadline:
            raise _DeadlineExceeded("wcfs: deadline exceeded")
        time.sleep(0.01)


def _waitfor_(ctx, condf):  # -> ok
    """_waitfor_ is _waitfor that returns whether condf() became true (False
    if ctx was done first)."""
    try:
        _waitfor(ctx, condf)
    except _DeadlineExceeded:
        return False
    except Exception as e:
        if e is _ctx_err(ctx) or (_golang is not None and _is_ctx_error(e)):
            return False
        raise
    return True


def _is_ctx_error(e):
    """_is_ctx_error reports whether e is pygolang's context.canceled or
    deadlineExceeded (or wraps one)."""
    from golang import context, errors
    return errors.Is(e, context.canceled) or errors.Is(e, context.deadlineExceeded)


def _proc_isalive(proc):  # -> bool
    """_proc_isalive reports whether proc runs: an object with .poll() (a
    subprocess.Popen, a Server's ._proc), or with .pid (alive unless gone or
    a zombie)."""
    if hasattr(proc, "poll"):
        return proc.poll() is None
    try:
        with open("/proc/%d/stat" % proc.pid) as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _procwait(ctx, proc):
    """_procwait waits within ctx until proc exits (see _proc_isalive)."""
    _waitfor(ctx, lambda: not _proc_isalive(proc))


def _procwait_(ctx, proc):  # -> ok
    """_procwait_ is _procwait that returns whether proc exited in time."""
    return _waitfor_(ctx, lambda: not _proc_isalive(proc))


_gopy.Configure(_wcfs_exe(), "")

from . import _client  # noqa: E402 (uses the helpers above)

if _cxx is None:
    from ._client import Conn, FileH, Mapping, WatchLink, PinReq  # noqa: E402
else:
    Conn, FileH, Mapping = _cxx.PyConn, _cxx.PyFileH, _cxx.PyMapping
    WatchLink, PinReq = _cxx.PyWatchLink, _cxx.PyPinReq


# ---- command line ----

_usage_text = """\
Wcfs serves WCFS filesystem for ZODB at zurl for wendelin.core .

Usage: %(prog)s (serve|stop|status) [options] zurl

  %(prog)s serve [options] zurl
        run a server for zurl in the foreground: this process becomes the
        server (%(prog)s serve -h: its options)
  %(prog)s stop zurl
        stop the server for zurl, whoever started it
  %(prog)s status zurl
        check the server for zurl (exit status 1 if not ok)

zurl is file:///path/to/data.fs (or the path of a FileStorage file; a relative
path is relative to the current directory), zeo://host:port, neo://cluster@host:port
or neos://...; the server is mounted at /dev/shm/wcfs/<sha1 of the normalized zurl>.
"""

_serve_usage_text = """\
Usage: %(prog)s serve [options] zurl

Run a WCFS server for the ZODB database at zurl in the foreground, mounted at
/dev/shm/wcfs/<sha1 of the normalized zurl>: this process becomes the server.
Ctrl-C (SIGINT), SIGTERM or `%(prog)s stop zurl` stop it; it leaves nothing
behind. $WENDELIN_CORE_WCFS_OPTIONS comes before the options given here.

Options:
"""


def _server_options_help():
    """_server_options_help returns the server's description of its options
    (the part of `wcfs -h` after "Options:", without the options that the
    gateway gives itself)."""
    import subprocess

    exe = _wcfs_exe()
    try:
        p = subprocess.run([exe, "-h"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
    except OSError as e:
        return "  (cannot run %s: %s)\n" % (exe, e)
    lines = p.stdout.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() == "Options:":
            lines = lines[i + 1:]
            break
    out, skip = [], False
    for line in lines:
        if line.startswith("  -"):
            skip = line.split()[0] in ("-mntpt.create",)
        if not skip:
            out.append(line)
    return "".join(out)


class _GlogFormatter(logging.Formatter):
    """glog-like lines: <L><MMDD HH:MM:SS.micro> <tid> <file>:<line>] <logger>: <msg>."""

    def format(self, r):
        t = time.localtime(r.created)
        msg = r.getMessage()
        if r.exc_info:
            msg += "\n" + self.formatException(r.exc_info)
        return "%s%s.%06d %d %s:%d] %s: %s" % (
            r.levelname[:1], time.strftime("%m%d %H:%M:%S", t), int(r.created % 1 * 1e6),
            r.thread % 100000, r.filename, r.lineno, r.name, msg)


def main(argv=None):
    """main is the command line: wcfs (serve|stop|status) [options] zurl.

    Usage errors (what is wrong, then the usage) exit with status 2, a failure
    of the command with status 1."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] not in ("-m", "-c", "") else "wcfs"
    if prog in ("__main__.py", "wcfs.py"):
        prog = "wcfs"

    def usage(code, text=_usage_text):
        print(text % {"prog": prog}, end="", file=sys.stdout if code == 0 else sys.stderr)
        sys.exit(code)

    def usage_error(msg):
        print("%s: %s\n" % (prog, msg), file=sys.stderr)
        usage(2)

    if argv[:1] in (["-h"], ["--help"]):
        usage(0)
    if not argv:
        usage_error("no command given: want serve, stop or status")
    cmd, args = argv[0], argv[1:]
    if cmd not in ("serve", "stop", "status"):
        usage_error("unknown command %s" % json.dumps(cmd))
    if cmd == "serve" and args[:1] in (["-h"], ["--help"]):
        print(_serve_usage_text % {"prog": prog} + _server_options_help(), end="")
        sys.exit(0)
    if not args or args[-1].startswith("-"):
        usage_error("%s: no zurl given" % cmd)
    zurl, optv = args[-1], args[:-1]
    if cmd != "serve" and optv:
        usage_error("%s takes no options, only the zurl (got %s)" % (cmd, " ".join(optv)))

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_GlogFormatter())
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        if cmd == "serve":
            serve(zurl, tuple(optv), exec_=True)
        elif cmd == "status":
            status(zurl)
        else:
            stop(zurl)
    except RuntimeError as e:
        if str(e) != "(failed)":
            print("%s" % e, file=sys.stderr)
        sys.exit(1)
