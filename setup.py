# SPDX-License-Identifier: GPL-2.0-or-later
"""The one compiled part of systraq, systraq._native (see its source);
everything else is in setup.cfg."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("systraq._native", ["systraq/_native.c"])])
