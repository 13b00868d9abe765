# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""Spellings of one NEO cluster share one WCFS mountpoint, and one server.

Clients spell the zurl of a NEO cluster in many ways: masters in another
order, TLS credentials given or not, at other paths, client-only options.
They must all reach the same WCFS server, or every process would start its
own. This suite checks the mountpoint derivation of wendelin.wcfs against
the reference rule (spec 7.1, written again here from its description), and
then joins a real TLS NEO cluster (gocore/internal/neotest/cmd/neocluster,
neo/go's master and storage over a genuine-ZODB FileStorage) with several
spellings, from this process and from another one: one server serves them
all, and serves the right bytes.
"""

import ctypes
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
import types
import urllib.parse

import pytest

from conftest import REPO, server_pids

sys.path.insert(0, os.path.join(REPO, "scripts"))
import wcfs_build  # noqa: E402

from wendelin import wcfs


def reference_normalize(zurl):
    """reference_normalize is zurl_normalize_main of the reference gateway,
    from spec 7.1: neo/neos zurls lose ca/cert/key (scheme becomes neos if
    any had a value) and the client-only options, keep the other query keys
    sorted, and get their masters sorted; other schemes are kept. The zurl
    is split by hand as urlsplit did: urlsplit of CPython >= 3.11.4 (and of
    Debian's 3.11.2, with the fix backported) rejects text before a '[' in
    the netloc, i.e. an IPv6 master after another one."""
    scheme, _, rest = zurl.partition("://")
    if scheme not in ("neo", "neos"):
        return zurl
    rest, _, fragment = rest.partition("#")
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    u = types.SimpleNamespace(netloc=netloc, path=slash + path, query=query, fragment=fragment)
    q = urllib.parse.parse_qs(u.query)
    for k in ("ca", "cert", "key"):
        if q.pop(k, None):
            scheme = "neos"
    for k in ("compress", "read-only", "logfile", "cache-size"):
        q.pop(k, None)
    query = urllib.parse.urlencode(sorted(q.items()), doseq=True)
    cluster, _, masters = u.netloc.partition("@")
    netloc = cluster + "@" + ",".join(sorted(masters.split(",")))
    return urllib.parse.urlunsplit((scheme, netloc, u.path, query, u.fragment))


def reference_mountpoint(zurl):
    return "/dev/shm/wcfs/" + hashlib.sha1(reference_normalize(zurl).encode("utf-8")).hexdigest()


# Groups of spellings: the same storage within a group, different storages
# across groups.
SAME_STORAGE = [
    [
        "neos://prod@10.0.0.1:2051?ca=/etc/neo/ca.crt&cert=/etc/neo/n.crt&key=/etc/neo/n.key",
        "neo://prod@10.0.0.1:2051?ca=/etc/neo/ca.crt&cert=/etc/neo/n.crt&key=/etc/neo/n.key",
        "neos://prod@10.0.0.1:2051?key=%2Fhome%2Fu%2Fk&cert=%2Fhome%2Fu%2Fc&ca=%2Fhome%2Fu%2Fca",
        "neos://prod@10.0.0.1:2051?ca=/etc/neo/ca.crt&compress=true&cache-size=1024&logfile=/tmp/x.log",
        "neos://prod@10.0.0.1:2051?read-only=true&cert=%C3%A9t%C3%A9.crt",
        "neos://prod@10.0.0.1:2051",
    ],
    [
        "neos://prod@10.0.0.1:2051,10.0.0.2:2051,[fd00::3]:2051",
        "neos://prod@[fd00::3]:2051,10.0.0.2:2051,10.0.0.1:2051?ca=a&cert=b&key=c",
        "neo://prod@10.0.0.2:2051,[fd00::3]:2051,10.0.0.1:2051?cert=b",
    ],
    [
        "neo://prod@10.0.0.1:2051",
        "neo://prod@10.0.0.1:2051?ca=&cert=&key=",  # blank: no TLS
        "neo://prod@10.0.0.1:2051?compress=false&logfile=&cache-size=10",
    ],
    [
        "neo://prod@10.0.0.1:2051?b=2&a=1&c=10",
        "neo://prod@10.0.0.1:2051?c=10&a=1&b=2&compress=1",
    ],
    ["neo://prod@10.0.0.1:2051,10.0.0.2:2051"],  # one more master
    ["neos://other@10.0.0.1:2051"],             # another cluster
    ["neos://prod@10.0.0.1:2052"],              # another master
]


def test_spellings_share_a_mountpoint():
    mountpoints = []
    for group in SAME_STORAGE:
        mp = {z: wcfs._mountpoint(z) for z in group}
        assert len(set(mp.values())) == 1, "one storage, several mountpoints:\n%s" % "\n".join(
            "%s -> %s" % kv for kv in mp.items())
        for z, m in mp.items():
            assert m == reference_mountpoint(z), "%s: not the reference gateway's mountpoint" % z
        mountpoints.append(mp[group[0]])
    assert len(set(mountpoints)) == len(SAME_STORAGE), "different storages share a mountpoint"


# ---- a real TLS NEO cluster ----

def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_tls_files(d):
    """make_tls_files writes a throw-away CA and one node certificate (NEO
    nodes and clients share it) into directory d."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=wcfs test CA",
             "-days", "1", cwd=d)
    _openssl("req", *ec, "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=node", cwd=d)
    _openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "node.crt", "-days", "1", cwd=d)
    return types.SimpleNamespace(**{k: os.path.join(d, f) for k, f in
                                    (("ca", "ca.crt"), ("cert", "node.crt"), ("key", "node.key"))})


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: never outlive pytest


@pytest.fixture(scope="module")
def neo_cluster(tmp_path_factory):
    """neo_cluster is a running TLS NEO cluster over ../shared's small.fs:
    namespace (name, master, tls, manifest)."""
    if os.geteuid() != 0 or not os.path.exists("/dev/fuse"):
        pytest.skip("needs root and /dev/fuse (mounts with mount(2))")
    fixture = os.path.join(REPO, "..", "shared", "testdata", "zodb")
    if not os.path.exists(os.path.join(fixture, "small.json")):
        pytest.skip("fixtures of genuine ZODB databases (../shared/testdata/zodb) absent")
    for tool in ("go", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip("%s not found: needed to build the NEO cluster / make its certificates" % tool)

    d = str(tmp_path_factory.mktemp("neo"))
    env = wcfs_build.go_environ()  # go.env, as the Makefile exports it
    helper = os.path.join(d, "neocluster")
    subprocess.run(["go", "build", "-o", helper, "./gocore/internal/neotest/cmd/neocluster"],
                   cwd=REPO, env=env, check=True, capture_output=True)
    tls = make_tls_files(d)
    with open(os.path.join(fixture, "small.json")) as f:
        manifest = json.load(f)

    proc = subprocess.Popen(
        [helper, "-cluster", "prod", "-master", "127.0.0.1:0", "-storage", "127.0.0.1:0",
         "-ca", tls.ca, "-cert", tls.cert, "-key", tls.key, os.path.join(fixture, "small.fs")],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    try:
        line, deadline = b"", time.monotonic() + 60
        while not line.startswith(b"neocluster: ready "):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("NEO cluster did not start (exit status %s)" % proc.poll())
            if select.select([proc.stdout], [], [], 1)[0]:
                line = proc.stdout.readline()
        zurl = line.split()[2].decode()  # neos://prod@127.0.0.1:PORT?ca=..
        master = urllib.parse.urlsplit(zurl).netloc.split("@")[1]
        yield types.SimpleNamespace(name="prod", master=master, tls=tls, manifest=manifest)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def neos(c, masters=None, tls=None, extra=""):
    """neos returns a spelling of cluster c's zurl."""
    tls = tls or c.tls
    q = urllib.parse.urlencode([("ca", tls.ca), ("cert", tls.cert), ("key", tls.key)])
    return "neos://%s@%s?%s%s" % (c.name, masters or c.master, q, extra)


def head_sha(c, key):
    m = c.manifest
    f = m["transactions"][-1]["files"][key]
    return m["files"][key]["oid"], f["sha256"]


def test_join_spellings_share_a_server(neo_cluster, tmp_path, wcfs_leakcheck):
    c = neo_cluster
    # the same credentials at other paths (a client on another account)
    other = tmp_path / "creds"
    other.mkdir()
    for k in ("ca", "cert", "key"):
        shutil.copy(getattr(c.tls, k), other / k)
    copied = types.SimpleNamespace(**{k: str(other / k) for k in ("ca", "cert", "key")})

    first = neos(c)
    spellings = [
        "neo://%s@%s?key=%s&cert=%s&ca=%s&compress=true&cache-size=1024" % (
            c.name, c.master, c.tls.key, c.tls.cert, c.tls.ca),
        neos(c, tls=copied),
        neos(c, extra="&logfile=%2Ftmp%2Fneo.log"),
    ]
    wcfs_leakcheck(first)
    oid, sha = head_sha(c, "zf0")

    wc = wcfs.join(first, autostart=True)
    try:
        pids = server_pids(wc.mountpoint)
        assert len(pids) == 1
        assert wc._read(".wcfs/zurl") == first.encode()
        assert hashlib.sha256(wc._read("head/bigfile/" + oid)).hexdigest() == sha
        for z in spellings:
            # in this process: the same WCFS
            wc2 = wcfs.join(z, autostart=False)
            assert wc2 is wc, z
            wc2.close()
            # in another process: attaches to the running server through the mount
            out = subprocess.run(
                [sys.executable, "-c", "import sys, hashlib\n"
                 "from wendelin import wcfs\n"
                 "wc = wcfs.join(sys.argv[1], autostart=False)\n"
                 "print(wc.mountpoint)\n"
                 "print(hashlib.sha256(wc._read('head/bigfile/' + sys.argv[2])).hexdigest())\n"
                 "wc.close()\n", z, oid],
                check=True, capture_output=True, text=True, timeout=60).stdout.split()
            assert out == [wc.mountpoint, sha], z
        assert server_pids(wc.mountpoint) == pids, "a spelling started another server"
    finally:
        wc.close()
        wc._wcsrv.stop()
        wcfs._wcautostarted.remove(wc)


def test_join_masters_in_another_order(neo_cluster, wcfs_leakcheck):
    # neo/go dials the first master of the list: the live one goes first in
    # the spelling that starts the server; the other order only attaches
    c = neo_cluster
    down = "127.0.0.1:1"
    first = neos(c, masters="%s,%s" % (c.master, down))
    again = neos(c, masters="%s,%s" % (down, c.master))
    assert wcfs._mountpoint(first) == wcfs._mountpoint(again) != wcfs._mountpoint(neos(c))
    wcfs_leakcheck(first)
    oid, sha = head_sha(c, "zf64k")

    wc = wcfs.join(first, autostart=True)
    try:
        wc2 = wcfs.join(again, autostart=False)
        assert wc2 is wc
        assert hashlib.sha256(wc2._read("head/bigfile/" + oid)).hexdigest() == sha
        wc2.close()
    finally:
        wc.close()
        wc._wcsrv.stop()
        wcfs._wcautostarted.remove(wc)
