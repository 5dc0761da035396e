# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq status``: the configuration, the lists, the state and the queue."""

import sys

from systraq import status
from systraq.commands import CALLER
from systraq.errors import EXIT_OK, EXIT_USAGE


def register(commands):
    cmd = commands.add_parser(
        "status", help="show configuration, list files, state and queue",
        description="Show the effective configuration, every list file with "
                    "how many paths it names now, the state directory and "
                    "what is queued but not yet delivered.")
    cmd.add_argument("--json", action="store_true",
                     help="print the status as JSON (keys are stable)")
    cmd.set_defaults(func=run, runs_as=runs_as)


def runs_as(settings, args):
    return CALLER


def run(settings, conf, args):
    data = status.collect(settings, conf)
    text = status.render_json(data) if args.json else status.render_text(data)
    sys.stdout.write(text)
    if data["problems"]:
        for line in data["problems"]:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
