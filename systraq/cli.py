# SPDX-License-Identifier: GPL-2.0-or-later
"""The command line: ``systraq [OPTIONS] COMMAND``.

Parses arguments with argparse, builds the settings and configuration,
runs the command and turns expected failures into one line on stderr and
an exit status (0 nothing to warn about, 1 warnings, 2 usage or
configuration error, 3 could not complete).
"""

import argparse
import contextlib
import errno
import grp
import json
import os
import pwd
import sys

from systraq import __version__, config, contents, listgen, records, report, snapshot, status
from systraq.errors import (EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, EXIT_WARNINGS,
                            ConfigError, RunError, SystraqError, UsageError)
from systraq.fsutil import Busy, exclusive_lock
from systraq.pathcodec import escape
from systraq.settings import SYSTEM_USER, Settings


def _cmd_status(settings, conf, args):
    data = status.collect(settings, conf)
    text = status.render_json(data) if args.json else status.render_text(data)
    sys.stdout.write(text)
    if data["problems"]:
        for line in data["problems"]:
            print(line, file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _become_system_user():
    """Drop root for the pub snapshot: its state belongs to the systraq user."""
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise RunError(f"user {SYSTEM_USER} does not exist; is systraq installed?") from None
    os.setgroups([])
    os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
    os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)


def _systraq_group():
    try:
        return grp.getgrnam(SYSTEM_USER).gr_gid
    except KeyError:
        raise RunError(f"group {SYSTEM_USER} does not exist; is systraq installed?") from None


def _take_mode(settings, command, mode):
    """Become who runs ``command --mode MODE`` on this host: root stays root
    for the root mode and drops to the systraq user for the pub mode.
    Returns the group the root mode's spooled records are given (None
    otherwise)."""
    if not settings.is_host_root:
        return None
    if mode == "root":
        if os.geteuid() != 0:
            raise UsageError(f"{command} --mode root must run as root")
        return _systraq_group()
    if os.geteuid() == 0:
        _become_system_user()
    return None


def _print_json(data):
    # A change record is printed as the spool keeps it (records.py).
    json.dump(data, sys.stdout, indent=2, sort_keys=True, default=lambda o: o.to_dict())
    sys.stdout.write("\n")


def _cmd_snapshot(settings, conf, args):
    group = _take_mode(settings, "snapshot", args.mode)
    result = snapshot.run(settings, conf, args.mode, quick=args.quick, spool_group=group)
    if args.json:
        _print_json(result.records)
    elif args.verbose or sys.stdout.isatty():
        # By hand: say what was found.  From cron: silence, the report tells.
        for item in result.records:
            print(records.describe(item)[0])
        note = f", {result.unreadable} not readable" if result.unreadable else ""
        print(f"snapshot {args.mode}: {result.count} paths{note}, "
              f"{0 if result.baseline else len(result.records)} changes")
    changed = not result.baseline and result.records
    return EXIT_WARNINGS if changed else EXIT_OK


def _cmd_contents(settings, conf, args):
    group = _take_mode(settings, "contents", args.mode)
    result = contents.run(settings, conf, args.mode, spool_group=group)
    if args.json:
        _print_json(result.records)
    elif args.verbose or sys.stdout.isatty():
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


def _cmd_lists(settings, conf, args):
    if settings.is_host_root and os.geteuid() == 0:
        # The generated files belong to the systraq user, which rewrites
        # them at the start of a contents run when users changed.
        _become_system_user()
    done = listgen.generate(settings, conf)
    if args.verbose:
        print(f"filetraq.main.conf: {done.etc} files under /etc, {done.keys} "
              f"authorized_keys files; filetraq.tail.conf: {done.tail} lines; "
              + ("rewritten: " + ", ".join(os.fsdecode(os.path.basename(p))
                                          for p in done.changed)
                 if done.changed else "unchanged"))
    return EXIT_OK


