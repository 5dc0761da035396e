# SPDX-License-Identifier: GPL-2.0-or-later
"""The command line: ``systraq [OPTIONS] COMMAND``.

Parses the global options with argparse (each command adds its own, see
commands/), builds the settings and configuration, takes the privileges
the command runs with, runs it, and turns expected failures into one
line on stderr and an exit status (0 nothing to warn about, 1 warnings,
2 usage or configuration error, 3 could not complete).
"""

import argparse
import os
import sys

from systraq import __version__, commands, config
from systraq.errors import EXIT_INCOMPLETE, EXIT_OK, ConfigError, SystraqError, UsageError
from systraq.settings import Settings


def build_parser():
    parser = argparse.ArgumentParser(
        prog="systraq",
        description="Watch this Debian system and tell its administrator when "
                    "system files change.",
        epilog="See systraq(8) for the files, list formats and exit statuses.")
    parser.add_argument("--version", action="version",
                        version=f"systraq {__version__}")
    parser.add_argument("--config", metavar="FILE",
                        help="read settings from FILE instead of "
                             "/etc/systraq/systraq.conf (FILE must exist)")
    parser.add_argument("--root", metavar="DIR", default="/",
                        help="work on the system whose root directory is DIR: "
                             "every file systraq reads or writes is taken below "
                             "DIR (default: /)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.register_all(subparsers)
    return parser


def _run(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        # As the old systraq did: the report on stdout, for old cron lines
        # and habits.
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv) + ["report", "--stdout"])
    if not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root}: not a directory")
    settings = Settings(root=args.root, config_file=args.config)
    conf = config.load(settings.config_file, required=args.config is not None)
    for warning in conf.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    # Privileges change here, once, as the command says (commands/).
    commands.take(settings, args.runs_as(settings, args), args.command)
    return args.func(settings, conf, args)


def main(argv=None):
    # A file name may hold bytes the terminal's encoding cannot show; they
    # are escaped by pathcodec, and anything left is escaped, not fatal.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except AttributeError:
            pass
    try:
        return _run(argv)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_status
    except SystraqError as exc:
        for line in exc.lines():
            print(f"systraq: {line}", file=sys.stderr)
        return exc.exit_status
    except BrokenPipeError:
        # The reader went away (systraq status | head): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        where = f": {os.fsdecode(exc.filename)}" if exc.filename else ""
        print(f"systraq: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        return 130
