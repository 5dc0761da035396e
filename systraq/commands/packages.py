# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq packages``: the package check (packages.py), the check
against the archive (fromarchive.py), the repair of missing sums
(archive.py) and apt's pre-install hook."""

import os
import sys

from systraq.commands import (CALLER, ROOT, USER, chatty, output_options, print_json,
                              root_group, size_argument)
from systraq.errors import EXIT_INCOMPLETE, EXIT_OK, EXIT_WARNINGS, UsageError
from systraq.pathcodec import escape


def register(commands):
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
    cmd.add_argument("--fetch-limit", metavar="SIZE", type=size_argument,
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
    output_options(cmd, "the findings")
    cmd.set_defaults(func=run, runs_as=runs_as)


def runs_as(settings, args):
    if args.pre_install_hook:
        return CALLER       # apt runs it as root; it says nothing either way
    if args.from_archive and not args.repair_missing:
        return (ROOT, "packages --from-archive", "it reads every package file, and keeps "
                "its manifests where only root can")
    if args.repair_missing and not args.from_archive:
        return ROOT, "packages --repair-missing", "it writes dpkg's database"
    # The check keeps digests where the systraq user reads them: it runs
    # as that user, and names what only root could read.
    return USER


def run(settings, conf, args):
    if args.pre_install_hook and not conf.get("packages", "from_archive"):
        # apt runs the hook before every dpkg run: with the check against
        # the archive off, it has nothing to do, and must not cost apt the
        # loading of dpkg's database or python-apt.  What apt sends is
        # read, so that apt never writes into a closed pipe.
        if not sys.stdin.isatty():
            sys.stdin.buffer.read()
        return EXIT_OK
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
    # The dpkg and apt modules load python-apt and python-debian: only
    # the commands that need them import them, which keeps the half-hourly
    # contents run 30 ms shorter.
    from systraq import packages
    report = packages.run(settings, conf, names, quick=args.quick)
    for file, line, message in report.problems:
        where = f"{file}:{line}" if line is not None else file
        print(f"warning: {where}: {message}", file=sys.stderr)
    if args.json:
        print_json(report.as_dict())
    elif chatty(args) or names:
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


def _pre_install_hook(settings):
    # apt's DPkg::Pre-Install-Pkgs (share/apt/70systraq): never a
    # failure, never a word; what it finds is queued for the report.
    from systraq import fromarchive
    if settings.is_host_root and os.geteuid() != 0:
        return EXIT_OK
    return fromarchive.hook_main(settings, spool_group=root_group(settings))


def _from_archive(settings, conf, args, names):
    from systraq import fromarchive
    if args.repair_missing:
        raise UsageError("--repair-missing and --from-archive are separate runs")
    limit = conf.get("packages", "archive_fetch_limit") if args.fetch_limit is None \
        else args.fetch_limit
    result = fromarchive.run(settings, names, offline=args.offline, fetch_limit=limit,
                             spool_group=root_group(settings))
    build = result.build
    if args.json:
        print_json(result.as_dict())
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