def _cmd_packages(settings, conf, args):
    if args.pre_install_hook and not conf.get("packages", "from_archive"):
        # apt runs the hook before every dpkg run: with the check against
        # the archive off, it has nothing to do, and must not cost apt the
        # loading of dpkg's database or python-apt.  What apt sends is
        # read, so that apt never writes into a closed pipe.
        if not sys.stdin.isatty():
            sys.stdin.buffer.read()
        return EXIT_OK
    # The dpkg and apt modules load python-apt and python-debian: only
    # the commands that need them import them, which keeps the half-hourly
    # contents run 30 ms shorter.
    from systraq import packages
    names = args.package or None
    if args.pre_install_hook:
        return _pre_install_hook(settings)
    if (args.offline or args.fetch_limit is not None or args.scheduled) \
            and not args.from_archive:
        raise UsageError("--offline, --fetch-limit and --scheduled go with --from-archive")
    if args.scheduled and not conf.get("packages", "from_archive"):
        return EXIT_OK
    if args.from_archive:
        return _from_archive(settings, conf, args, names)
    if args.repair_missing:
        return _repair_missing(settings, names)
    if settings.is_host_root and os.geteuid() == 0:
        # The check keeps digests where the systraq user reads them: it
        # runs as that user, and names what only root could read.
        _become_system_user()
    report = packages.run(settings, conf, names, quick=args.quick)
    for file, line, message in report.problems:
        where = f"{file}:{line}" if line is not None else file
        print(f"warning: {where}: {message}", file=sys.stderr)
    if args.json:
        _print_json(report.as_dict())
    elif args.verbose or sys.stdout.isatty() or names:
        for finding in report.findings:
            print(finding.text())
        if report.unreadable:
            shown = ", ".join(escape(p) for p in report.unreadable[:5])
            more = ", ..." if len(report.unreadable) > 5 else ""
            print(f"not verifiable without root: {len(report.unreadable)} files "
                  f"({shown}{more})")
        accepted = f", {report.accepted} accepted" if report.accepted else ""
        print(f"packages: {report.packages} packages, {report.files} files, "
              f"{len(report.warnings)} warnings{accepted}")
    return EXIT_WARNINGS if report.warnings else EXIT_OK


def _root_group(settings):
    """The group the root job's spooled records are given; None in a
    tree (tests) and when there is none."""
    if not settings.is_host_root:
        return None
    try:
        return _systraq_group()
    except RunError:
        return None


def _pre_install_hook(settings):
    # apt's DPkg::Pre-Install-Pkgs (share/apt/70systraq): never a
    # failure, never a word; what it finds is queued for the report.
    from systraq import fromarchive
    if settings.is_host_root and os.geteuid() != 0:
        return EXIT_OK
    return fromarchive.hook_main(settings, spool_group=_root_group(settings))


def _from_archive(settings, conf, args, names):
    from systraq import fromarchive
    if args.repair_missing:
        raise UsageError("--repair-missing and --from-archive are separate runs")
    if settings.is_host_root and os.geteuid() != 0:
        raise UsageError("packages --from-archive must run as root (it reads every "
                         "package file, and keeps its manifests where only root can)")
    limit = conf.get("packages", "archive_fetch_limit") if args.fetch_limit is None \
        else args.fetch_limit
    result = fromarchive.run(settings, names, offline=args.offline, fetch_limit=limit,
                             spool_group=_root_group(settings))
    build = result.build
    if args.json:
        _print_json(result.as_dict())
    elif not args.scheduled and (args.verbose or sys.stdout.isatty() or names):
        for finding in result.findings:
            print(finding.text())
        if result.from_dpkg:
            print("checked against dpkg's md5sums only (no archive has them): "
                  + ", ".join(result.from_dpkg))
        if result.without_manifest:
            print(f"not checked, no manifest yet: {len(result.without_manifest)} packages ("
                  + ", ".join(result.without_manifest[:10])
                  + (", ..." if len(result.without_manifest) > 10 else "") + ")")
        if build.built or build.from_dpkg:
            print(f"manifests built: {build.built + len(build.from_dpkg)} in "
                  f"{build.seconds:.1f} s, {build.fetched_bytes} bytes downloaded, "
                  f"{build.reused_bytes} bytes taken from apt's cache")
        print(f"from archive: {result.packages} packages, {result.files} files, "
              f"{len(result.warnings)} warnings")
    for package, reason in build.failed:
        print(f"systraq: no manifest: {reason}", file=sys.stderr)
    if build.failed and build.deferred:
        print(f"systraq: {len(build.deferred)} more packages left for the next run: "
              "the downloads failed one after the other", file=sys.stderr)
    if result.warnings:
        return EXIT_WARNINGS
    return EXIT_INCOMPLETE if build.failed else EXIT_OK


