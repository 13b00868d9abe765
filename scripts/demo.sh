#!/usr/bin/env bash
# demo.sh [DIR]: the main job (README's first command).
#
# Creates once, with genuine ZODB (bin/wcfs-zgen), a FileStorage demo database
# of ZBigFiles in DIR (default demo/): the demo dataset (files of every block
# size and format, holes, history) and zfbig, $WCFS_DEMO_BIG bytes (default
# 512 MiB) for throughput figures that mean something. Then, from Python: joins
# WCFS for it through wendelin.wcfs.join (which autostarts the server), opens a
# view of the database as of head/at (WCFS.connect), maps every ZBigFile
# (Conn.open, FileH.mmap) and reads it through the mapping with NumPy and
# hashlib, without copy (cold, then from the page cache), checks it against
# the manifest written with the database, shows isolation (a genuine ZODB
# commit made meanwhile is not seen until Conn.resync), prints what it did and
# stops the server it started.
#
# "Cold" is the first read of a file through a server this demo has just
# started (nothing of the WCFS files in the kernel's page cache yet), with
# demo.fs itself read into the OS page cache first: the figure is WCFS's work
# (loading, decoding, the FUSE round trips), not the disk's. "Cached" is a new
# mapping of the same data, served from the page cache.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$top/demo}
big=${WCFS_DEMO_BIG:-512M}
py=${WCFS_PYTHON:-$top/.venv/bin/python}
mkdir -p "$dir"
db=$(cd "$dir" && pwd)/demo.fs
manifest=${db%.fs}.json
if [ ! -e "$db" ] || [ ! -e "$manifest" ] || ! grep -q '"zfbig"' "$manifest"; then
	echo "demo: creating the demo database $db with genuine ZODB, once: the demo dataset and zfbig ($big)"
	"$top/bin/wcfs-zgen" --force --progress --big "$big" "$db"
else
	echo "demo: using the demo database $db"
fi

# tools/pylib: ztestdb, to commit with genuine ZODB during the demo
export PYTHONPATH=$top/tools/pylib${PYTHONPATH:+:$PYTHONPATH}
exec "$py" - "$db" <<'EOF'
import hashlib, json, mmap, os, sys, time
import numpy as np
from wendelin import wcfs

db = sys.argv[1]
zurl = "file://" + db
mjson = db[:-len(".fs")] + ".json"
with open(mjson) as f:
    manifest = json.load(f)
expect = manifest["transactions"][-1]["files"]

# demo.fs into the OS page cache: cold reads below measure WCFS, not the disk
t0 = time.monotonic()
with open(db, "rb", buffering=0) as f:
    buf = bytearray(8 << 20)
    nread = 0
    while True:
        n = f.readinto(buf)
        if not n:
            break
        nread += n
print("demo.fs     %.0f MiB read into the OS page cache in %.1f s" % (nread / (1 << 20), time.monotonic() - t0))

t0 = time.monotonic()
wc = wcfs.join(zurl, autostart=True)
tjoin = time.monotonic() - t0
srv = wc._wcsrv
print("zurl        %s" % zurl)
print("mountpoint  %s" % wc.mountpoint)
if srv is not None:
    print("server      pid %d, autostarted by wendelin.wcfs.join, ready in %.0f ms"
          % (srv._proc.pid, tjoin * 1e3))
else:
    print("server      already running (joined in %.1f ms)" % (tjoin * 1e3))
head = wc._read("head/at").decode().strip()
print("head/at     %s%s" % (head, "" if head == manifest["head"] else
                               "  (manifest says %s!)" % manifest["head"]))

# a view of the database as of head/at, like a ZODB connection
conn = wc.connect(bytes.fromhex(head))
print("conn        @%s  (wc.connect(at): files are mapped as of this revision)" % conn.at().hex())


def mibps(n, dt):
    """Throughput in MiB/s as text; "-" when there is nothing to measure."""
    if n == 0 or dt <= 0:
        return "-"
    return "%.0f" % (n / (1 << 20) / dt)


