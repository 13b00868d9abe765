# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""wcfs: an alias of wendelin.wcfs (installed as the top-level module wcfs).

``import wcfs`` gives the module wendelin.wcfs itself (same state), and
``python -m wcfs (serve|stop|status) [options] zurl`` runs its command line.
"""

import sys

if __name__ == "__main__":
    from wendelin.wcfs import main

    main()
else:
    from wendelin import wcfs as _wcfs

    sys.modules[__name__] = _wcfs
