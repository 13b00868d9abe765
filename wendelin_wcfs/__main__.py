# Copyright (C) 2026  WCFS authors.
# This program is free software: you can redistribute it and/or modify it
# under the terms of the GNU General Public License version 3, or (at your
# option) any later version, as published by the Free Software Foundation.
"""python -m wendelin.wcfs (serve|stop|status) [options] zurl"""

from . import main

main()
