# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq report``: the report built (report.py) and delivered (delivery.py)."""

import os
import sys

from systraq import delivery, report
from systraq.commands import USER, chatty
from systraq.errors import EXIT_OK, EXIT_WARNINGS


def register(commands):
    cmd = commands.add_parser(
        "report", help="build the report and mail it as the policy says",
        description="Build the report from what is queued in the spool, the "
                    "findings that persist (packages, audit, local sums) and the "
                    "state of the system, and mail it to [report] mailto: daily "
                    "when it has warnings (or always, as mail_when says), and at "
                    "least every full_report_days days. Queued changes are marked "
                    "delivered only once the mail was accepted. Runs as the "
                    "systraq user (root drops to it).")
    cmd.add_argument("--stdout", action="store_true",
                     help="print the report instead of mailing it; nothing is "
                          "marked delivered")
    cmd.add_argument("--format", choices=("text", "json"), default="text",
                     help="text (default) or JSON with stable keys, see systraq(8)")
    cmd.add_argument("--full", action="store_true",
                     help="mail the report even when the policy would not")
    cmd.add_argument("-v", "--verbose", action="store_true",
                     help="say whether the report was mailed even when output is "
                          "not a terminal (from cron: nothing)")
    cmd.set_defaults(func=run, runs_as=runs_as)


def runs_as(settings, args):
    # The report reads what the systraq user and group may read, and
    # mails as that user.
    return USER


def build(settings, conf):
    """The report, with the system's state: the probes run here."""
    from systraq import probes
    delivery.finish_journal(settings)
    return report.gather(settings, conf, probe=probes.collect)


def run(settings, conf, args):
    if args.stdout:
        built = build(settings, conf)
        sys.stdout.write(report.render(built, args.format))
        return EXIT_WARNINGS if built.warnings else EXIT_OK
    with delivery.delivering(settings):
        built = build(settings, conf)
        mailed = delivery.due(built, conf, forced=args.full)
        kept = delivery.deliver(settings, conf, built, fmt=args.format, mailed=mailed)
    if chatty(args):
        to = conf.get("report", "mailto")
        count = len(built.warnings)
        if not mailed:
            print(f"report: {count} warnings; not mailed (mail_when = "
                  f"{conf.get('report', 'mail_when')}), its changes stay queued")
        elif kept is not None:
            print(f"report: {count} warnings; mail is off, kept in {os.fsdecode(kept)}")
        else:
            print(f"report: {count} warnings; mailed to {', '.join(to)}")
    return EXIT_WARNINGS if built.warnings else EXIT_OK
