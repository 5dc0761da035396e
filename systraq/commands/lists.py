# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq lists``: the generated lists of the contents job (listgen.py)."""

import os

from systraq import listgen
from systraq.commands import USER
from systraq.errors import EXIT_OK


def register(commands):
    cmd = commands.add_parser(
        "lists", help="write the generated list filetraq.conf",
        description="Write filetraq.main.conf (every world-readable regular file "
                    "under /etc, less the ignored ones, and the authorized_keys "
                    "files the systraq user can see) and filetraq.conf (a header, "
                    "filetraq.main.conf and the administrator's "
                    "filetraq.tail.conf). Prints nothing unless asked.")
    cmd.add_argument("-v", "--verbose", action="store_true",
                     help="say how many entries were written")
    cmd.set_defaults(func=run, runs_as=runs_as)


def runs_as(settings, args):
    # The generated files belong to the systraq user, which rewrites them
    # at the start of a contents run when users changed.
    return USER


def run(settings, conf, args):
    done = listgen.generate(settings, conf)
    if args.verbose:
        print(f"filetraq.main.conf: {done.etc} files under /etc, {done.keys} "
              f"authorized_keys files; filetraq.tail.conf: {done.tail} lines; "
              + ("rewritten: " + ", ".join(os.fsdecode(os.path.basename(p))
                                          for p in done.changed)
                 if done.changed else "unchanged"))
    return EXIT_OK