def _repair_missing(settings, names):
    from systraq import archive, dpkgdb
    if settings.is_host_root and os.geteuid() != 0:
        raise UsageError("packages --repair-missing must run as root (it writes "
                         "dpkg's database)")
    database = dpkgdb.load(settings)
    plan = database.plan(names)
    if not plan.without_sums:
        print("every package checked has its sums")
        return EXIT_OK
    repaired, failed = archive.repair_missing(settings, database, plan.without_sums)
    for package in repaired:
        print(f"repaired: {package.key} {package.version}: sums written from the archive")
    for package, reason in failed:
        print(f"systraq: not repaired: {reason}", file=sys.stderr)
    return EXIT_INCOMPLETE if failed else EXIT_OK


def _cmd_accept(settings, conf, args):
    from systraq import packages
    if settings.is_host_root and os.geteuid() == 0:
        _become_system_user()
    done = packages.accept(settings, [os.fsencode(p) for p in args.path])
    for path in done:
        print(f"accepted: {escape(path)}")
    return EXIT_OK


def _cmd_localsums(settings, conf, args):
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
    if settings.is_host_root and os.geteuid() == 0:
        _become_system_user()
    result = localsums.run(settings)
    if args.json:
        _print_json({"source": os.fsdecode(result.source) if result.source else None,
                     "legacy": result.legacy, "ok": len(result.ok),
                     "changed": [{"path": escape(p), "reason": result.reasons.get(p)}
                                 for p in result.changed],
                     "missing": [escape(p) for p in result.missing],
                     "not_readable": [escape(p) for p in result.unreadable],
                     "notes": result.notes})
    elif args.verbose or sys.stdout.isatty():
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


def _cmd_audit(settings, conf, args):
    from systraq import audit
    group = None
    if settings.is_host_root:
        if os.geteuid() != 0:
            raise UsageError("audit must run as root (it reads /etc/shadow and every "
                             "home directory, and walks every local filesystem)")
        group = _systraq_group()
    result = audit.run(settings, conf, spool_group=group)
    changes = [r for r in result.records if r.get("change") != "baseline"]
    if args.json:
        _print_json({"findings": result.findings, "records": result.records,
                     "counts": result.counts, "baseline": result.baseline,
                     "walked": result.walked, "unreadable": result.unreadable,
                     "skipped": [{"path": escape(p), "type": t} for p, t in result.skipped]})
    elif args.verbose or sys.stdout.isatty():
        for item in result.findings + result.records:
            print(records.load(item, "audit").line())
        counts = ", ".join(f"{n} {k.replace('_', '-')}" for k, n in sorted(result.counts.items()))
        print(f"audit: {result.walked} entries, {counts}; {len(result.findings)} findings, "
              f"{0 if result.baseline else len(changes)} changes")
    return EXIT_WARNINGS if result.findings or changes else EXIT_OK


# A report or an alert waits this long for another one to finish.
REPORT_LOCK_WAIT = 60.0


@contextlib.contextmanager
def _delivering(settings):
    """One report or alert at a time: both read the spool and mark it."""
    lock = exclusive_lock(os.path.join(settings.state_dir, b"report.lock"), REPORT_LOCK_WAIT)
    try:
        lock.__enter__()
    except Busy:
        raise RunError(f"another systraq report or check is delivering (lock "
                       f"{os.fsdecode(lock.path)}); gave up after "
                       f"{REPORT_LOCK_WAIT:g} s") from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


def _cmd_report(settings, conf, args):
    if settings.is_host_root and os.geteuid() == 0:
        # The report reads what the systraq user and the systraq group
        # may read, and mails as that user.
        _become_system_user()
    if args.stdout:
        built = report.gather(settings, conf)
        sys.stdout.write(report.render(built, args.format))
        return EXIT_WARNINGS if built.warnings else EXIT_OK
    with _delivering(settings):
        built = report.gather(settings, conf)
        mailed = report.due(built, conf, forced=args.full)
        kept = report.deliver(settings, conf, built, fmt=args.format, mailed=mailed)
    if args.verbose or sys.stdout.isatty():
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


