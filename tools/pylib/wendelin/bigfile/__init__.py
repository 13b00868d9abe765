"""Test/demo stand-in for ``wendelin.bigfile`` (NOT wendelin.core).

This portion of the ``wendelin`` namespace exists only so that databases written
by the WCFS test tooling carry exactly the class paths wendelin.core writes
(``wendelin.bigfile.file_zodb.ZBigFile``, ``ZBlk0``, ``ZBlk1``, ``ZData``).
It has no virtual memory manager: see :mod:`wendelin.bigfile.file_zodb`.

``wendelin`` itself stays a PEP 420 namespace package (there is deliberately no
``tools/pylib/wendelin/__init__.py``) so that the installed ``wendelin.wcfs``
and this portion coexist.
"""
