# SPDX-License-Identifier: GPL-2.0-or-later
"""The report and the alerts: what the administrator reads, and its delivery.

This module owns turning what the collectors queued in the spool, the
findings that persist (packages, the root audit, local sums) and the
probes of the system into the report, in text or JSON, and handing it
over: by mail, or to a file when mail is off.  It decides when to mail
(the policy), keeps what could not be delivered, and writes the syslog
lines and the optional node_exporter textfile.

The report has three sections:

1. Warnings: every change nothing explains and every failed check, most
   serious first, one entry per path (the snapshot's and the contents
   job's records of one file are told together, with the diff when the
   file is world-readable).  Empty, it says "No warnings." in one line.
2. Changes made by package operations: one line per dpkg run (an apt
   run, or dpkg alone), with how many packages and watched files it
   changed and whether the daily package check found them matching their
   packages.  A change is the operation's when a package dpkg logged
   between the run that saw the change and the one before owns the path.
   A change to a file no such package owns stays a warning, even when an
   operation ran in the same window (``/etc/passwd`` changed by
   ``adduser`` in a postinst looks just like a hand edit, and the diff
   tells which it was).
3. System state, for reference: systraq's own notes (the first baseline
   while it is being recorded, also named under the title; first runs, fixed
   findings, when the root audit last ran), then the probes (see
   probes.py) and the local parts.

Delivery and "nothing lost": the report is built from every pending spool
batch.  Only after sendmail exited 0 (or the file was written, when mail
is off) are those batches moved to ``spool/delivered/``; before that a
small journal (``report.sent``) records which batches the mail covered,
so that a run killed between the two finishes the move instead of
mailing them again.  A failed delivery keeps the message in
``/var/lib/systraq/reports/`` and leaves the batches pending: the next
run mails them, once.

Alerts (``systraq check``, hourly): the warnings on a critical path
(``[check] critical``) not yet alerted are mailed at once.  Which records
were alerted is kept in ``alerts.state`` until their batches are
delivered by the daily report, which still lists them, marked with the
time the alert went out.

JSON (``--format json``) keys, stable: ``format`` (1), ``host``,
``generated`` and ``since`` (ISO 8601 UTC; ``since`` null when nothing
is pending), ``subject``, ``warnings`` (list of ``rank`` 0 most serious,
``source``, ``change``, ``text``, ``critical``, ``detail`` (lines),
optional ``path``, ``alerted``, ``first_seen``),
``package_operations`` (list of ``time``, ``label``, ``packages``,
``files``, ``verified`` (true, false or null: not yet checked),
``text``), ``notes`` (lines), ``system`` (list of ``title`` and
``lines``), ``probes`` (the probes' data, see probes.py), ``pending``
(``batches`` and ``records`` this report covers) and ``baselines``
(list of ``name``, ``against``, ``left``, ``runs``, ``breaks``: see
baselines.py).

Baselines: the report and the alert end with one line per collector
state, "NAME: against X, left Y" (baselines.py): X is the state the
first run since the previous mail compared against, which must be the Y
that mail showed.  What the last mail showed is kept in report.state
("baselines"), saved with the delivery.
"""

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import re
import stat
import syslog
import time

from systraq import baselines, mail
from systraq.errors import RunError
from systraq.fsutil import atomic_write
from systraq.pathcodec import escape, unescape
from systraq.settings import SYSTEM_USER
from systraq.spool import Spool, epoch as epoch_of, stamp as iso

FORMAT = 1
# dpkg and apt write their logs while a systraq run may be going on, and
# a run's "since" is when it ended, not when it looked at the file: widen
# each window by this much on both sides.
OVERLAP = 300
# Events of one apt (or dpkg) run further apart than this are two runs.
RUN_GAP = 1800

# Reports kept in reports/ when mail is off.
KEEP_REPORTS = 100

# Ranks: 0 is read first.
CRITICAL, SERIOUS, CHANGE, MINOR = 0, 1, 2, 3

# Package findings that are warnings (packages.WARNING_KINDS), and how
# serious each is; without sums is an old gap, not an event.
_PACKAGE_RANKS = {"changed": SERIOUS, "missing": SERIOUS, "unexplained": SERIOUS,
                  "critical conffile": SERIOUS, "without sums": MINOR}
_AUDIT_RANKS = {"uid 0": CRITICAL, "empty password": CRITICAL, "setuid added": CRITICAL,
                "setgid added": CRITICAL, "world-writable added": CHANGE,
                "unowned added": CHANGE, "shell startup": CHANGE}
_PROBE_RANKS = {"raid degraded": SERIOUS, "filesystem full": SERIOUS,
                "new listening socket": SERIOUS, "part failed": CHANGE}
# Record kinds that are notes, not warnings.
_NOTES = {"baseline", "fixed", "explained"}


def state_path(settings):
    return os.path.join(settings.state_dir, b"report.state")


# The suffix of a damaged state file of the report's, kept for the admin.
DAMAGED = b".damaged"
# The suffix of a journal or ledger written before its mail is sent.
NEXT = b".next"


def alerts_path(settings):
    return os.path.join(settings.state_dir, b"alerts.state")


def journal_path(settings):
    return os.path.join(settings.state_dir, b"report.sent")


def reports_dir(settings):
    return os.path.join(settings.state_dir, b"reports")


def _local(epoch, now):
    """"10:32" today, "2026-11-20 10:32" another day (local time)."""
    when, today = time.localtime(epoch), time.localtime(now)
    return time.strftime("%H:%M" if when[:3] == today[:3] else "%Y-%m-%d %H:%M", when)


# Made by the postinst before it starts the first baseline of every job
# outside dpkg, locked while that runs, removed when it is done
# (debian/systraq.postinst, /usr/libexec/systraq/first-baseline).
FIRST_BASELINE = b"first-baseline"


def first_baseline(settings, now):
    """A note while the first baseline is not done, else None."""
    path = os.path.join(settings.state_dir, FIRST_BASELINE)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"the first baseline: {os.fsdecode(path)}: {exc.strerror}"
    try:
        since = _local(os.fstat(fd).st_mtime, now)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return (f"the first baseline is still being recorded (since {since}): until it "
                    "is done, a report cannot tell all that changed since the installation")
        return (f"the first baseline has not finished (started {since}) and is not running: "
                "'systemctl start systraq-baseline' (or /usr/libexec/systraq/first-baseline "
                "without systemd) records it")
    finally:
        os.close(fd)


