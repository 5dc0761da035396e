# SPDX-License-Identifier: GPL-2.0-or-later
"""pytest plugin for debian/tests/unit: the suite must test the installed
package, never a systraq/ directory that happens to be on sys.path.

After collection, when every test module has imported what it uses, it
says in the log where the systraq modules came from, and stops the run if
any came from anywhere but Debian's dist-packages directory.
"""

import os
import sys

import pytest

INSTALLED = "/usr/lib/python3/dist-packages/systraq/"


def _strays():
    return sorted(f"{name} from {module.__file__}"
                  for name, module in list(sys.modules.items())
                  if (name == "systraq" or name.startswith("systraq."))
                  and not os.path.realpath(getattr(module, "__file__", "") or "")
                  .startswith(INSTALLED))


def pytest_collection_finish(session):
    strays = _strays()
    if strays:
        raise pytest.UsageError("not the installed package: " + "; ".join(strays))
    systraq = sys.modules["systraq"]
    loaded = sum(1 for name in sys.modules if name.split(".")[0] == "systraq")
    session.config.get_terminal_writer().line(
        f"systraq {systraq.__version__} imported from {systraq.__file__}; "
        f"all {loaded} systraq modules loaded come from {INSTALLED}")
