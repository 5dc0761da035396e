# SPDX-License-Identifier: GPL-2.0-or-later
"""Package tests: the built .deb installed, run and purged in a Debian chroot."""

import glob
import re
import os
import tempfile

import pytest

from tests.chroot import Chroot

BUILD = os.environ.get("SYSTRAQ_BUILD",
                       os.path.join(os.path.dirname(__file__), "..", "..", "build"))


@pytest.fixture(scope="session")
def deb():
    debs = sorted(glob.glob(os.path.join(BUILD, "systraq_*_all.deb")))
    if not debs:
        pytest.fail(f"no systraq_*_all.deb in {BUILD}: run 'make deb' first")
    return debs[-1]


@pytest.fixture(scope="module")
def chroot():
    if os.geteuid() != 0:
        pytest.fail("package tests need root (debootstrap, chroot, mount namespaces)")
    with tempfile.TemporaryDirectory(prefix="systraq-chroot-") as parent:
        box = Chroot(parent)
        try:
            yield box
        finally:
            box.destroy()


def set_option(text, section, key, value):
    """systraq.conf ``text`` with ``key = value`` in ``[section]``: the
    uncommented line of the key gets the value (postinst writes mailto and
    enabled so), or a line is added below the section's header."""
    header = f"\n[{section}]\n"
    assert header in text, section
    start = text.index(header) + len(header)
    end = text.find("\n[", start)
    end = len(text) if end < 0 else end + 1
    body = text[start:end]
    line = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=.*$", re.M)
    if line.search(body):
        body = line.sub(f"{key} = {value}", body, count=1)
    else:
        body = f"{key} = {value}\n" + body
    return text[:start] + body + text[end:]
