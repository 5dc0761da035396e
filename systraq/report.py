# SPDX-License-Identifier: GPL-2.0-or-later
"""The report and the alerts: what the administrator reads.

This module owns assembling the report from what the collectors left --
the change records queued in the spool (records.py) and the findings that
stand until fixed (standing.py) -- with the package operations of the
window and the system's state (the probes, which the report command
runs), and rendering it in text or JSON; and assembling an alert of the
critical changes not yet alerted.  It knows no collector: a record says
what it is and what it may show.  Handing either over is delivery.py's.

The report has three sections:

1. Warnings: every change nothing explains and every failed check, most
   serious first, one entry per path (the snapshot's and the contents
   job's records of one file are told together, with the diff when the
   file is world-readable).  Empty, it says "No warnings." in one line.
2. Changes made by package operations: one line per apt (or dpkg) run,
   with how many packages and watched files it changed and whether the
   daily package check found them matching their packages.  A change is
   an operation's when the collector that saw it found so (the record's
   ``explained``, attribution.Judge): the changed inode's ctime lies
   inside the dpkg run and a package the run names owns the path.  A
   critical path changed while dpkg ran, that no such package owns,
   stays a warning that names the operation, without an alert
   (``/etc/passwd`` changed by ``adduser`` in a postinst looks just like
   a hand edit, and the diff tells which it was).
3. System state, for reference: systraq's own notes (the first baseline
   while it is being recorded, also named under the title; first runs,
   fixed findings, the collectors' notes), then the probes (see
   probes.py) and the local parts.

Alerts (``systraq check``, hourly, and the watcher): the warnings on a
critical path (``[check] critical``) not yet alerted, as alerts.state
(delivery.py's ledger) tells.

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

import fcntl
import fnmatch
import json
import os
import re
import time

from systraq import attribution, baselines, mail, records, standing
from systraq.errors import RunError
from systraq.pathcodec import escape, unescape
from systraq.spool import Spool, epoch as epoch_of, stamp as iso

FORMAT = 1
# Events of one apt (or dpkg) run further apart than this are two runs.
RUN_GAP = 1800


# Ranks (records.py): 0 is read first.
CRITICAL, SERIOUS, CHANGE, MINOR = (records.CRITICAL, records.SERIOUS, records.CHANGE,
                                    records.MINOR)
_PROBE_RANKS = {"raid degraded": SERIOUS, "filesystem full": SERIOUS,
                "new listening socket": SERIOUS, "part failed": CHANGE}


def state_path(settings):
    return os.path.join(settings.state_dir, b"report.state")


# The suffix of a damaged state file of the report's, kept for the admin.
DAMAGED = b".damaged"


def alerts_path(settings):
    return os.path.join(settings.state_dir, b"alerts.state")


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


def describe(record):
    """A record (or its spooled object) as the lines a person reads
    (records.py)."""
    return records.describe(record)


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
        self.explained_by = None  # the dpkg run that made the change (a record's "explained")
        # A critical path no package ships, changed while dpkg ran (its
        # maintainer scripts add accounts to /etc/passwd): the operation's
        # label.  It stays a warning in the report but is no alert.
        self.during = None
        self.during_run = None
        # Head lines of records that tell of something else than a file's
        # change (the audit's "account has uid 0"): never folded away.
        self.others = []

    def add(self, lines):
        head, *detail = lines
        if self.labelled and self.path is not None and head.startswith(self.path + ": "):
            # One entry per path: "PATH: fact; fact".
            head = head[len(self.path) + 2:]
        if head.startswith("content changed"):
            head = self._merge_content(head)
        if head is not None:
            head = self._merge_same(head)
        if head is not None and head not in self.lines:
            self.lines.append(head)
        self.detail += detail

    _REMOVED = re.compile(r"(?:\w+ )?removed")

    @classmethod
    def _fact(cls, head):
        """What a head says, when two collectors word it differently: the
        snapshot's "new file, mode 0644, root:root" and the contents job's
        "new file" are one fact, as are "file removed" and "removed"."""
        if head.startswith("new "):
            return head.split(",")[0].split(" (")[0]
        if cls._REMOVED.fullmatch(head):
            return "removed"
        return None

    def _merge_same(self, head):
        """Adds nothing when a line already says ``head``'s fact; keeps the
        fuller wording of the two.  Returns what is left to add."""
        fact = self._fact(head)
        if fact is None:
            return head
        for number, line in enumerate(self.lines):
            if self._fact(line) == fact:
                if len(head) > len(line):
                    self.lines[number] = head
                return None
        return head

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

def _critical(config, path):
    """Whether ``path`` (escaped text) matches ``[check] critical``."""
    if path is None:
        return False
    raw = unescape(path)
    return any(fnmatch.fnmatchcase(raw, pattern) for pattern in config.get("check", "critical"))


# The collectors whose records tell how a file changed.
_FILE_SOURCES = ("snapshot", "trees", "contents", "contents_root")

# The account databases useradd and adduser write, and the backups
# ("NAME-") the shadow tools leave beside them.
_ACCOUNT_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/subuid",
                  "/etc/subgid")


def _added_accounts(detail):
    """``[(name, home)]`` of the passwd lines a diff (a contents record's
    detail) adds; None when it also takes a line away or holds something
    that is not a passwd line: an account changed or removed is told as
    it is."""
    added = []
    for line in detail:
        if line.startswith(("---", "+++", "@@", " ")) or not line:
            continue
        if not line.startswith("+"):
            return None
        fields = line[1:].split(":")
        if len(fields) != 7 or not fields[0]:
            return None
        added.append((fields[0], fields[5]))
    return added or None


def _below(path, homes):
    return any(path == home or path.startswith(home + "/") for home in homes)


class _Gatherer:
    def __init__(self, settings, config, now, host):
        self.settings = settings
        self.config = config
        self.report = Report(host, now)
        self.items = {}
        self.operations = []
        self.alerts = _load_alerts(settings)
        self.explained_counts = []
        # The dpkg runs the collectors found made a change (records'
        # "explained"), to be counted with their operation.
        self.made = []
        self.explain = True
        self.operations_built = False

    def item(self, key, record, path=None, labelled=True):
        item = self.items.get(key)
        rank = _PROBE_RANKS.get(record.change, CHANGE) if record.source == "probes" \
            else record.rank
        if item is None:
            item = self.items[key] = Item(key, rank, record.get("source", "?"),
                                          record.get("change", "?"), path, labelled)
        item.rank = min(item.rank, rank)
        return item

    def spool(self, explain=True):
        """Every pending record, sorted into warnings, operations and notes."""
        report = self.report
        self.explain = explain
        spool = Spool(self.settings)
        report.batches = spool.pending()
        loaded = []
        for batch in report.batches:
            try:
                found = spool.records(batch)
            except (OSError, ValueError) as exc:
                # Left pending and said: a batch we cannot read is not lost.
                report.notes.append(f"spool batch {os.fsdecode(batch.name)} unreadable: {exc}")
                continue
            loaded.append((batch, found))
            report.records += len(found)
            report.batch_records[batch.name] = len(found)
        stamps = [epoch_of(r.get("since") or r.get("time")) for _, rs in loaded for r in rs]
        stamps = [s for s in stamps if s is not None]
        report.since = min(stamps) if stamps else None

        for batch, found in loaded:
            alerted = self.alerts.get(os.fsdecode(batch.name), {})
            for index, record in enumerate(found):
                self._record(batch, index, record, alerted)

    def _record(self, batch, index, record, alerted):
        report = self.report
        record = records.load(record)
        change = record.change
        if record.explained is not None and change != "explained":
            # A collector found that a package operation made it: the
            # operation's, counted with it (section 2), not a warning.
            self.made.append(record.explained)
            return
        if record.is_note:
            if change == "explained":
                self._explained(record)
            else:
                report.notes.append(record.line())
            return
        path = record.path if change != "state damaged" else None
        key = ("path", path) if path is not None else ("record", batch.name, index)
        item = self.item(key, record, path)
        item.add(record.describe())
        if record.get("source") not in _FILE_SOURCES:
            item.others.append(record.describe()[0])
        item.refs.append((os.fsdecode(batch.name), index))
        if record.get("source") in _FILE_SOURCES and _critical(self.config, path):
            item.critical = True
            item.rank = CRITICAL
        if record.get("first_seen"):
            item.first_seen = item.first_seen or record["first_seen"]
        if str(index) in alerted.get("records", {}):
            item.alerted = alerted["records"][str(index)]
        else:
            item.unalerted = True
        if record.during is not None:
            # Made while dpkg ran, and no package it touched explains it
            # (a maintainer script's adduser): a warning that names the
            # operation, and no alert.
            item.during_run = record.during

    def _explained(self, record):
        # The package check's own count of files an operation changed
        # ("3 files changed"); added to the operation by package name in
        # finish().
        match = re.match(r"(\d+) file", record.get("detail", ""))
        self.explained_counts.append((record.get("package", ""),
                                      int(match.group(1)) if match else 0))

    def build_operations(self):
        """The package operations since the report's window began, each
        apt (or dpkg) run once, from dpkg's and apt's logs (once)."""
        if not self.explain or self.operations_built:
            return
        self.operations_built = True
        since = self.report.since if self.report.since is not None else self.report.now - 86400
        starts = [run.get("start") for run in self.made]
        starts += [item.during_run.get("start") for item in self.items.values()
                   if item.during_run]
        since = min([since] + [s for s in starts if isinstance(s, (int, float))])
        log = attribution.Attribution(self.settings)
        try:
            events = log.events(since)
        except attribution.LogUnreadable as exc:
            self.report.notes.append(f"package operations unknown: {exc}")
            events = []
        for event in events:
            if self.operations and self.operations[-1].takes(event):
                self.operations[-1].events.append(event)
            else:
                self.operations.append(Operation(event))

    def _operation_of(self, run):
        """The operation that holds the dpkg run ``run`` (a record's
        ``explained`` or ``during``); one made from it when the logs no
        longer hold it."""
        start, end = run.get("start"), run.get("end", run.get("start"))
        if isinstance(start, (int, float)):
            for operation in self.operations:
                if operation.start - 1 <= end and start <= operation.end + 1:
                    return operation
        event = attribution.Event(start if isinstance(start, (int, float)) else self.report.now,
                                  "configure", str(run.get("package") or "?"),
                                  tool=str(run.get("tool") or "dpkg"),
                                  commandline=run.get("commandline"),
                                  requested_by=run.get("requested_by"))
        operation = Operation(event)
        self.operations.append(operation)
        self.operations.sort(key=lambda o: o.start)
        return operation

    def group_accounts(self):
        """One warning for the accounts /etc/passwd gained: what useradd
        changed together (the account files, their backups, the new
        homes) told together, each file's own entry kept below it.  Only
        when the passwd diff only adds lines: anything else is told file
        by file."""
        passwd = self.items.get(("path", "/etc/passwd"))
        added = _added_accounts(passwd.detail) if passwd is not None else None
        if not added:
            return
        names = [name for name, _home in added]
        # A home is the account's when it was made with it: an account
        # given /root or another's home folds nothing of what is there.
        created = [home for home, item in ((h, self.items.get(("path", h))) for _n, h in added)
                   if home not in ("", "/") and item is not None
                   and any(line.startswith("new directory") for line in item.lines)]
        members = [item for item in self.items.values() if item.path is not None
                   and (item.path.rstrip("-") in _ACCOUNT_FILES or _below(item.path, created))]
        files = [os.path.basename(f) for f in _ACCOUNT_FILES
                 if any(m.path.rstrip("-") == f for m in members)]
        head = (f"account{'s' if len(names) > 1 else ''} {', '.join(names)} added: "
                + ", ".join(files))
        if created:
            head += "; " + "; ".join(f"home {home} created" for home in created)
        for member in sorted(members, key=lambda m: m.path):
            head += "".join(f"; {line}" for line in member.others)
            # An existing line changed beside the account's new ones (an
            # account put into the sudo group) is said in the head too.
            if any(line.startswith("-") and not line.startswith("---")
                   for line in member.detail):
                head += f"; {member.path}: existing lines changed too"
        group = Item(("accounts", tuple(names)), min(m.rank for m in members), "accounts",
                     "added", labelled=False)
        group.lines = [head]
        for member in sorted(members, key=lambda m: m.path):
            group.detail.append(member.text)
            group.detail += ["  " + line if line else "" for line in member.detail]
            group.critical = group.critical or member.critical
            group.alerted = group.alerted or member.alerted
            # What is not critical is never alerted: only a critical file
            # not alerted yet makes the group one to alert.
            group.unalerted = group.unalerted or (member.unalerted and member.critical)
            group.first_seen = min(filter(None, (group.first_seen, member.first_seen)),
                                   default=None)
            group.refs += member.refs
            group.during_run = group.during_run or member.during_run
            del self.items[member.key]
        self.items[group.key] = group

    def finish(self, packages=None):
        report = self.report
        self.group_accounts()
        self.build_operations()
        if self.explain:
            for run in self.made:
                self._operation_of(run).files += 1
            for item in self.items.values():
                if item.during_run is not None:
                    item.during = self._operation_of(item.during_run).label(report.now)
        for package, count in self.explained_counts:
            name = package.partition(":")[0]
            for operation in reversed(self.operations):
                if any(e.package.partition(":")[0] == name for e in operation.events):
                    operation.files += count
                    break
        self._verify(packages)
        report.operations = self.operations

    def warnings(self):
        """The warnings, most serious first; critical paths first among equals."""
        return sorted(self.items.values(),
                      key=lambda i: (i.rank, not i.critical, i.path or "", i.text))

    def _verify(self, packages):
        """Whether the package check since each operation found its files
        matching their packages (``packages``: its standing findings)."""
        if not packages:
            return
        checked = packages.time
        wrong = {f.get("package", "").partition(":")[0] for f in packages.findings
                 if f.change != "without sums"}
        for operation in self.operations:
            if checked is None or checked < operation.end:
                continue
            names = {p.partition(":")[0] for p in operation.packages}
            operation.verified = not (names & wrong)

    def standing(self):
        """Findings that stand until fixed (standing.py): warnings in every
        report, whether or not a spool record about them is pending, with
        their collector's notes, and a warning when a collector stopped
        running."""
        now = self.report.now
        found = {}
        for source in standing.sources(self.settings):
            try:
                current = standing.load(self.settings, source)
            except RunError as exc:
                self._check_warning(source, f"{source} unreadable", str(exc))
                continue
            found[source] = current
            when = _local(current.time, now)
            if current.late_after and now - current.time > current.late_after:
                self._check_warning(source, f"{source} late",
                                    (current.late_text or f"{source} has not run since {{time}}")
                                    .replace("{time}", when))
            for finding in current.findings:
                item = self.item(finding.standing_key, finding, finding.path,
                                 labelled="text" not in finding)
                if not item.lines:
                    item.add(finding.describe())
                item.first_seen = item.first_seen or finding.get("first_seen")
            self.report.notes += [note.replace("{time}", when) for note in current.notes]
        return found

    def _check_warning(self, source, change, text, path=None, rank=None):
        record = records.make(source, change)
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


def _load_alerts(settings):
    data = _load_json(alerts_path(settings), "the alert ledger") or {}
    return data.get("batches", {})


def gather(settings, config, now=None, host=None, probe=None, explain=True):
    """Build the Report.

    ``probe``: probes.collect or a stand-in, called with the probes'
    state of the last report (None: no probes; the report command gives
    the real ones).  A delivery a killed run left half done is the
    delivery's to finish first (delivery.finish_journal).
    """
    now = time.time() if now is None else now
    host = host or mail.host_name()
    gatherer = _Gatherer(settings, config, now, host)
    gatherer.spool(explain=explain)
    current = gatherer.standing()
    gatherer.finish(current.get("packages"))
    state = load_state(settings)
    damaged = _damaged(settings)
    for path in damaged:
        name = os.fsdecode(os.path.basename(path)[:-len(DAMAGED)])
        gatherer._check_warning("report", "state damaged",
                                f"{name} was damaged (a failing disk, or tampering) and "
                                f"started again; kept as {os.fsdecode(path)}", rank=CRITICAL)
    if probe:
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


# -- alerts --------------------------------------------------------------

class Alert:
    """What an alert mails: the warnings on critical paths not yet
    alerted (``items``), its subject and its text.  Empty ``items``:
    nothing to say."""

    def __init__(self, items, subject=None, body=None, baselines=()):
        self.items = items
        self.subject = subject
        self.body = body
        self.baselines = baselines


def alert(settings, config, now=None, host=None):
    """The Alert of the changes to critical paths queued and not yet
    alerted.  A path alerted before and changed again (a second new
    account the same day) is alerted again: it has a record no alert
    carried.  What changed while dpkg ran is the operation's: the report
    lists it, the alert does not."""
    now = time.time() if now is None else now
    host = host or mail.host_name()
    gatherer = _Gatherer(settings, config, now, host)
    gatherer.spool()
    # Whether operations matched their packages is the report's to say.
    gatherer.finish(None)
    items = [i for i in gatherer.warnings() if i.critical and i.unalerted and not i.during]
    if not items:
        return Alert([])
    count = len(items)
    one = f"{items[0].path} changed" if items[0].path else items[0].head.split(":")[0]
    subject = (f"[systraq] {host}: alert: {one}" if count == 1
               else f"[systraq] {host}: alert: {count} critical changes")
    lines = [f"systraq alert for {host}, {time.strftime('%Y-%m-%d %H:%M %z', time.localtime(now))}",
             "", "Changes to critical paths (the daily report will list them again):", ""]
    for item in items:
        lines.append("* " + item.text)
        lines += ["    " + line if line else "" for line in item.detail]
    shown = baselines.lines(settings, load_state(settings).get("baselines"))
    lines += _baseline_lines(shown)
    return Alert(items, subject, "\n".join(lines) + "\n", shown)
