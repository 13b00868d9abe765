# Oracle for zurl_test.go: the reference's zurl normalization (spec 7.1)
# expressed with Python's own urllib.parse, to check that the Go
# reimplementation of urllib's corner cases derives the same mountpoints.
#
# stdin: one JSON string (a zurl) per line; stdout: one JSON object per line,
# {"ok": <normalized>} or {"err": <exception text>}.
import json
import sys
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit


def normalize(zurl):
    scheme, netloc, path, query, fragment = urlsplit(zurl)
    if scheme in ("file", "zeo", "demo"):
        return zurl
    if scheme not in ("neo", "neos"):
        raise NotImplementedError("can't normalize zurl with scheme %s" % scheme)
    q = parse_qs(query)  # blank values dropped
    ssl = False
    for k in ("ca", "cert", "key"):
        if q.pop(k, None):
            ssl = True
    if ssl:
        scheme = "neos"
    for k in ("compress", "read-only", "logfile", "cache-size"):
        q.pop(k, None)
    query = urlencode(sorted(q.items()), doseq=True)
    cluster, masters = netloc.split("@", 1)
    netloc = cluster + "@" + ",".join(sorted(masters.split(",")))
    return urlunsplit((scheme, netloc, path, query, fragment))


for line in sys.stdin:
    zurl = json.loads(line)
    try:
        out = {"ok": normalize(zurl)}
    except Exception as e:
        out = {"err": "%s: %s" % (type(e).__name__, e)}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