def _cmd_check(settings, conf, args):
    """Snapshot and contents of both modes, then an alert for critical paths."""
    steps = []
    if not settings.is_host_root or os.geteuid() == 0:
        group = _systraq_group() if settings.is_host_root else None
        steps += [("snapshot --mode root",
                   lambda: snapshot.run(settings, conf, "root", spool_group=group)),
                  ("contents --mode root",
                   lambda: contents.run(settings, conf, "root", spool_group=group))]
    # The contents job first: it rewrites the generated lists when users
    # changed, before the snapshot looks at /etc/systraq.
    steps += [("contents --mode pub", lambda: contents.run(settings, conf, "pub")),
              ("snapshot --mode pub", lambda: snapshot.run(settings, conf, "pub"))]
    failed = []
    changes = 0
    for name, step in steps:
        if name.endswith("pub") and settings.is_host_root and os.geteuid() == 0:
            _become_system_user()
        try:
            result = step()
        except SystraqError as exc:
            # One collector failing must not keep the others, or the
            # alert, from running.
            failed.append(f"{name}: {exc.lines()[0]}")
            continue
        if not result.baseline:
            changes += len(result.records)
    with _delivering(settings):
        alerted = report.alert(settings, conf)
    if args.verbose or sys.stdout.isatty():
        print(f"check: {changes} changes queued, {len(alerted)} alerted at once")
    for line in failed:
        print(f"systraq: check: {line}", file=sys.stderr)
    if failed:
        return EXIT_INCOMPLETE
    return EXIT_WARNINGS if changes else EXIT_OK


def _cmd_watch(settings, conf, args):
    """The realtime watcher; see watch.py."""
    enabled = conf.get("watch", "enabled")
    if args.condition:
        # For systemd's ExecCondition=: 1 to 254 skip the unit, quietly.
        return EXIT_OK if enabled else EXIT_WARNINGS
    if not enabled and not args.force:
        raise UsageError(f"watch: [watch] enabled = no in {os.fsdecode(settings.config_file)}; "
                         "set it to yes (dpkg-reconfigure systraq) or give --force")
    if settings.is_host_root and os.geteuid() == 0:
        # As the service runs it: what only root may read stays with the
        # root job, and the state and spool stay the systraq user's.
        _become_system_user()
    from systraq import watch

    def alert(current):
        with _delivering(settings):
            return report.alert(settings, current)

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


def _output_options(cmd, what):
    """--json and -v, as every command that reports findings has them."""
    cmd.add_argument("--json", action="store_true", help=f"print {what} as JSON")
    cmd.add_argument("-v", "--verbose", action="store_true",
                     help=f"print {what} and a summary even when output is not "
                          "a terminal (from cron: nothing)")