def scan(fh, nblk):
    """scan maps the file, reads it by touching every page of the mapping
    once (page faults that the kernel serves from WCFS, or from its page
    cache: the timed part), then hashes it through the mapping (hashlib and
    NumPy work on the mapped memory itself); returns (sha256, numpy summary,
    seconds of the read, the Mapping)."""
    m = fh.mmap(0, max(nblk, 1))
    mem = m.mem[: nblk * fh.blksize]
    a = np.frombuffer(mem, dtype=np.uint8)
    assert a.size == 0 or a.ctypes.data == m._addr  # no copy
    t0 = time.monotonic()
    a[::mmap.PAGESIZE].sum()
    dt = time.monotonic() - t0
    sha = hashlib.sha256(mem).hexdigest()
    summary = "-" if a.size == 0 else "mean %5.1f  nonzero %5.1f%%" % (a.mean(), 100 * np.count_nonzero(a) / a.size)
    return sha, summary, dt, m


ok = True
print()
if srv is not None:
    print("MiB/s of reading each file once through a mapping (every page touched; hashing not")
    print("included). cold: the first read through the server just started (demo.fs in the OS page")
    print("cache, nothing of the file in the kernel's cache of WCFS yet); cached: a new mapping of the")
    print("same data, from the page cache. For small files the figures are mostly per-call overhead.")
else:
    print("MiB/s of reading each file once through a mapping. cold: - (the server was already running:")
    print("the page cache may hold the data); cached: a new mapping of the same data, from the page cache.")
print("%-8s %-28s %9s %8s %11s %12s  %-30s %s" % ("file", "path on the mount", "size", "blksize",
      "cold MiB/s", "cached MiB/s", "NumPy on the mapping (uint8)", "sha256"))
fhs = {}
for name, f in sorted(manifest["files"].items()):
    want = expect.get(name)
    if want is None:
        continue
    rel = "head/bigfile/" + f["oid"]
    fh = conn.open(bytes.fromhex(f["oid"]))
    fhs[name] = fh
    size, bs = want["size"], fh.blksize
    nblk = size // bs
    sha, summary, dt, m = scan(fh, nblk)     # cold: the server loads the blocks
    m.unmap()
    sha2, _, dt2, m = scan(fh, nblk)         # a new mapping of cached data
    m.unmap()
    good = sha == sha2 == want["sha256"] and bs == f["blksize"]
    ok &= good
    cold = mibps(size, dt) if srv is not None else "-"
    print("%-8s %-28s %9d %8d %11s %12s  %-30s %s" % (name, rel, size, bs, cold,
          mibps(size, dt2), summary, "ok" if good else "MISMATCH"))

# isolation: a commit by genuine ZODB while conn stays at its revision
print()
import ztestdb
name = next(n for n in ("zf64k", "zf0", "zf1") if expect.get(n, {}).get("size"))
fh = fhs[name]
bs = fh.blksize
m = fh.mmap(0, 1)
old = hashlib.sha256(m.mem).hexdigest()
zdb = ztestdb.Database.open(db)
stamp = ("demo %s " % time.strftime("%Y-%m-%d %H:%M:%S")).encode()
newdata = (stamp * (bs // len(stamp) + 1))[:bs]
zdb.write_block(name, 0, newdata)
tid = zdb.commit("demo: isolation")
zdb.write_manifest(mjson)  # keep the manifest in step with the database
zdb.close()
t0 = time.monotonic()
while wc._read("head/at").decode().strip() < tid:
    if time.monotonic() - t0 > 60:
        sys.exit("demo: the server did not show the commit @%s" % tid)
    time.sleep(0.01)
seen = hashlib.sha256(m.mem).hexdigest()
pinned = {b: r.hex() for b, r in fh.pinned.items()}
iso = seen == old and pinned == {0: head}
print("commit      @%s by genuine ZODB: block #0 of %s rewritten; head/at follows" % (tid, name))
print("isolated    conn @%s still reads the old block #0 through its mapping: %s (pinned %s)"
      % (conn.at().hex(), "ok" if iso else "NO", pinned))
conn.resync(bytes.fromhex(tid))
now = hashlib.sha256(m.mem).hexdigest()
moved = now == hashlib.sha256(newdata).hexdigest() and fh.pinned == {}
print("resync      conn @%s reads the new block #0 (same mapping, unpinned): %s"
      % (conn.at().hex(), "ok" if moved else "NO"))
ok &= iso and moved
m.unmap()
conn.close()
print()
wc.close()
if srv is not None:
    t0 = time.monotonic()
    srv.stop()
    print("stopped     the server in %.0f ms (unmounted, mountpoint removed)" % ((time.monotonic() - t0) * 1e3))
else:
    print("left        the server running: this demo did not start it")
if not ok:
    sys.exit("demo: the data read through WCFS differs from the manifest, or was not isolated")
EOF