def _load_json(path, what):
    """The JSON object in ``path``; None when there is none.  A damaged
    file (cut short, not JSON, not an object) is moved aside to
    NAME.damaged and taken as absent, so that the report starts again
    instead of failing at every run; the next report warns about it
    (``_damaged``), since only a failing disk or tampering damages a file
    written atomically."""
    try:
        with open(path, "rb") as handle:
            value = json.loads(handle.read().decode("utf-8"))
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return value
    except FileNotFoundError:
        return None
    except ValueError:
        os.replace(path, path + DAMAGED)
        return None
    except OSError as exc:
        raise RunError(f"{os.fsdecode(path)}: cannot read {what}: {exc}") from None


def _damaged(settings):
    """The report's own state files found damaged, moved aside."""
    try:
        names = os.listdir(settings.state_dir)
    except FileNotFoundError:
        return []
    return sorted(os.path.join(settings.state_dir, n) for n in names if n.endswith(DAMAGED))


def _save_json(path, data, mode=0o640):
    atomic_write(path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8") + b"\n",
                 mode=mode)


# -- describing one record ------------------------------------------------

def describe(record):
    """A record as the lines a person reads: a head line, then details
    (a diff, keys added and removed) that belong under it."""
    source = record.get("source", "?")
    change = record.get("change", "?")
    if change in ("baseline", "state damaged"):
        what = source.split("_")[0]
        if "mode" in record:
            what += f" {record['mode']}"
        if change == "state damaged":
            # The issue that asked for this: it may be tampering, and
            # the admin must be told so, not only that a file was bad.
            return [f"{what}: state damaged (a failing disk, or tampering), started "
                    f"again from a fresh baseline ({record.get('detail', '?')})"]
        count = record.get("count", 0)
        if source.startswith("contents"):
            text = f"{what}: first run, {count} files backed up"
        else:
            text = f"{what}: first run, {count} paths recorded"
        if record.get("adopted"):
            text += f" ({record['adopted']} backups of the old package taken over)"
        return [text]
    if source == "packages":
        return [_describe_package(record)]
    if source == "snapshot":
        return [_describe_snapshot(record)]
    if source.startswith("contents"):
        return _describe_content(record)
    if "text" in record:
        return [record["text"]]
    if source == "audit":
        return [_describe_audit(record)]
    # A record of a newer systraq: shown as its data, never dropped.
    return [f"{record.get('path', source)}: {change} "
            + json.dumps({k: v for k, v in record.items()
                          if k not in ("source", "change", "path")}, sort_keys=True)]


_KINDS = {"f": "file", "d": "directory", "l": "symlink", "p": "FIFO", "s": "socket",
          "c": "character device", "b": "block device"}


def _kind(letter):
    return _KINDS.get(letter, letter or "?")


def _describe_snapshot(item):
    change = item["change"]
    if change == "added":
        fact = f"new {_kind(item.get('kind'))}, "
        if item.get("kind") != "l":
            fact += f"mode {item.get('mode')}, "
        fact += f"{item.get('owner')}:{item.get('group')}"
    elif change == "removed":
        fact = f"{_kind(item.get('kind'))} removed"
    elif change == "content":
        fact = "content changed"
        if "size_before" in item:
            fact += f" ({item['size_before']} -> {item['size_after']} bytes)"
    elif change == "type":
        fact = f"{_kind(item.get('before'))} replaced by a {_kind(item.get('after'))}, "
        if item.get("after") != "l":     # a symlink's mode means nothing
            fact += f"mode {item.get('mode')}, "
        fact += f"{item.get('owner')}:{item.get('group')}"
    elif change == "target":
        fact = f"symlink retargeted {item['before']} -> {item['after']}"
    elif "before" in item:
        fact = f"{change} {item['before']} -> {item['after']}"
    else:
        fact = change
    if "target" in item:
        fact += f", pointing to {item['target']}"
    if item.get("flags"):
        fact += " [" + ", ".join(item["flags"]) + "]"
    return f"{item['path']}: {fact}"


_CONTENT_WORDS = {"content": "content changed", "created": "new file", "removed": "removed",
                  "symlink": "now a symlink", "type": "no longer a regular file",
                  "keys": "authorized keys changed"}


def _describe_content(item):
    change = item["change"]
    head = f"{item['path']}: {_CONTENT_WORDS.get(change, change)}"
    if "target" in item:
        head += f", pointing to {item['target']}"
    if "type" in item:
        head += f" ({item['type']})"
    if "perm" in item:
        head += f" (mode {item['perm']})"
    if item.get("binary"):
        head += f", binary file: {item['size']} bytes"
    if "note" in item:
        head += f" ({item['note']})"
    lines = [head]
    lines += ["  " + key for key in item.get("keys", ())]
    if "diff" in item:
        lines += item["diff"].rstrip("\n").split("\n")
        if item.get("cut"):
            lines.append(f"[{item['cut']} more lines not shown]")
    return lines


_PACKAGE_WORDS = {"changed": "differs from its package's sums",
                  "missing": "missing, installed by its package",
                  "unexplained": "changed with no package operation to explain it",
                  "critical conffile": "critical conffile edited",
                  "fixed": "matches its package again",
                  "without sums": "dpkg has no md5sums for it"}


def _describe_package(item):
    change = item["change"]
    words = _PACKAGE_WORDS.get(change, change)
    if item.get("path"):
        text = f"{item['path']}: {words} ({item.get('package', '?')})"
    else:
        text = f"package {item.get('package', '?')}: {words}"
    if item.get("label"):
        text += f" - {item['label']}"
    elif item.get("detail") and change not in ("without sums", "fixed", "unexplained",
                                               "missing"):
        text += f" - {item['detail']}"
    # The day it was first seen is the report entry's to show.
    return text


def _describe_audit(item):
    text = f"{item.get('path', '?')}: {item['change']}"
    if "mode" in item:
        text += f" (mode {item['mode']}, {item.get('owner', '?')}:{item.get('group', '?')})"
    return text


# -- the report's parts ----------------------------------------------------

