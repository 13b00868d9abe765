"""python -m ztestdb {serve,gen,manifest} ...: see ztestdb.serve and ztestdb.gen."""

import argparse
import logging
import sys

USAGE = """usage: python -m ztestdb COMMAND [args]

commands:
  serve DB [--create]        JSON-lines server for tests (protocol: ztestdb/serve.py)
  gen OUT.fs [options]       create a demo/benchmark database and OUT.json (gen -h)
  manifest DB [-o OUT.json]  compute a database's manifest by reading it back
"""


def manifest_main(argv):
    from .manifest import dump_manifest, read_manifest
    p = argparse.ArgumentParser(prog="python -m ztestdb manifest",
                                description="Read a database back through ZODB at every "
                                            "transaction and print its manifest")
    p.add_argument("db", help="FileStorage path, file:// or zeo:// zurl")
    p.add_argument("-o", "--output", help="write the manifest here instead of stdout")
    p.add_argument("--dataset", help="dataset name put in the manifest")
    a = p.parse_args(argv)
    m = read_manifest(a.db, dataset=a.dataset)
    if a.output:
        dump_manifest(m, a.output)
    else:
        import json
        json.dump(m, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(name)s: %(levelname)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "serve":
        from .serve import main as m
    elif cmd == "gen":
        from .gen import main as m
    elif cmd == "manifest":
        m = manifest_main
    else:
        sys.stderr.write("ztestdb: unknown command %r\n%s" % (cmd, USAGE))
        return 2
    return m(rest)


if __name__ == "__main__":
    sys.exit(main())
