# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq audit``: the security checks that need root (audit.py)."""

from systraq import records
from systraq.commands import ROOT, chatty, output_options, print_json, root_group
from systraq.errors import EXIT_OK, EXIT_WARNINGS
from systraq.pathcodec import escape

WHY = "it reads /etc/shadow and every home directory, and walks every local filesystem"


def register(commands):
    cmd = commands.add_parser(
        "audit", help="security checks that need root: accounts, shell start-up files, "
                      "setuid inventory",
        description="Run as root, daily before the report: accounts other than root "
                    "with uid 0, accounts with an empty password, shell start-up "
                    "files (system-wide, /etc/skel and every home) with a umask that "
                    "lets group or others write or a PATH with '.' or an empty "
                    "element; and an inventory of setuid and setgid files and of "
                    "programs with file capabilities on every local filesystem and "
                    "of world-writable and unowned files below [audit] system_dirs, "
                    "whose new items are queued for the report.")
    output_options(cmd, "the findings and changes")
    cmd.set_defaults(func=run, runs_as=runs_as)


def runs_as(settings, args):
    return ROOT, "audit", WHY


def run(settings, conf, args):
    from systraq import audit
    result = audit.run(settings, conf, spool_group=root_group(settings))
    changes = [r for r in result.records if r.get("change") != "baseline"]
    if args.json:
        print_json({"findings": result.findings, "records": result.records,
                    "counts": result.counts, "baseline": result.baseline,
                    "walked": result.walked, "unreadable": result.unreadable,
                    "skipped": [{"path": escape(p), "type": t} for p, t in result.skipped]})
    elif chatty(args):
        for item in result.findings + result.records:
            print(records.load(item, "audit").line())
        counts = ", ".join(f"{n} {k.replace('_', '-')}" for k, n in sorted(result.counts.items()))
        print(f"audit: {result.walked} entries, {counts}; {len(result.findings)} findings, "
              f"{0 if result.baseline else len(changes)} changes")
    return EXIT_WARNINGS if result.findings or changes else EXIT_OK