class Item:
    """One entry of the Warnings section: a path (or package, account,
    check) and everything pending about it."""

    def __init__(self, key, rank, source, change, path=None, labelled=True):
        self.key = key
        # False when the texts say the path themselves (checks, probes).
        self.labelled = labelled
        self.rank = rank
        self.source = source
        self.change = change
        self.path = path
        self.lines = []          # head lines of each record, in order
        self.detail = []
        self.critical = False
        self.alerted = None
        self.unalerted = False     # a record of it was in no alert yet
        self.first_seen = None
        self.refs = []           # (batch name, index) of the spool records
        self.explained_by = None  # the dpkg event that made the change
        # A critical path no package ships, changed while dpkg ran (its
        # maintainer scripts add accounts to /etc/passwd): the operation's
        # label.  It stays a warning in the report but is no alert.
        self.during = None
        self.during_event = None

    def add(self, lines):
        head, *detail = lines
        if self.labelled and self.path is not None and head.startswith(self.path + ": "):
            # One entry per path: "PATH: fact; fact".
            head = head[len(self.path) + 2:]
        if head.startswith("content changed"):
            head = self._merge_content(head)
        if head is not None and head not in self.lines:
            self.lines.append(head)
        self.detail += detail

    _SIZES = re.compile(r"content changed \((\d+) -> (\d+) bytes\)")

    def _merge_content(self, head):
        """Two runs' (or two collectors') "content changed" are one fact:
        sizes from the first before to the last after.  Returns what is
        left to add (None when merged)."""
        for number, line in enumerate(self.lines):
            if not line.startswith("content changed"):
                continue
            old, new = self._SIZES.fullmatch(line), self._SIZES.fullmatch(head)
            if old and new:
                self.lines[number] = (f"content changed ({old.group(1)} -> "
                                      f"{new.group(2)} bytes)")
            elif new:
                self.lines[number] = head
            return None
        return head

    @property
    def head(self):
        facts = "; ".join(self.lines)
        return f"{self.path}: {facts}" if self.labelled and self.path is not None else facts

    @property
    def text(self):
        text = self.head
        notes = []
        if self.critical:
            notes.append("critical")
        if self.first_seen:
            notes.append(f"since {self.first_seen}")
        if self.alerted:
            notes.append(f"alert sent {self.alerted}")
        if self.during:
            notes.append(f"changed while dpkg ran: {self.during}")
        return text + (" [" + "; ".join(notes) + "]" if notes else "")

    def as_dict(self):
        out = {"rank": self.rank, "source": self.source, "change": self.change,
               "text": self.text, "critical": self.critical, "detail": self.detail}
        if self.path is not None:
            out["path"] = self.path
        if self.alerted:
            out["alerted"] = self.alerted
        if self.first_seen:
            out["first_seen"] = self.first_seen
        if self.during:
            out["during"] = self.during
        return out


class Operation:
    """One dpkg run, as apt (or dpkg alone) made it."""

    def __init__(self, first):
        self.events = [first]
        self.files = 0
        self.verified = None

    @property
    def start(self):
        return self.events[0].time

    @property
    def end(self):
        return self.events[-1].time

    def takes(self, event):
        last = self.events[-1]
        return (event.time - last.time <= RUN_GAP and
                (event.tool, event.commandline, event.requested_by)
                == (last.tool, last.commandline, last.requested_by))

    @property
    def packages(self):
        return sorted({e.package for e in self.events if e.action != "configure"}
                      or {e.package for e in self.events})

    def label(self, now):
        first = self.events[0]
        what = first.commandline or first.tool
        who = f" for {first.requested_by}" if first.requested_by else ""
        return _printable(f"{what} at {_local(self.start, now)}{who}")

    def text(self, now):
        count = len(self.packages)
        text = (f"{self.label(now)}: {count} package{'s' if count != 1 else ''}, "
                f"{self.files} watched file{'s' if self.files != 1 else ''}")
        if self.verified is True:
            return text + " - all match their packages"
        if self.verified is False:
            return text + " - some differ from their packages (see the warnings)"
        return text + " - not yet checked against dpkg's sums"

    def as_dict(self, now):
        return {"time": iso(self.start), "label": self.label(now), "packages": self.packages,
                "files": self.files, "verified": self.verified, "text": self.text(now)}


def _printable(text):
    """Control and invisible characters of a log line escaped, as file
    names are."""
    return "".join(ch if ch.isprintable() else escape(ch.encode("utf-8", "surrogateescape"))
                   for ch in text)


class Report:
    def __init__(self, host, now):
        self.host = host
        self.now = now
        self.since = None
        self.warnings = []
        self.operations = []
        self.notes = []
        self.sections = []
        self.data = {}
        self.batches = []
        self.records = 0
        self.batch_records = {}   # batch name -> records in it
        self.state = {}           # report.state as it was when this was built
        self.last_mailed = None
        self.probe_state = None
        self.damaged = []         # state files found damaged, moved aside
        self.baselines = []       # baselines.Line, one per state
        self.first_baseline = None  # the note while it is not done

    @property
    def subject(self):
        count = len(self.warnings)
        if not count:
            return f"[systraq] {self.host}: no warnings"
        return f"[systraq] {self.host}: {count} warning{'s' if count != 1 else ''}"

    def as_dict(self):
        return {"format": FORMAT, "host": self.host, "generated": iso(self.now),
                "since": iso(self.since) if self.since is not None else None,
                "subject": self.subject,
                "warnings": [w.as_dict() for w in self.warnings],
                "package_operations": [o.as_dict(self.now) for o in self.operations],
                "notes": list(self.notes),
                "system": [{"title": t, "lines": list(ls)} for t, ls in self.sections],
                "probes": self.data,
                "pending": {"batches": len(self.batches), "records": self.records},
                "baselines": [line.as_dict() for line in self.baselines]}


# -- gathering -----------------------------------------------------------

