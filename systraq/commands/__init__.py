# SPDX-License-Identifier: GPL-2.0-or-later
"""The commands of ``systraq``: one module each.

Each module adds its own parser (``register(commands)``) and runs the
command (``run(settings, conf, args)``): it parses nothing else, calls
the collector or the report that does the work, and says what happened
(on a terminal, with --verbose, or as JSON).  Each says who runs it
(``runs_as(settings, args)``, see ``take``): privileges are changed in
this one place, by the command line before the command runs (and by
``check``, between its root and its pub steps).
"""

import argparse
import grp
import importlib
import json
import os
import pwd
import sys

from systraq import config
from systraq.errors import RunError, UsageError
from systraq.settings import SYSTEM_USER

NAMES = ("status", "snapshot", "contents", "lists", "packages", "accept", "localsums",
         "audit", "report", "check", "watch")

# Who runs a command (runs_as): the systraq user (root drops to it), root
# (refused otherwise), or whoever started it.
USER, ROOT, CALLER = "user", "root", "caller"


def register_all(commands):
    for name in NAMES:
        importlib.import_module(f"systraq.commands.{name}").register(commands)


def become_system_user():
    """Drop root for good: become debian-systraq, whose state and spool
    the pub jobs and the report keep."""
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise RunError(f"user {SYSTEM_USER} does not exist; is systraq installed?") from None
    os.setgroups([])
    os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
    os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)


def systraq_group():
    try:
        return grp.getgrnam(SYSTEM_USER).gr_gid
    except KeyError:
        raise RunError(f"group {SYSTEM_USER} does not exist; is systraq installed?") from None


def root_group(settings):
    """The group the root job's spooled records are given; None in a
    tree (tests) and when there is none."""
    if not settings.is_host_root:
        return None
    try:
        return systraq_group()
    except RunError:
        return None


def take(settings, who, command, why=None):
    """Become who runs ``command`` on this host: ROOT must be root (the
    error says ``why``), USER is the systraq user (root drops to it),
    CALLER stays.  ``who`` may be what a command's ``runs_as`` gives: a
    word, or (word, command, why).  Under --root (a tree, the tests)
    nobody changes."""
    if isinstance(who, tuple):
        who, command, why = who
    if not settings.is_host_root:
        return
    if who == ROOT and os.geteuid() != 0:
        raise UsageError(f"{command} must run as root" + (f" ({why})" if why else ""))
    if who == USER and os.geteuid() == 0:
        become_system_user()


def print_json(data):
    # A change record is printed as the spool keeps it (records.py).
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=lambda o: o.to_dict())
    sys.stdout.write("\n")


def chatty(args):
    """Whether to say what was done: by hand (a terminal, or -v); from
    cron or a timer, silence, the report tells."""
    return getattr(args, "verbose", False) or sys.stdout.isatty()


def output_options(cmd, what):
    """--json and -v, as every command that reports findings has them."""
    cmd.add_argument("--json", action="store_true", help=f"print {what} as JSON")
    cmd.add_argument("-v", "--verbose", action="store_true",
                     help=f"print {what} and a summary even when output is not "
                          "a terminal (from cron: nothing)")


def size_argument(text):
    try:
        return config.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
