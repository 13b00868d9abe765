#!/usr/bin/env bash
# deps-system.sh: idempotent system set-up needed to build and test WCFS.
#
#  - fusermount/fusermount3 (Debian package fuse3), used to unmount;
#  - the FUSE control filesystem at /sys/fs/fuse/connections (needed to abort
#    a hung FUSE connection);
#  - /dev/fuse must exist (nothing here can work without it).
#
# It changes nothing when everything is already in place.
set -euo pipefail

say() { echo "deps-system: $*"; }

if [ ! -c /dev/fuse ]; then
	say "ERROR: /dev/fuse is missing: FUSE is not available on this machine" >&2
	exit 1
fi

if ! command -v fusermount3 >/dev/null 2>&1 && ! command -v fusermount >/dev/null 2>&1; then
	if [ "$(id -u)" != 0 ]; then
		say "ERROR: fusermount is missing; install package fuse3 (apt-get install fuse3) as root" >&2
		exit 1
	fi
	say "installing fuse3 ..."
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q fuse3 >/dev/null 2>&1 || {
		apt-get update -q >/dev/null
		apt-get install -y -q fuse3 >/dev/null
	}
fi

if ! awk '$3 == "fusectl" {found=1} END {exit !found}' /proc/mounts; then
	if [ "$(id -u)" = 0 ] && [ -d /sys/fs/fuse/connections ]; then
		say "mounting fusectl on /sys/fs/fuse/connections ..."
		mount -t fusectl none /sys/fs/fuse/connections || say "WARNING: could not mount fusectl (aborting hung connections will not work)"
	else
		say "WARNING: fusectl is not mounted and cannot be mounted here (aborting hung connections will not work)"
	fi
fi