def _size_argument(text):
    try:
        return config.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    cmd = commands.add_parser(
        "status", help="show configuration, list files, state and queue",
        description="Show the effective configuration, every list file with "
                    "how many paths it names now, the state directory and "
                    "what is queued but not yet delivered.")
    cmd.add_argument("--json", action="store_true",
                     help="print the status as JSON (keys are stable)")
    cmd.set_defaults(func=_cmd_status)

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
    _output_options(cmd, "the change records")
    cmd.set_defaults(func=_cmd_snapshot)

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
    _output_options(cmd, "the change records")
    cmd.set_defaults(func=_cmd_contents)

    cmd = commands.add_parser(
        "lists", help="write the generated list filetraq.conf",
        description="Write filetraq.main.conf (every world-readable regular file "
                    "under /etc, less the ignored ones, and the authorized_keys "
                    "files the systraq user can see) and filetraq.conf (a header, "
                    "filetraq.main.conf and the administrator's "
                    "filetraq.tail.conf). Prints nothing unless asked.")
    cmd.add_argument("-v", "--verbose", action="store_true",
                     help="say how many entries were written")
    cmd.set_defaults(func=_cmd_lists)

    cmd = commands.add_parser(
        "packages", help="verify installed package files against dpkg's sums",
        description="Check every file of the installed packages (or of those "
                    "named) against dpkg's md5sums and conffile sums, name "
                    "packages without sums, and tell changes a package "
                    "operation made from changes nothing in dpkg's log "
                    "explains. Runs as the systraq user (root drops to it).")
    cmd.add_argument("package", nargs="*", metavar="PKG",
                     help="check only these packages (NAME or NAME:ARCH); the "
                          "state is then left as it was")
    cmd.add_argument("--repair-missing", action="store_true",
                     help="for packages without sums, fetch the .deb of the "
                          "installed version and write its sums (root)")
    cmd.add_argument("--quick", action="store_true",
                     help="read again only files whose device, inode, size, "
                          "mtime, ctime, mode or owner changed since the last "
                          "run; the others keep the md5 read then (faster, weaker)")
    cmd.add_argument("--from-archive", action="store_true",
                     help="check sha256, mode, owner, group and symlink targets "
                          "against manifests made from the signed .deb of each "
                          "installed version, fetched once per version (root)")
    cmd.add_argument("--offline", action="store_true",
                     help="with --from-archive: fetch nothing, use only the "
                          "manifests already built")
    cmd.add_argument("--fetch-limit", metavar="SIZE", type=_size_argument,
                     help="with --from-archive: download at most SIZE (e.g. 200M) "
                          "in this run, the rest in the next ones (default: "
                          "[packages] archive_fetch_limit, 0 for no limit)")
    cmd.add_argument("--scheduled", action="store_true",
                     help="with --from-archive: as the daily job runs it: nothing "
                          "unless [packages] from_archive = yes, and silent")
    cmd.add_argument("--pre-install-hook", action="store_true",
                     help="apt's DPkg::Pre-Install-Pkgs hook: check the packages "
                          "apt is about to replace against their manifests and "
                          "queue mismatches; silent, and never fails")
    _output_options(cmd, "the findings")
    cmd.set_defaults(func=_cmd_packages)

    cmd = commands.add_parser(
        "accept", help="accept package files that differ from dpkg's sums",
        description="Record that the current content of each PATH, a finding "
                    "of the last 'systraq packages', is as the administrator "
                    "wants it: it is no longer a warning until it changes again.")
    cmd.add_argument("path", nargs="+", metavar="PATH", help="a path the last check named")
    cmd.set_defaults(func=_cmd_accept)

    cmd = commands.add_parser(
        "localsums", help="verify the digests kept in /var/lib/systraq/systraq.sums",
        description="Check the files no package owns (/usr/local and others) "
                    "against the digests the administrator recorded in "
                    "/var/lib/systraq/systraq.sums (md5sum or sha256sum format; "
                    "the old systraq.md5sums is read when it is the only one).")
    cmd.add_argument("--update", nargs="+", metavar="PATH",
                     help="record the sha256 of each PATH (absolute, world-readable "
                          "regular files the administrator trusts) instead of checking")
    _output_options(cmd, "the result")
    cmd.set_defaults(func=_cmd_localsums)

    cmd = commands.add_parser(
        "audit", help="security checks that need root: accounts, shell start-up files, "
                      "setuid inventory",
        description="Run as root, daily before the report: accounts other than root "
                    "with uid 0, accounts with an empty password, shell start-up "
                    "files (system-wide, /etc/skel and every home) with a umask that "
                    "lets group or others write or a PATH with '.' or an empty "
                    "element; and an inventory of setuid and setgid files on every "
                    "local filesystem and of world-writable and unowned files below "
                    "[audit] system_dirs, whose new items are queued for the report.")
    _output_options(cmd, "the findings and changes")
    cmd.set_defaults(func=_cmd_audit)

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
    cmd.set_defaults(func=_cmd_report)

    cmd = commands.add_parser(
        "check", help="snapshot and contents, and an alert at once for critical paths",
        description="Run the snapshot and the contents job (both modes when run "
                    "as root, the root one first), then mail an alert at once "
                    "for changes to critical paths ([check] critical) that no "
                    "package operation explains and that were not alerted yet. "
                    "Everything else waits for the daily report.")
    cmd.add_argument("-v", "--verbose", action="store_true",
                     help="print a summary even when output is not a terminal")
    cmd.set_defaults(func=_cmd_check)

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
    cmd.set_defaults(func=_cmd_watch)
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
