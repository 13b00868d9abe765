#!/usr/bin/env bash
# demo.sh [DIR]: the main job (README's first command).
#
# Creates once, with genuine ZODB (bin/wcfs-zgen), a FileStorage demo database
# of ZBigFiles in DIR (default demo/), then, from Python: joins WCFS for it
# through wendelin.wcfs.join (which autostarts the server), reads every
# ZBigFile through the mount (cold, then from the page cache), checks it
# against the manifest written with the database, prints what it did and
# stops the server it started.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$top/demo}
py=${WCFS_PYTHON:-$top/.venv/bin/python}
mkdir -p "$dir"
db=$(cd "$dir" && pwd)/demo.fs
if [ ! -e "$db" ] || [ ! -e "${db%.fs}.json" ]; then
	echo "demo: creating the demo database $db (genuine ZODB, once)"
	"$top/bin/wcfs-zgen" --force "$db"
else
	echo "demo: using the demo database $db"
fi

exec "$py" - "$db" <<'EOF'
import hashlib, json, os, sys, time
from wendelin import wcfs

db = sys.argv[1]
zurl = "file://" + db
with open(db[:-len(".fs")] + ".json") as f:
    manifest = json.load(f)
expect = manifest["transactions"][-1]["files"]

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


def read_all(path):
    """read_all reads the file at path; returns (sha256, bytes, seconds)."""
    h, n, buf = hashlib.sha256(), 0, bytearray(8 << 20)
    t0 = time.monotonic()
    with open(path, "rb", buffering=0) as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            h.update(memoryview(buf)[:k])
            n += k
    return h.hexdigest(), n, time.monotonic() - t0


def mibps(n, dt):
    return n / (1 << 20) / dt if dt > 0 else float("inf")


ok = True
print()
print("%-10s %-36s %10s %8s %12s %12s  %s" % ("file", "path on the mount", "size", "blksize",
                                             "cold MiB/s", "cached MiB/s", "sha256"))
for name, f in sorted(manifest["files"].items()):
    rel = "head/bigfile/" + f["oid"]
    size = wc._stat(rel).st_size
    sha, n, dt = read_all(wc._path(rel))
    _, n2, dt2 = read_all(wc._path(rel))
    want = expect.get(name, {})
    good = n == size == want.get("size") and sha == want.get("sha256")
    ok &= good
    print("%-10s %-36s %10d %8d %12.0f %12.0f  %s" % (name, rel, size, f["blksize"], mibps(n, dt),
                                                    mibps(n2, dt2), "ok" if good else "MISMATCH"))
print()
wc.close()
if srv is not None:
    t0 = time.monotonic()
    srv.stop()
    print("stopped     the server in %.0f ms (unmounted, mountpoint removed)" % ((time.monotonic() - t0) * 1e3))
else:
    print("left        the server running: this demo did not start it")
if not ok:
    sys.exit("demo: the data read through WCFS differs from the manifest")
EOF
