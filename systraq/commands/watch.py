# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq watch``: the realtime watcher (watch.py)."""

import errno
import os

from systraq import delivery
from systraq.commands import CALLER, USER
from systraq.errors import EXIT_OK, EXIT_WARNINGS, RunError, UsageError


def register(commands):
    cmd = commands.add_parser(
        "watch", help="watch the critical paths with inotify and alert within seconds",
        description="Watch the critical paths ([check] critical) with inotify and, "
                    "after a quiet window, look at what had events as the contents "
                    "job and the snapshot do, then mail an alert for critical "
                    "changes no package operation explains (at most [watch] "
                    "mails_per_hour an hour). Compares everything with the last "
                    "state at start; SIGHUP reads the configuration again, SIGTERM "
                    "stops. Runs as the systraq user (root drops to it); this is "
                    "systraq-watch.service. Refuses to run when [watch] enabled = no.")
    cmd.add_argument("--force", action="store_true",
                     help="watch even when [watch] enabled = no")
    cmd.add_argument("--once", action="store_true",
                     help="compare everything with the last state, alert, and exit "
                          "instead of watching")
    cmd.add_argument("--condition", action="store_true",
                     help="only say whether the watcher is enabled: exit 0 when "
                          "[watch] enabled = yes, 1 otherwise (for systemd's "
                          "ExecCondition=)")
    cmd.set_defaults(func=run, runs_as=runs_as)


def runs_as(settings, args):
    # As the service runs it: what only root may read stays with the
    # root job, and the state and spool stay the systraq user's.
    return CALLER if args.condition else USER


def run(settings, conf, args):
    enabled = conf.get("watch", "enabled")
    if args.condition:
        # For systemd's ExecCondition=: 1 to 254 skip the unit, quietly.
        return EXIT_OK if enabled else EXIT_WARNINGS
    if not enabled and not args.force:
        raise UsageError(f"watch: [watch] enabled = no in {os.fsdecode(settings.config_file)}; "
                         "set it to yes (dpkg-reconfigure systraq) or give --force")
    from systraq import watch

    def alert(current):
        with delivery.delivering(settings):
            return delivery.alert(settings, current)

    watcher = watch.Watcher(settings, conf, alert)
    if args.once:
        return EXIT_WARNINGS if watcher.once() else EXIT_OK
    try:
        return watcher.run()
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENOSPC):
            # inotify_init: fs.inotify.max_user_instances reached.
            raise RunError(f"watch: cannot start inotify: {exc.strerror}") from None
        raise
