# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq snapshot``: one snapshot of a mode (snapshot.py)."""

from systraq import records, snapshot
from systraq.commands import ROOT, USER, chatty, output_options, print_json, root_group
from systraq.errors import EXIT_OK, EXIT_WARNINGS


def register(commands):
    cmd = commands.add_parser(
        "snapshot", help="record owner, mode and digest of listed files; spool changes",
        description="Record type, owner, mode, size, mtime, symlink target and "
                    "digest of every path the mode's lists name, compare with the "
                    "previous run and queue a change record for each difference. "
                    "Prints the changes when run on a terminal, nothing from cron.")
    cmd.add_argument("--mode", choices=snapshot.MODES, default="pub",
                     help="pub: world-readable files, as the systraq user (root "
                          "drops to it); root: files only root may read, as root "
                          "(default: pub)")
    cmd.add_argument("--quick", action="store_true",
                     help="reuse the previous digest of a file whose device, inode, "
                          "size, mtime, ctime, mode and owner are unchanged "
                          "(faster, weaker)")
    output_options(cmd, "the change records")
    cmd.set_defaults(func=run, runs_as=runs_as)


def runs_as(settings, args):
    # Root stays root for the root mode; the pub mode's state is the
    # systraq user's.
    return (ROOT, "snapshot --mode root", None) if args.mode == "root" else USER


def run(settings, conf, args):
    group = root_group(settings) if args.mode == "root" else None
    result = snapshot.run(settings, conf, args.mode, quick=args.quick, spool_group=group)
    if args.json:
        print_json(result.records)
    elif chatty(args):
        # By hand: say what was found.  From cron: silence, the report tells.
        for item in result.records:
            print(records.describe(item)[0])
        note = f", {result.unreadable} not readable" if result.unreadable else ""
        print(f"snapshot {args.mode}: {result.count} paths{note}, "
              f"{0 if result.baseline else len(result.records)} changes")
    changed = not result.baseline and result.records
    return EXIT_WARNINGS if changed else EXIT_OK
