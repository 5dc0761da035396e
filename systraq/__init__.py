# SPDX-License-Identifier: GPL-2.0-or-later
"""systraq: watch a Debian system and tell its administrator when system files change.

The version follows the old package's date scheme so that it sorts above
systraq 20201231-1; debian/changelog carries the same number (a unit test
keeps the two equal).
"""

__version__ = "20261121"
