# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq localsums``: the administrator's own digests (localsums.py)."""

import os

from systraq.commands import CALLER, USER, chatty, output_options, print_json
from systraq.errors import EXIT_OK, EXIT_WARNINGS
from systraq.pathcodec import escape


def register(commands):
    cmd = commands.add_parser(
        "localsums", help="verify the digests kept in /var/lib/systraq/systraq.sums",
        description="Check the files no package owns (/usr/local and others) "
                    "against the digests the administrator recorded in "
                    "/var/lib/systraq/systraq.sums (md5sum or sha256sum format; "
                    "the old systraq.md5sums is read when it is the only one).")
    cmd.add_argument("--update", nargs="+", metavar="PATH",
                     help="record the sha256 of each PATH (absolute, world-readable "
                          "regular files the administrator trusts) instead of checking")
    output_options(cmd, "the result")
    cmd.set_defaults(func=run, runs_as=runs_as)


def runs_as(settings, args):
    # Root may write the file the systraq user reads (--update refuses
    # files whose digest would disclose anything); the check is the
    # systraq user's.
    return CALLER if args.update else USER


def run(settings, conf, args):
    from systraq import localsums
    if args.update:
        # Root may write the file the systraq user reads; update refuses
        # files whose digest would disclose anything (not world-readable).
        done = localsums.update(settings, [os.fsencode(p) for p in args.update])
        for note in done.notes:
            print(note)
        for label, items in (("added", done.added), ("replaced", done.replaced),
                             ("unchanged", done.unchanged)):
            for path in items:
                print(f"{label}: {escape(path)}")
        return EXIT_OK
    result = localsums.run(settings)
    if args.json:
        print_json({"source": os.fsdecode(result.source) if result.source else None,
                     "legacy": result.legacy, "ok": len(result.ok),
                     "changed": [{"path": escape(p), "reason": result.reasons.get(p)}
                                 for p in result.changed],
                     "missing": [escape(p) for p in result.missing],
                     "not_readable": [escape(p) for p in result.unreadable],
                     "notes": result.notes})
    elif chatty(args):
        for note in result.notes:
            print(note)
        for path in result.changed:
            reason = result.reasons.get(path)
            print(f"changed: {escape(path)}" + (f" - {reason}" if reason else ""))
        for path in result.missing:
            print(f"missing: {escape(path)}")
        if result.unreadable:
            print(f"not readable: {len(result.unreadable)} files")
        if result.source is None:
            print("localsums: no systraq.sums; nothing declared")
        else:
            print(f"localsums: {len(result.ok)} ok, {len(result.changed)} changed, "
                  f"{len(result.missing)} missing")
    return EXIT_WARNINGS if result.changed or result.missing else EXIT_OK
