# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq accept``: the administrator's word on package findings."""

import os

from systraq.commands import USER
from systraq.errors import EXIT_OK
from systraq.pathcodec import escape


def register(commands):
    cmd = commands.add_parser(
        "accept", help="accept package files that differ from dpkg's sums",
        description="Record that the current content of each PATH, a finding "
                    "of the last 'systraq packages', is as the administrator "
                    "wants it: it is no longer a warning until it changes again.")
    cmd.add_argument("path", nargs="+", metavar="PATH", help="a path the last check named")
    cmd.set_defaults(func=run, runs_as=runs_as)


def runs_as(settings, args):
    return USER


def run(settings, conf, args):
    from systraq import packages
    done = packages.accept(settings, [os.fsencode(p) for p in args.path])
    for path in done:
        print(f"accepted: {escape(path)}")
    return EXIT_OK
