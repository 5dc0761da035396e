# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq contents``: one run of the contents job (contents.py)."""

from systraq import contents, records
from systraq.commands import ROOT, USER, chatty, output_options, print_json, root_group
from systraq.errors import EXIT_OK, EXIT_WARNINGS


def register(commands):
    cmd = commands.add_parser(
        "contents", help="back up world-readable configuration; spool diffs",
        description="Keep backups of the files filetraq.conf names and of every "
                    "world-readable file under /etc, and queue a unified diff "
                    "(old -> new) for each changed text file, a notice for "
                    "binary, large and secret files, and a record for each "
                    "created, removed or replaced file. authorized_keys files "
                    "are shown as keys added and removed. Writes the generated "
                    "lists again first when users changed.")
    cmd.add_argument("--mode", choices=contents.MODES, default="pub",
                     help="pub: world-readable files, as the systraq user (root "
                          "drops to it); root: the authorized_keys files of homes "
                          "the systraq user cannot read, as root (default: pub)")
    output_options(cmd, "the change records")
    cmd.set_defaults(func=run, runs_as=runs_as)


def runs_as(settings, args):
    return (ROOT, "contents --mode root", None) if args.mode == "root" else USER


def run(settings, conf, args):
    group = root_group(settings) if args.mode == "root" else None
    result = contents.run(settings, conf, args.mode, spool_group=group)
    if args.json:
        print_json(result.records)
    elif chatty(args):
        for item in result.records:
            for line in records.describe(item):
                print(line)
        notes = []
        if result.private:
            notes.append(f"{result.private} listed files not world-readable, skipped")
        if result.unreadable:
            notes.append(f"{result.unreadable} not readable")
        changes = 0 if result.baseline else len(result.records)
        print(f"contents {args.mode}: {result.count} files, {changes} changes"
              + "".join(f", {n}" for n in notes))
    changed = not result.baseline and result.records
    return EXIT_WARNINGS if changed else EXIT_OK
