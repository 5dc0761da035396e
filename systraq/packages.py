# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq packages``: every installed package file against dpkg's sums, and what changed since the last run.

dpkgdb decides which files to check and against which md5 (diversions,
path-exclude, files taken over by another package, conffiles from the
status file's Conffiles field).  The files are read by the scanner (the
same safe, parallel reader the snapshot uses).  This module judges:

changed          a file whose md5 differs from dpkg's: a warning.
missing          a file dpkg installed that is not there: a warning.
conffile         a conffile that differs from what its package shipped:
                 normally an admin's edit, listed apart; a warning when
                 it matches ``critical`` in systraq.conf.
without sums     a package dpkg has no md5sums file for: a warning
                 (``--repair-missing`` fetches them from the archive).
unexplained      a package file whose content changed between two runs
                 when no dpkg run naming its package was at work (its
                 inode's change time lies outside every such run, see
                 attribution.Judge): a warning even when the file matches
                 dpkg's sums, because that is what changing a file and
                 its sums line together looks like.  It stays until the
                 file has its earlier content again, or is accepted.
explained        a change since the last run made by an install, upgrade
                 or removal while it ran, labelled with it ("upgraded
                 10:32 by apt: ..."): information, not a warning.
fixed            a mismatch of an earlier run that is gone.
not verifiable   files this user cannot read, counted and named once.

A mismatch stays among the warnings, with the day it was first seen,
until it is fixed or accepted: ``systraq accept PATH`` records the
admin's decision together with the file's digest, so a later, different
change warns again.

State (``/var/lib/systraq/packages.state``, the statefile format): the
scanner's record of each package file as this user last read it (md5,
owner, mode), and in the header the time of the run and each current
finding's first day.  It holds digests of world-readable files only, as
the check runs as the systraq user.
"""

import fnmatch
import json
import os
import time

from systraq import dpkgdb, records, runner, scan, standing, statefile
from systraq.errors import RunError, UsageError
from systraq.fsutil import atomic_write
from systraq.pathcodec import escape, unescape
from systraq.scan import Scanner

STATE_FORMAT = 1
LOCK_WAIT = 10.0

WARNING_KINDS = ("changed", "missing", "unexplained", "without sums", "critical conffile")


def state_path(settings):
    return os.path.join(settings.state_dir, b"packages.state")


def accepted_path(settings):
    return os.path.join(settings.state_dir, b"packages.accepted")


class Finding:
    """One thing ``systraq packages`` has to say about one path or package."""

    __slots__ = ("kind", "path", "package", "version", "detail", "first_seen", "label",
                 "trusted")
    # The kinds that are warnings (a subclass has its own).
    warning_kinds = WARNING_KINDS

    def __init__(self, kind, path, package, version=None, detail=None,
                 first_seen=None, label=None, trusted=None):
        # For an unexplained change: the md5 the file had before it (a
        # world-readable file's), kept until the file has it again or the
        # change is explained or accepted.
        self.trusted = trusted
        self.kind = kind
        self.path = path            # bytes, or None for a package finding
        self.package = package      # dpkg's name for it (NAME or NAME:ARCH)
        self.version = version
        self.detail = detail
        self.first_seen = first_seen
        self.label = label

    @property
    def warning(self):
        return self.kind in self.warning_kinds

    def as_dict(self):
        out = {"kind": self.kind, "package": self.package, "warning": self.warning}
        if self.path is not None:
            out["path"] = escape(self.path)
        for key in ("version", "detail", "first_seen", "label"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def head(self):
        """The start of ``text``: what was found, and where."""
        return f"{self.kind}: {escape(self.path) if self.path is not None else self.package}"

    def text(self):
        parts = [self.head()]
        if self.path is not None:
            parts.append(f"({self.package})")
        if self.detail:
            parts.append(f"- {self.detail}")
        if self.label:
            parts.append(f"- {self.label}")
        if self.first_seen:
            parts.append(f"[since {self.first_seen}]")
        return " ".join(parts)


class Report:
    """The outcome of one run."""

    def __init__(self):
        self.findings = []
        self.unreadable = []        # paths, named once, not one finding each
        self.packages = 0
        self.files = 0
        self.read = 0               # files read and hashed (fewer with quick)
        self.problems = []          # (file, line, message) from dpkg's database
        self.accepted = 0
        self.damaged = None         # why the state could not be read back

    @property
    def warnings(self):
        return [f for f in self.findings if f.warning]

    def as_dict(self):
        return {"packages": self.packages, "files": self.files, "read": self.read,
                "findings": [f.as_dict() for f in self.findings],
                "not_verifiable": [escape(p) for p in self.unreadable],
                "accepted": self.accepted,
                "problems": [{"file": f, "line": n, "message": m}
                             for f, n, m in self.problems]}


def _load_accepted(settings):
    try:
        with open(accepted_path(settings), "rb") as handle:
            data = json.loads(handle.read().decode("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise RunError(f"{os.fsdecode(accepted_path(settings))}: cannot read: {exc}") from None
    return {unescape(path): digest for path, digest in data.items()}


def _token(record):
    """What ``accept`` records of a path's present state: its md5, or
    what stands there instead of a file."""
    if record is None:
        return "missing"
    entry = scan.decode(record)
    if entry.kind == "f" and entry.digest:
        return entry.digest
    if entry.kind == "l":
        return "symlink:" + escape(entry.target)
    return "type:" + entry.kind


def _critical(config, path):
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in config.get("packages", "critical"))


def run(settings, config, names=None, workers=None, now=None, save=True,
        spool_group=None, quick=False):
    """Check the packages ``names`` (all when None); return a Report.

    ``quick``: a file whose device, inode, size, mtime, ctime, mode and
    owner are those of the last run keeps the md5 read then, unread
    (``systraq packages --quick``: faster, weaker).

    With ``save``, the state is updated and new findings are spooled;
    checking named packages only never saves (it would forget the rest).
    """
    save = save and not names
    now = time.time() if now is None else now
    with runner.Run(settings, state_path(settings), STATE_FORMAT, command="systraq packages",
                    lock_wait=LOCK_WAIT, spool_group=spool_group, now=now) as transaction:
        return _locked_run(settings, config, names, workers, now, save, transaction, quick)


def _locked_run(settings, config, names, workers, now, save, transaction, quick):
    report = Report()
    # The state before dpkg's database: loading it holds the whole file
    # in memory for a moment, and the plan is not there yet (at 300,600
    # files the other order raised the peak by 27 MB).
    header, before = transaction.load()
    damaged = []
    if transaction.damaged is not None:
        damaged = [(os.fsdecode(state_path(settings)), None,
                    f"damaged ({transaction.damaged}); starting again")]
        report.damaged = transaction.damaged
    before = before or {}
    database = dpkgdb.load(settings)
    plan = database.plan(names)
    report.packages = len(plan.packages)
    report.problems = list(plan.problems) + damaged
    earlier = {unescape(p): v for p, v in (header or {}).get("findings", {}).items()}
    since = transaction.since_epoch if header else None
    accepted = _load_accepted(settings)
    today = time.strftime("%Y-%m-%d", time.localtime(now))

    del database     # its caches are not needed any more; workers fork from here
    # A list, not a set: a set of 100,000 paths costs 4 MB more, and
    # the scanner folds a path named twice into one record anyway.
    paths = list(plan.items.paths())
    # Every file is read (with ``quick``, those whose metadata changed);
    # only those whose record differs from the last run's come back from
    # the workers (see Scanner.records).
    scanner = Scanner(settings, "md5", workers=workers, previous=before, quick=quick)
    found = scanner.records(paths)
    report.files = len(plan.items)
    report.read = scanner.hashed
    # Which dpkg run made a change: one whose lines name the package, and
    # while which the file's inode changed (attribution.Judge).
    judge = transaction.judge(config.get("check", "critical")) if since is not None else None

    def explain(package, path, change):
        if judge is None:
            return None
        found = judge.judge(records.make("packages", change, escape(path), package=package.key),
                            package=package.key)
        return (found.explained or {}).get("label") or (
            "changed while dpkg ran" if found.explained else None)

    findings = {}
    quiet = set()          # accepted findings

    def is_accepted(path, record):
        """True, and counted, when the admin accepted ``path`` as it is now."""
        if path in accepted and accepted[path] == _token(record):
            report.accepted += 1
            quiet.add(path)
            return True
        return False

    explained = {}
    unreadable = set()
    plain_md5 = scan.plain_digest
    # Unexplained changes of earlier runs: they stay until undone,
    # explained or accepted, and the file's record alone does not say so.
    trusted = {path: v["trusted"] for path, v in earlier.items()
               if v.get("kind") == "unexplained" and v.get("trusted")}
    for item in plan.items:
        record = found.get(item.path)
        # The common case first, without decoding: a regular file that
        # matches its sum and is the very record of the last run.
        if (record is not None and item.md5 is not None
                and plain_md5(record) == item.md5
                and before.get(item.path, record) is record
                and item.path not in trusted):
            continue
        package = item.package
        if record is None:
            kind, detail = "missing", None
        else:
            entry = scan.decode(record)
            if entry.note == "not readable":
                unreadable.add(item.path)
                continue
            if entry.kind != "f":
                kind = "changed"
                detail = ("a symbolic link to " + escape(entry.target) if entry.kind == "l"
                          else f"not a regular file (type {entry.kind})")
            elif item.md5 is None or entry.digest == item.md5 or item.path != item.listed:
                # A diverted file, looked for at the diverted-to path:
                # debsums and dpkg --verify only check that it exists
                # there (compared with both when dpkgdb was written), and
                # the results are to be theirs.
                kind = None
            else:
                kind, detail = "changed", None
            if kind is None:
                # Matches dpkg's sums.  Did it change since the last run
                # with nothing in dpkg's log to say why?
                old = before.get(item.path)
                good = trusted.get(item.path)
                if good is None and old is not None and since is not None:
                    good = scan.decode(old).digest
                if good is not None and good != entry.digest:
                    label = explain(package, item.path, "unexplained")
                    if label is not None:
                        count = explained.get(package.key, (package, label, 0))[2]
                        explained[package.key] = (package, label, count + 1)
                    elif not is_accepted(item.path, record):
                        findings[item.path] = Finding(
                            "unexplained", item.path, package.key, package.version,
                            "content changed, but dpkg logged no operation on its "
                            "package", trusted=good)
                continue
        if item.conffile:
            kind = "critical conffile" if _critical(config, item.path) else "conffile"
            detail = "missing" if record is None else detail
        if kind in ("changed", "missing", "critical conffile") and is_accepted(item.path, record):
            continue
        findings[item.path] = Finding(kind, item.path, package.key, package.version, detail,
                                      label=explain(package, item.path, kind))

    for path, finding in findings.items():
        if finding.warning:
            finding.first_seen = earlier.get(path, {}).get("first_seen", today)
    # Only a run over every package can say an earlier finding is gone.
    fixed = [] if names else [
        Finding("fixed", path, earlier[path].get("package", "?"), None,
                "no longer differs from dpkg's sums")
        for path in sorted(earlier) if path not in findings and path not in quiet]
    report.findings = sorted(findings.values(), key=lambda f: f.path) + fixed
    report.findings += [Finding("explained", None, key, package.version,
                                f"{count} file{'s' if count != 1 else ''} changed", label=label)
                        for key, (package, label, count) in sorted(explained.items())]
    report.findings += [Finding("without sums", None, p.key, p.version,
                                "dpkg has no md5sums for it; "
                                "'systraq packages --repair-missing' fetches them")
                        for p in plan.without_sums]
    report.unreadable = sorted(unreadable)

    if save:
        _save(report, found, today, transaction)
    return report


def _save(report, found, today, transaction):
    current = {escape(f.path): {"first_seen": f.first_seen, "package": f.package,
                                "kind": f.kind, **({"trusted": f.trusted} if f.trusted else {})}
               for f in report.findings if f.path is not None and f.first_seen}
    header = {"time": transaction.now, "findings": current}
    new = [f for f in report.findings
           if f.kind in ("fixed", "explained") or f.first_seen == today]
    stamp = transaction.stamp
    spooled = [records.load(dict(f.as_dict(), source="packages", change=f.kind, time=stamp))
               for f in new]
    if report.damaged is not None:
        # In the report, not only on stderr: a damaged state may be tampering.
        spooled.insert(0, records.make("packages", "state damaged", detail=report.damaged,
                                       count=len(found), time=stamp))
    transaction.commit(header, found, spooled, source="packages", mode=0o640)
    save_current(transaction.settings, transaction.now, current, transaction.spool_group)


def save_current(settings, when, current, group=None):
    """The check's standing findings for the report (standing.py): every
    current warning, with the day it was first seen; ``current`` is the
    state header's ``findings`` ({escaped path: {kind, package,
    first_seen}})."""
    standing.save(settings, "packages", [
        records.make("packages", finding.get("kind", "changed"), path,
                     package=finding.get("package", "?"), first_seen=finding.get("first_seen"))
        for path, finding in sorted(current.items())], time=when, group=group)


def accept(settings, paths, now=None):
    """Record the admin's acceptance of the current state of ``paths``.

    Each must be a current finding of the last full run; its digest then
    (or "missing") is what is accepted.  Returns the accepted paths.
    """
    header, entries = statefile.load(state_path(settings), STATE_FORMAT)
    if header is None:
        raise UsageError("no package check has run yet; run 'systraq packages' first")
    current = {unescape(p) for p in header.get("findings", {})}
    unknown = [p for p in paths if p not in current]
    if unknown:
        raise UsageError("not a current finding of 'systraq packages': "
                         + ", ".join(escape(p) for p in unknown))
    accepted = _load_accepted(settings)
    for path in paths:
        accepted[path] = _token(entries.get(path))
    data = json.dumps({escape(p): d for p, d in sorted(accepted.items())}, indent=1,
                      sort_keys=True).encode("utf-8") + b"\n"
    atomic_write(accepted_path(settings), data, mode=0o640)
    return list(paths)
