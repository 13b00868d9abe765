#!/usr/bin/env bash
# demo.sh DIR: the main job (README's first command).
# Creates the demo database once, then shows what WCFS reads in it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$top/demo}
mkdir -p "$dir"
db=$dir/demo.fs
if [ ! -e "$db" ]; then
	"$top/bin/wcfs-zgen" "$db"
fi
exec "$top/bin/wcfs-zinfo" "$db"
