#!/usr/bin/env bash
# deps-system.sh: idempotent system set-up needed to build and test WCFS.
#
#  - fusermount/fusermount3 (Debian package fuse3), used to unmount: needs root
#    to install it (apt-get), once;
#  - the FUSE control filesystem at /sys/fs/fuse/connections (needed to abort
#    a hung FUSE connection): needs root to mount it;
#  - /dev/fuse must exist (nothing here can work without it).
#
# It changes nothing when everything is already in place. Before apt-get it
# waits (at most $WCFS_DPKG_LOCK_TIMEOUT s, default 600) for other apt/dpkg
# runs to release their locks, saying who holds them (unattended upgrades on a
# new machine): scripts/dpkg-lock-wait.py.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "deps-system: $*"; }

if [ ! -c /dev/fuse ]; then
	say "ERROR: /dev/fuse is missing: FUSE is not available on this machine" >&2
	exit 1
fi

if ! command -v fusermount3 >/dev/null 2>&1 && ! command -v fusermount >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ]; then
		say "ERROR: fusermount is missing: installing the package fuse3 needs root" \
			"(run as root, or: sudo apt-get install fuse3)" >&2
		exit 1
	fi
	say "the package fuse3 is missing (fusermount3: to unmount): installing it with apt-get, as root"
	timeout=${WCFS_DPKG_LOCK_TIMEOUT:-600}
	python3 "$top/scripts/dpkg-lock-wait.py" --timeout "$timeout"
	export DEBIAN_FRONTEND=noninteractive
	apt=(apt-get -q -y -o DPkg::Lock::Timeout="$timeout")
	step=(python3 "$top/scripts/wcfs_build.py" step)
	if ! apt-cache show fuse3 >/dev/null 2>&1; then
		"${step[@]}" "apt-get update (the package lists know no fuse3 yet)" -- "${apt[@]}" update
	fi
	"${step[@]}" "apt-get install fuse3" -- "${apt[@]}" install fuse3
fi

if ! awk '$3 == "fusectl" {found=1} END {exit !found}' /proc/mounts; then
	if [ "$(id -u)" = 0 ] && [ -d /sys/fs/fuse/connections ]; then
		say "mounting the FUSE control filesystem on /sys/fs/fuse/connections as root" \
			"(to abort hung FUSE connections) ..."
		mount -t fusectl none /sys/fs/fuse/connections ||
			say "WARNING: could not mount fusectl (aborting hung connections will not work)"
	else
		say "WARNING: fusectl is not mounted, and mounting it needs root" \
			"(mount -t fusectl none /sys/fs/fuse/connections): aborting hung FUSE connections will not work"
	fi
fi
