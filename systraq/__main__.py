# SPDX-License-Identifier: GPL-2.0-or-later
"""Allows ``python3 -m systraq``; /usr/sbin/systraq does the same."""

import sys

from systraq.cli import main

sys.exit(main())