class _Explainer:
    """Which package operation made a change: dpkg's log, apt's history
    and dpkg's file lists, loaded only when a change needs them."""

    def __init__(self, settings, since, notes):
        self.settings = settings
        self.since = since
        self.notes = notes
        self._events = None
        self._busy = []
        self._starts = set()
        self._database = None
        self._registry = None
        self._obsolete_files = None

    def events(self):
        if self._events is None:
            from systraq import attribution
            log = attribution.Attribution(self.settings)
            try:
                self._events = log.events(self.since)
                self._busy = log.busy(self.since)
                self._starts = log.starts()
            except attribution.LogUnreadable as exc:
                self.notes.append(f"package operations unknown: {exc}")
                self._events = []
        return self._events

    def busy(self):
        """When dpkg logged anything since the last report (epoch seconds)."""
        self.events()
        return self._busy

    def owners(self, path):
        """The packages a change of ``path`` (bytes) may come from: those
        whose file list names it; for the copies dpkg and ucf leave beside
        a configuration file they did not overwrite (``.dpkg-dist``,
        ``.ucf-dist``...), the packages of that file; the package that
        registered it with ucf; and systraq itself for the files its
        upgrade from the old package removes."""
        base = _ARTEFACT.sub(b"", path)
        owners = self._dpkg_owners(path) or self._dpkg_owners(base)
        owners += [package for package in self._ucf().get(base, ()) if package not in owners]
        if base in self._obsolete() and "systraq" not in owners:
            owners.append("systraq")
        return owners

    def made_by_scripts(self, path, events):
        """The event of ``events`` whose maintainer script most likely
        made the unowned file ``path`` (bytes), or None.

        Two signs, either enough: the file holds what a file of the
        operated package holds (md5 against its md5sums: a default the
        script copied into place, as readline-common's postinst copies
        /usr/share/readline/inputrc to /etc/inputrc); or the file's inode
        changed while dpkg was at work, between two of its logged steps
        at most a few minutes apart (python3's postinst writes
        /etc/python3/debian_config from a here-document).  The change
        time is the kernel's: no program sets it back."""
        try:
            fd = os.open(self.settings.host(path), os.O_RDONLY | os.O_NOFOLLOW
                         | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None  # gone, or not readable by the report: unexplained
        try:
            info = os.fstat(fd)
            data = (os.read(fd, COPY_LIMIT + 1) if stat.S_ISREG(info.st_mode)
                    and info.st_size <= COPY_LIMIT else None)
        except OSError:
            return None
        finally:
            os.close(fd)
        database = self._db()
        if data is not None and database:
            digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
            operated = {event.package.partition(":")[0] for event in events}
            shipping = {package.name for package in database.installed()
                        if package.name in operated
                        and digest in (database.sums(package) or {}).values()}
            for event in reversed(events):
                if event.package.partition(":")[0] in shipping:
                    return event
        return _changed_during(info, events, self.busy(), self._starts)

    def changed_during(self, path, events):
        """The event of ``events`` while whose dpkg run the inode of
        ``path`` (bytes) last changed, or None.  Only its change time is
        looked at (lstat: /etc/shadow's is visible to the systraq user,
        its content is not)."""
        try:
            info = os.lstat(self.settings.host(path))
        except OSError:
            return None
        return _changed_during(info, events, self.busy(), self._starts)

    def _db(self):
        """dpkg's database, loaded at the first need; False when it
        cannot be read (a note says so)."""
        if self._database is None:
            from systraq import dpkgdb
            try:
                self._database = dpkgdb.load(self.settings)
            except RunError as exc:
                self.notes.append(f"package owners unknown: {exc}")
                self._database = False
        return self._database

    def _dpkg_owners(self, path):
        database = self._db()
        return [p.key for p in database.owners(path)] if database else []

    def _ucf(self):
        if self._registry is None:
            self._registry = {}
            for line in _lines_of(self.settings.ucf_registry):
                package, _, path = line.partition(b" ")
                if path:
                    self._registry.setdefault(path.strip(), []).append(package.decode(
                        "ascii", "replace"))
        return self._registry

    def _obsolete(self):
        if self._obsolete_files is None:
            self._obsolete_files = {line.strip() for line in _lines_of(self.settings.obsolete_files)
                                    if line.startswith(b"/")}
        return self._obsolete_files

    def window(self, record):
        """The events between the run before the record's and its own."""
        end = epoch_of(record.get("time"))
        if end is None:
            return []
        start = epoch_of(record.get("since")) or self.since
        return [e for e in self.events() if start - OVERLAP <= e.time <= end + OVERLAP]


# A file a maintainer script copied into place is a default, small; a
# larger one is not read to find out.
COPY_LIMIT = 1 << 20
# The longest a single dpkg step (one package's unpack or maintainer
# script) is taken to run: a file changed between two logged steps no
# further apart was changed while dpkg was at work.
DPKG_STEP = 300

# What dpkg (conffile handling, dpkg-maintscript-helper) and ucf leave
# beside a configuration file: the path without it is the packaged file.
_ARTEFACT = re.compile(rb"\.(?:dpkg-(?:dist|old|new|bak|tmp|remove|backup)|ucf-(?:dist|old|new))$")


def _changed_during(info, events, busy, starts=frozenset()):
    """The event of ``events`` after which dpkg was still at work when
    the inode ``info`` (a stat result) last changed, or None: its change
    time lies between two lines dpkg logged (``busy``: the times of its
    events and of the status lines between and after them, so the end
    of the last postinst counts) at most DPKG_STEP apart.  The change
    time is the kernel's: no program sets it back."""
    ctime = info.st_ctime
    times = sorted(set(busy) | {e.time for e in events})
    # Between the last line of one dpkg run and the "startup" of the next
    # (apt runs dpkg several times; an admin runs apt twice) no dpkg was
    # at work: a pair that ends on a startup line is no run's.
    if not any(before - 1 <= ctime <= after + 1 and after - before <= DPKG_STEP
               and (after == before or after not in starts)
               for before, after in zip(times, times[1:] + times[-1:])):
        return None
    started = [e for e in events if e.time <= ctime + 1]
    return max(started, key=lambda e: e.time) if started else None


def _lines_of(path):
    """The lines of a small system file; none when it is absent or unreadable."""
    try:
        with open(path, "rb") as handle:
            return handle.read().splitlines()
    except OSError:
        return []


def _critical(config, path):
    if path is None:
        return False
    raw = unescape(path)
    return any(fnmatch.fnmatchcase(raw, pattern) for pattern in config.get("check", "critical"))


def _rank(record):
    source, change = record.get("source", ""), record.get("change", "")
    if change == "state damaged":
        return CRITICAL
    if source == "packages":
        return _PACKAGE_RANKS.get(change, SERIOUS)
    if source == "audit":
        return _AUDIT_RANKS.get(change, CHANGE)
    if source == "probes":
        return _PROBE_RANKS.get(change, CHANGE)
    if change == "world-readable secret" or any(
            f.endswith("gained") for f in record.get("flags", ())):
        return SERIOUS
    return CHANGE


def _is_note(record):
    change = record.get("change")
    if change in _NOTES:
        return True
    # What went away from the audit's inventory is good news.
    return record.get("source") == "audit" and change.endswith(" removed")


class _Gatherer:
    def __init__(self, settings, config, now, host):
        self.settings = settings
        self.config = config
        self.report = Report(host, now)
        self.items = {}
        self.operations = []
        self.alerts = _load_alerts(settings)
        self.explained_counts = []
        self.explainer = None
        self.operations_built = False

    def item(self, key, record, path=None, labelled=True):
        item = self.items.get(key)
        rank = _rank(record)
        if item is None:
            item = self.items[key] = Item(key, rank, record.get("source", "?"),
                                          record.get("change", "?"), path, labelled)
        item.rank = min(item.rank, rank)
        return item

    def spool(self, explain=True):
        """Every pending record, sorted into warnings, operations and notes."""
        report = self.report
        spool = Spool(self.settings)
        report.batches = spool.pending()
        loaded = []
        for batch in report.batches:
            try:
                records = spool.records(batch)
            except (OSError, ValueError) as exc:
                # Left pending and said: a batch we cannot read is not lost.
                report.notes.append(f"spool batch {os.fsdecode(batch.name)} unreadable: {exc}")
                continue
            loaded.append((batch, records))
            report.records += len(records)
            report.batch_records[batch.name] = len(records)
        stamps = [epoch_of(r.get("since") or r.get("time")) for _, rs in loaded for r in rs]
        stamps = [s for s in stamps if s is not None]
        report.since = min(stamps) if stamps else None
        since = report.since if report.since is not None else report.now - 86400
        self.explainer = _Explainer(self.settings, since - OVERLAP, report.notes) if explain else None

        for batch, records in loaded:
            alerted = self.alerts.get(os.fsdecode(batch.name), {})
            for index, record in enumerate(records):
                self._record(batch, index, record, alerted)

    def _record(self, batch, index, record, alerted):
        report = self.report
        change = record.get("change")
        if _is_note(record):
            if change == "explained":
                self._explained(record)
            else:
                report.notes.append(describe(record)[0])
            return
        path = record.get("path") if change != "state damaged" else None
        key = ("path", path) if path is not None else ("record", batch.name, index)
        item = self.item(key, record, path)
        item.add(describe(record))
        item.refs.append((os.fsdecode(batch.name), index))
        if (record.get("source") in ("snapshot", "contents", "contents_root")
                and _critical(self.config, path)):
            item.critical = True
            item.rank = CRITICAL
        if record.get("first_seen"):
            item.first_seen = item.first_seen or record["first_seen"]
        if str(index) in alerted.get("records", {}):
            item.alerted = alerted["records"][str(index)]
        else:
            item.unalerted = True
        if record.get("source") in ("snapshot", "contents", "contents_root") and path:
            self._attribute(item, record, path)

    def _attribute(self, item, record, path):
        """A change a package operation made belongs to it."""
        if self.explainer is None:
            return
        events = self.explainer.window(record)
        if not events:
            return
        raw = unescape(path)
        owners = set(self.explainer.owners(raw))
        names = {o.partition(":")[0] for o in owners}
        for event in reversed(events):
            if event.package in owners or event.package.partition(":")[0] in names:
                item.explained_by = event
                return
        if not owners and not item.critical and record.get("change") in ("created", "added"):
            # No package ships it: a maintainer script may have made it
            # (made_by_scripts says when that is what the evidence shows).
            # Never for a critical path: a file dropped into /etc/cron.d
            # during an upgrade stays a warning.
            event = self.explainer.made_by_scripts(raw, events)
            if event is not None:
                item.explained_by = event
        elif not owners and item.critical:
            # A maintainer script's adduser writes /etc/passwd, /etc/group
            # and their shadows.  When the inode last changed while dpkg
            # was at work, the change is the operation's: listed in the
            # report with it, not alerted at once.  A change made after
            # the run (or alongside it but finished later) is alerted.
            event = self.explainer.changed_during(raw, events)
            if event is not None:
                item.during_event = event

    def _operation(self, event):
        self.build_operations()
        for operation in self.operations:
            if event in operation.events:
                return operation
        return None

    def _explained(self, record):
        # The package check's own count of files an operation changed
        # ("3 files changed"); added to the operation by package name in
        # finish().
        match = re.match(r"(\d+) file", record.get("detail", ""))
        self.explained_counts.append((record.get("package", ""),
                                      int(match.group(1)) if match else 0))

    def build_operations(self):
        """Group the window's events into dpkg runs (once)."""
        if self.explainer is None or self.operations_built:
            return
        self.operations_built = True
        for event in self.explainer.events():
            if self.operations and self.operations[-1].takes(event):
                self.operations[-1].events.append(event)
            else:
                self.operations.append(Operation(event))

    def finish(self, packages_state=None):
        report = self.report
        self.build_operations()
        for key, item in list(self.items.items()):
            event = item.explained_by
            if event is not None:
                operation = self._operation(event)
                if operation is not None:
                    operation.files += 1
                    del self.items[key]
            during = item.during_event
            if during is not None:
                operation = self._operation(during)
                item.during = (operation.label(self.report.now) if operation is not None
                               else _printable(f"{during.tool} at "
                                               f"{_local(during.time, self.report.now)}"))
        for package, count in self.explained_counts:
            name = package.partition(":")[0]
            for operation in reversed(self.operations):
                if any(e.package.partition(":")[0] == name for e in operation.events):
                    operation.files += count
                    break
        self._verify(packages_state)
        report.operations = self.operations

    def warnings(self):
        """The warnings, most serious first; critical paths first among equals."""
        return sorted(self.items.values(),
                      key=lambda i: (i.rank, not i.critical, i.path or "", i.text))

    def _verify(self, packages_state):
        """Whether the package check since each operation found its files
        matching their packages."""
        if not packages_state:
            return
        checked = packages_state.get("time")    # epoch seconds (packages._save)
        wrong = {f.get("package", "").partition(":")[0]
                 for f in packages_state.get("findings", {}).values()
                 if f.get("kind") != "without sums"}
        for operation in self.operations:
            if checked is None or checked < operation.end:
                continue
            names = {p.partition(":")[0] for p in operation.packages}
            operation.verified = not (names & wrong)

    def persistent(self, packages_state, audit_current, localsums_result):
        """Findings that stand until fixed: they are warnings in every
        report, whether or not a spool record about them is pending."""
        for path, finding in sorted((packages_state or {}).get("findings", {}).items()):
            kind = finding.get("kind", "changed")
            record = {"source": "packages", "change": kind, "path": path,
                      "package": finding.get("package", "?"),
                      "first_seen": finding.get("first_seen")}
            item = self.items.get(("path", path))
            if item is None:
                item = self.item(("path", path), record, path)
                item.add([_describe_package(record)])
            item.first_seen = item.first_seen or finding.get("first_seen")
        if audit_current is not None:
            age = self.report.now - audit_current.get("time", 0)
            if age > 2 * 86400:
                self._check_warning("audit", "audit late",
                                    "the root audit (systraq audit) has not run since "
                                    + _local(audit_current.get("time", 0), self.report.now))
            for finding in audit_current.get("findings", ()):
                key = ("audit", finding.get("change"), finding.get("path"),
                       finding.get("account"), finding.get("line"))
                item = self.item(key, finding, finding.get("path"),
                                 labelled="text" not in finding)
                item.add([finding.get("text") or _describe_audit(finding)])
            skipped = audit_current.get("skipped") or []
            if skipped:
                self.report.notes.append(
                    "root audit did not walk: " + ", ".join(
                        f"{item.get('path')} ({item.get('type')})" for item in skipped))
            counts = audit_current.get("counts")
            if counts:
                self.report.notes.append(
                    "root audit " + _local(audit_current.get("time", 0), self.report.now) + ": "
                    + ", ".join(f"{n} {k.replace('_', '-')}" for k, n in sorted(counts.items())))
        if localsums_result is not None:
            for path in localsums_result.changed:
                self._check_warning("localsums", "changed", f"{_esc(path)}: differs from "
                                    "its digest in systraq.sums"
                                    + (f" ({localsums_result.reasons[path]})"
                                       if localsums_result.reasons.get(path) else ""),
                                    path=_esc(path), rank=SERIOUS)
            for path in localsums_result.missing:
                self._check_warning("localsums", "missing", f"{_esc(path)}: listed in "
                                    "systraq.sums, missing", path=_esc(path), rank=SERIOUS)
            if localsums_result.source is not None:
                self.report.notes.append(f"local sums: {len(localsums_result.ok)} files match "
                                         "systraq.sums")

    def _check_warning(self, source, change, text, path=None, rank=None):
        record = {"source": source, "change": change}
        key = ("check", source, change, path or text)
        item = self.item(key, record, path, labelled=False)
        if rank is not None:
            item.rank = rank
        item.add([text])
        return item

    def baselines(self, state):
        """A line per state, and a warning per change of one that no
        run of systraq made (see baselines.py)."""
        self.report.baselines = baselines.lines(self.settings, state.get("baselines"))
        for line in self.report.baselines:
            for when, expected, found in line.breaks:
                at = f"found at {_local(when, self.report.now)}" if when else "found now"
                item = self._check_warning(
                    "baselines", "state changed outside systraq",
                    f"systraq's state {line.name} is not the one its last run left "
                    f"(left {expected}, {at} {found}): a change it hid would not be "
                    "reported", path=None)
                item.rank = CRITICAL

    def probes(self, result):
        for warning in result.warnings:
            item = self._check_warning("probes", warning.get("change", "?"), warning["text"],
                                       path=warning.get("path"))
            item.rank = _PROBE_RANKS.get(warning.get("change"), CHANGE)
        self.report.sections += result.sections
        self.report.data = result.data
        self.report.probe_state = result.state


def _esc(path):
    return escape(path)


def _load_alerts(settings):
    data = _load_json(alerts_path(settings), "the alert ledger") or {}
    return data.get("batches", {})


def _packages_header(settings):
    """The header of packages.state (time of the last full check and its
    current findings), read without loading every file's record."""
    from systraq import packages, statefile
    try:
        return statefile.load_header(packages.state_path(settings), packages.STATE_FORMAT)
    except statefile.DamagedState:
        # The package check says so itself when it next runs.
        return None
    except OSError as exc:
        raise RunError(f"{os.fsdecode(packages.state_path(settings))}: cannot read: "
                       f"{exc.strerror}") from None


def gather(settings, config, now=None, host=None, probe=None, audit_current=None,
           localsums=None, packages_state=None, explain=True):
    """Build the Report.

    ``probe``: probes.collect or a stand-in (None: the real probes).
    ``audit_current``, ``localsums`` (a localsums Result),
    ``packages_state`` (packages.state's header): given by tests; None
    reads them from the system (False: leave that source out).
    """
    now = time.time() if now is None else now
    host = host or mail.host_name()
    _finish_journal(settings)
    gatherer = _Gatherer(settings, config, now, host)
    gatherer.spool(explain=explain)
    if packages_state is None:
        packages_state = _packages_header(settings)
    if audit_current is None:
        from systraq import audit
        try:
            audit_current = audit.current(settings)
        except RunError as exc:
            gatherer._check_warning("audit", "audit unreadable", str(exc))
            audit_current = None
    if localsums is None:
        from systraq import localsums as sums
        try:
            localsums = sums.verify(settings)
        except (RunError, OSError) as exc:
            gatherer._check_warning("localsums", "unreadable", f"systraq.sums: {exc}")
            localsums = None
    gatherer.persistent(packages_state or None, audit_current or None, localsums or None)
    gatherer.finish(packages_state or None)
    state = load_state(settings)
    damaged = _damaged(settings)
    for path in damaged:
        name = os.fsdecode(os.path.basename(path)[:-len(DAMAGED)])
        gatherer._check_warning("report", "state damaged",
                                f"{name} was damaged (a failing disk, or tampering) and "
                                f"started again; kept as {os.fsdecode(path)}", rank=CRITICAL)
    if probe is None:
        from systraq import probes
        probe = probes.collect
    if probe is not False:
        gatherer.probes(probe(settings, config, state.get("probes") or {}, now=now))
    gatherer.baselines(state)
    report = gatherer.report
    note = first_baseline(settings, now)
    if note:
        report.notes.insert(0, note)
        report.first_baseline = note
    report.warnings = gatherer.warnings()
    report.state = state
    report.last_mailed = state.get("last_mailed")
    report.damaged = damaged
    return report


def load_state(settings):
    return _load_json(state_path(settings), "the report state") or {}


# -- rendering -----------------------------------------------------------

def _heading(number, title):
    head = f"{number}. {title}"
    return [head, "-" * len(head)]


def render_text(report):
    lines = [f"systraq report for {report.host}",
             f"Generated {time.strftime('%Y-%m-%d %H:%M %z', time.localtime(report.now))}"
             + (f", covering changes since "
                f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(report.since))}"
                if report.since is not None else ", nothing was pending") + ".",
             ""]
    if report.first_baseline:
        lines[-1:] = ["Note: " + report.first_baseline + ".", ""]
    lines += _heading(1, "Warnings")
    if not report.warnings:
        lines.append("No warnings.")
    for item in report.warnings:
        lines.append("* " + item.text)
        lines += ["    " + line if line else "" for line in item.detail]
    lines.append("")
    lines += _heading(2, "Changes made by package operations")
    if not report.operations:
        lines.append("None.")
    for operation in report.operations:
        lines.append("* " + operation.text(report.now))
    lines.append("")
    lines += _heading(3, "System state, for reference")
    lines.append("systraq")
    notes = list(report.notes) or ["nothing to note"]
    lines += ["  " + note for note in notes]
    for title, body in report.sections:
        lines.append(title)
        lines += ["  " + line if line else "" for line in body]
    lines += _baseline_lines(report.baselines)
    return "\n".join(lines) + "\n"


