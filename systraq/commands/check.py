# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq check``: the hourly snapshot and contents of both modes, and
an alert at once for critical changes.

Under systemd the work is split as the daily report's is: the root modes
run in a confined root unit (``check --mode root``, which mails nothing),
then the pub modes and the alert as debian-systraq in the unit that may
start the MTA's setuid sendmail.  From cron (or by hand), one ``check``
as root does both, dropping to debian-systraq between them."""

import os
import sys

from systraq import contents, delivery, growing, snapshot, trees
from systraq.commands import CALLER, ROOT, become_system_user, chatty, root_group
from systraq.errors import EXIT_INCOMPLETE, EXIT_OK, EXIT_WARNINGS, SystraqError


def register(commands):
    cmd = commands.add_parser(
        "check", help="snapshot and contents, and an alert at once for critical paths",
        description="Run the snapshot and the contents job (both modes when run "
                    "as root, the root one first), then mail an alert at once "
                    "for changes to critical paths ([check] critical) that no "
                    "package operation explains and that were not alerted yet. "
                    "Everything else waits for the daily report.")
    cmd.add_argument("--mode", choices=("root", "pub"),
                     help="only the jobs of this mode: 'root' (as root) records "
                          "and queues, and mails nothing; 'pub' (root drops to "
                          "debian-systraq first) also mails the alert, with what "
                          "an earlier root run queued")
    cmd.add_argument("--no-alert", action="store_true",
                     help="record and queue only: the next check mails what is critical")
    cmd.add_argument("-v", "--verbose", action="store_true",
                     help="print a summary even when output is not a terminal")
    cmd.set_defaults(func=run, runs_as=runs_as)


def runs_as(settings, args):
    if args.mode == "root":
        return ROOT, "check --mode root", "the root mode reads what only root may read"
    # Root for the root modes, then the systraq user for the pub ones
    # and the alert (below); anybody else runs the pub ones.
    return CALLER


def run(settings, conf, args):
    as_root = settings.is_host_root and os.geteuid() == 0
    steps = []
    if args.mode != "pub" and (not settings.is_host_root or os.geteuid() == 0):
        group = root_group(settings)
        steps += [("snapshot --mode root",
                   lambda: snapshot.run(settings, conf, "root", spool_group=group)),
                  ("contents --mode root",
                   lambda: contents.run(settings, conf, "root", spool_group=group)),
                  ("logs that may only grow",
                   lambda: growing.run(settings, conf, spool_group=group)),
                  ("trees", lambda: trees.run(settings, conf, spool_group=group))]
    if args.mode != "root":
        # The contents job first: it rewrites the generated lists when
        # users changed, before the snapshot looks at /etc/systraq.
        steps += [("contents --mode pub", lambda: contents.run(settings, conf, "pub")),
                  ("snapshot --mode pub", lambda: snapshot.run(settings, conf, "pub"))]
    failed = []
    changes = 0
    for name, step in steps:
        if name.endswith("pub") and as_root:
            become_system_user()
            as_root = False
        try:
            result = step()
        except SystraqError as exc:
            # One collector failing must not keep the others, or the
            # alert, from running.
            failed.append(f"{name}: {exc.lines()[0]}")
            continue
        if not result.baseline:
            changes += len(result.records)
    alerted = ()
    if args.mode != "root" and not args.no_alert:
        with delivery.delivering(settings):
            alerted = delivery.alert(settings, conf)
    if chatty(args):
        print(f"check: {changes} changes queued, {len(alerted)} alerted at once")
    for line in failed:
        print(f"systraq: check: {line}", file=sys.stderr)
    if failed:
        return EXIT_INCOMPLETE
    return EXIT_WARNINGS if changes else EXIT_OK