def _baseline_lines(lines):
    """The baselines block that ends a report or an alert."""
    if not lines:
        return []
    return (["", "Baselines (each \"against\" must be the \"left\" of the previous mail)"]
            + ["  " + line.text for line in lines])


def render_json(report):
    return json.dumps(report.as_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render(report, fmt):
    return render_json(report) if fmt == "json" else render_text(report)


# -- delivery ------------------------------------------------------------

def due(report, config, forced=False):
    """Whether this report is to be mailed under the configured policy."""
    if forced or report.warnings or config.get("report", "mail_when") == "always":
        return True
    days = config.get("report", "full_report_days")
    last = report.last_mailed
    # An hour of slack: the daily job starts at a random minute.
    return days > 0 and (last is None or report.now - last >= days * 86400 - 3600)


def log_warnings(report, log=None):
    """Each warning as one key=value line to syslog."""
    log = log or _syslog
    for item in report.warnings:
        fields = {"warning": item.change, "source": item.source, "rank": item.rank}
        if item.path is not None:
            fields["path"] = item.path
        if item.critical:
            fields["critical"] = "yes"
        fields["text"] = item.head
        log(syslog.LOG_WARNING, " ".join(f"{k}={_kv(v)}" for k, v in fields.items()))


def _kv(value):
    value = str(value)
    if value and not re.search(r'[\s"=\\]', value) and value.isprintable():
        return value
    return json.dumps(value, ensure_ascii=True)


def _syslog(priority, line):
    syslog.openlog("systraq", syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.syslog(priority, line)


def deliver(settings, config, report, fmt="text", sendmail=mail.SENDMAIL, log=None,
            mailed=True):
    """Mail ``report`` (or keep it in reports/ when mail is off), then mark
    its batches delivered and keep the state for the next report.

    ``mailed``: False when the policy says not to mail this one; the
    batches then stay pending for the next report that is mailed.
    Raises DeliveryError after keeping the message when sendmail failed.
    """
    log = log or _syslog
    log_warnings(report, log)
    if not mailed:
        _write_textfile(settings, config, report, report.last_mailed, log)
        return None
    body = render(report, fmt)
    to = config.get("report", "mailto")
    directory = reports_dir(settings)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(report.now))
    if not to:
        where = _keep(directory, f"report-{stamp}.txt", body.encode("utf-8"))
        # With mail off these files are the reports: keep a season of
        # daily ones, not every one ever written.
        kept = sorted(n for n in os.listdir(directory) if n.startswith(b"report-"))
        for name in kept[:-KEEP_REPORTS]:
            os.unlink(os.path.join(directory, name))
    else:
        message = mail.build(to, report.subject, body, SYSTEM_USER, host=report.host,
                             now=report.now)
        prepared = _prepare_commit(settings, report)
        try:
            mail.send(message, sendmail=sendmail)
        except mail.DeliveryError as exc:
            os.unlink(prepared)
            kept = _keep(directory, f"undelivered-{stamp}.eml", message.as_bytes())
            log(syslog.LOG_ERR, f"delivery failed: {exc}; report kept in {os.fsdecode(kept)}")
            _write_textfile(settings, config, report, report.last_mailed, log)
            raise mail.DeliveryError(f"{exc}; the report is kept in {os.fsdecode(kept)} and "
                                     "its changes stay queued for the next run") from None
        where = None
    if to:
        os.rename(journal_path(settings) + NEXT, journal_path(settings))
        _finish_journal(settings)
    else:
        _commit(settings, [b.name for b in report.batches], _next_state(report))
    for path in report.damaged:
        # Said by this report.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    if to:
        for name in os.listdir(directory) if os.path.isdir(directory) else ():
            if name.startswith(b"undelivered-"):
                # What it held went out with this report.
                os.unlink(os.path.join(directory, name))
    _write_textfile(settings, config, report, report.now, log)
    return where


def _keep(directory, name, data):
    os.makedirs(directory, mode=0o750, exist_ok=True)
    path = os.path.join(directory, os.fsencode(name))
    atomic_write(path, data, mode=0o640)
    return path


def _next_state(report):
    state = dict(report.state, last_mailed=report.now,
                 baselines=baselines.marks(report.baselines))
    if report.probe_state is not None:
        state["probes"] = report.probe_state
    return state


def _prepare_commit(settings, report):
    """The journal of ``report``'s delivery, written before the mail goes
    out as NAME.next and renamed into place once sendmail exited 0: a
    state filesystem too full to take it stops the report before it
    mails, not after (when its changes would be mailed again).  One left
    by a run killed while sendmail ran is never renamed: its changes go
    with the next mail, and the next report overwrites it."""
    journal = {"batches": [os.fsdecode(b.name) for b in report.batches],
               "state": _next_state(report)}
    path = journal_path(settings) + NEXT
    _save_json(path, journal)
    return path


def _commit(settings, names, state):
    """After delivery: journal which batches went out, move them, save."""
    journal = {"batches": [os.fsdecode(n) for n in names], "state": state}
    _save_json(journal_path(settings), journal)
    _finish_journal(settings)


def _finish_journal(settings):
    """Carry out a delivery journal: the mail went out, its batches move
    to delivered/ and the state is saved (again, if it already was)."""
    journal = _load_json(journal_path(settings), "the delivery journal")
    if journal is None:
        return
    spool = Spool(settings)
    wanted = set(journal.get("batches", ()))
    spool.mark_delivered([b for b in spool.pending() if os.fsdecode(b.name) in wanted])
    _save_json(state_path(settings), journal.get("state", {}))
    alerts = _load_json(alerts_path(settings), "the alert ledger")
    if alerts:
        pending = {os.fsdecode(b.name) for b in spool.pending()}
        alerts["batches"] = {k: v for k, v in alerts.get("batches", {}).items() if k in pending}
        _save_json(alerts_path(settings), alerts)
    os.unlink(journal_path(settings))


def _write_textfile(settings, config, report, last, log):
    """The node_exporter file; ``last``: when a report was last delivered."""
    path = config.get("report", "textfile")
    if not path:
        return
    records = 0
    for batch in Spool(settings).pending():
        count = report.batch_records.get(batch.name)
        if count is None:   # queued while this report was being built
            try:
                count = len(Spool.records(batch))
            except (OSError, ValueError):
                count = 0
        records += count
    text = ("# HELP systraq_warnings Warnings in the last report systraq built.\n"
            "# TYPE systraq_warnings gauge\n"
            f"systraq_warnings {len(report.warnings)}\n"
            "# HELP systraq_last_success_timestamp_seconds When a report was last "
            "delivered (mailed, or kept when mail is off).\n"
            "# TYPE systraq_last_success_timestamp_seconds gauge\n"
            f"systraq_last_success_timestamp_seconds {int(last or 0)}\n"
            "# HELP systraq_pending_records Change records waiting to be delivered.\n"
            "# TYPE systraq_pending_records gauge\n"
            f"systraq_pending_records {records}\n")
    try:
        atomic_write(path, text.encode("ascii"), mode=0o644)
    except OSError as exc:
        log(syslog.LOG_ERR, f"cannot write {os.fsdecode(path)}: {exc.strerror}")
        raise RunError(f"cannot write the textfile {os.fsdecode(path)}: {exc.strerror}") from None


# -- alerts --------------------------------------------------------------

def alert(settings, config, now=None, host=None, sendmail=mail.SENDMAIL, log=None):
    """Mail at once the warnings on critical paths not yet alerted.

    Returns the alerted items (empty when there was nothing to say).
    """
    log = log or _syslog
    now = time.time() if now is None else now
    host = host or mail.host_name()
    _finish_journal(settings)
    gatherer = _Gatherer(settings, config, now, host)
    gatherer.spool()
    # Whether operations matched their packages is the report's to say.
    gatherer.finish(None)
    # A path alerted before and changed again (a second new account the
    # same day) is alerted again: it has a record no alert carried.
    # What changed while dpkg ran is the operation's: the report lists it.
    items = [i for i in gatherer.warnings() if i.critical and i.unalerted and not i.during]
    if not items:
        return []
    count = len(items)
    subject = (f"[systraq] {host}: alert: {items[0].path} changed" if count == 1
               else f"[systraq] {host}: alert: {count} critical changes")
    lines = [f"systraq alert for {host}, {time.strftime('%Y-%m-%d %H:%M %z', time.localtime(now))}",
             "", "Changes to critical paths (the daily report will list them again):", ""]
    for item in items:
        lines.append("* " + item.text)
        lines += ["    " + line if line else "" for line in item.detail]
    state = load_state(settings)
    shown = baselines.lines(settings, state.get("baselines"))
    lines += _baseline_lines(shown)
    body = "\n".join(lines) + "\n"
    for item in items:
        log(syslog.LOG_WARNING, f"alert={_kv(item.change)} path={_kv(item.path)} "
                                f"text={_kv(item.head)}")
    to = config.get("report", "mailto")
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    # The ledger is written before the alert goes out and renamed into
    # place after (as the report's journal): a full state filesystem
    # stops the alert before it is mailed, not before it is recorded.
    ledger = _load_json(alerts_path(settings), "the alert ledger") or {}
    batches = ledger.setdefault("batches", {})
    when = _local(now, now)
    for item in items:
        for name, index in item.refs:
            batches.setdefault(name, {}).setdefault("records", {})[str(index)] = when
    prepared = alerts_path(settings) + NEXT
    _save_json(prepared, ledger)
    if to:
        message = mail.build(to, subject, body, SYSTEM_USER, host=host, now=now)
        try:
            mail.send(message, sendmail=sendmail)
        except mail.DeliveryError as exc:
            os.unlink(prepared)
            kept = _keep(reports_dir(settings), f"undelivered-alert-{stamp}.eml",
                         message.as_bytes())
            log(syslog.LOG_ERR, f"alert delivery failed: {exc}; kept in {os.fsdecode(kept)}")
            raise mail.DeliveryError(f"{exc}; the alert is kept in {os.fsdecode(kept)} and "
                                     "will be tried again at the next check") from None
    else:
        _keep(reports_dir(settings), f"alert-{stamp}.txt", body.encode("utf-8"))
    os.rename(prepared, alerts_path(settings))
    # The next mail, alert or report, is compared with this one.
    _save_json(state_path(settings), dict(state, baselines=baselines.marks(shown)))
    return items
