# SPDX-License-Identifier: GPL-2.0-or-later
"""Which package operation explains a change: dpkg's log and apt's history.

This module owns the reading of ``/var/log/dpkg.log`` and
``/var/log/apt/history.log`` (and their rotated copies).  From them it
builds a list of events -- a package installed, upgraded, reinstalled,
downgraded, removed, purged, configured, a conffile replaced or kept --
each with the apt run (command line, requesting user) that caused it when
apt caused it, grouped into dpkg runs (``dpkg_runs``).  Every collector
(snapshot, contents, packages, audit) asks its run transaction's
``Judge`` about each change record as it sees it: a change is the
operation's only when its ctime lies inside a dpkg run, after the
collector's previous run, that touched a package owning the path
(``Judge.judge``); a changed package file no run explains is an
*unexplained* change.

Both logs are written by other programs and may end in the middle of a
line when the machine crashed: a line that cannot be read is skipped,
never fatal.  A log that exists but cannot
be opened is a ``LogUnreadable`` error: without it systraq could call an
ordinary upgrade unexplained, or the reverse.

Time.  dpkg and apt write local time without an offset (dpkg's log.c and
apt's OpenLog both format ``localtime()``).  By default a timestamp is
turned into epoch seconds with ``time.mktime`` in this process's time
zone, which is the zone the machine wrote them in.  One hour a year
(the repeated hour when daylight saving time ends) is ambiguous and may
be placed an hour off; nothing in the logs can tell the two apart.  A
fixed ``utc_offset`` (seconds east of UTC) may be given instead, for logs
of another machine, and by the tests.
"""

import bisect
import bz2
import calendar
import dataclasses
import lzma
import os
import posixpath
import re
import subprocess
import time
import zlib

from systraq.errors import RunError
from systraq.pathcodec import escape

# Actions that change a package's files on disk; pick() prefers them to
# "configure" and "conffile", which follow an unpack and say less about it.
FILE_CHANGING = frozenset((
    "install", "upgrade", "reinstall", "downgrade", "remove", "purge", "disappear"))
ACTIONS = FILE_CHANGING | {"configure", "conffile"}

# dpkg.log words of the "ACTION PKG INSTALLED-VERSION AVAILABLE-VERSION"
# lines (dpkg(1), --log).  trigproc is read for its shape only: a trigger
# runs a maintainer script, it does not unpack the package's files.
_DPKG_ACTIONS = {b"install": "install", b"upgrade": "upgrade", b"remove": "remove",
                 b"purge": "purge", b"configure": "configure", b"disappear": "disappear",
                 b"trigproc": "trigproc"}

# Lines are compared as "YYYY-MM-DD HH:MM:SS" strings to skip what is older
# than ``since`` without converting it.  The string is local time, which is
# not monotonic in epoch time when the clock's offset changes (end of
# daylight saving time, an admin changing /etc/localtime), so the cut is
# made this much earlier -- the widest span between two UTC offsets -- and
# the exact cut is made on epoch seconds afterwards.
_SLACK = 26 * 3600

_STAMP_LEN = 19  # len("2025-06-24 14:36:25")

# deb-systemd-helper's records: for the links it makes below the first
# directory (enabling a unit, an alias), the directory where it keeps
# UNIT.dsh-also, the list of those links; and where the package ships the
# unit (merged /usr or not).
_SYSTEMD_HELPERS = (
    (b"/etc/systemd/system/", b"/var/lib/systemd/deb-systemd-helper-enabled",
     (b"/usr/lib/systemd/system/", b"/lib/systemd/system/")),
    (b"/etc/systemd/user/", b"/var/lib/systemd/deb-systemd-user-helper-enabled",
     (b"/usr/lib/systemd/user/", b"/lib/systemd/user/")),
)

# A boot link of sysvinit's runlevel directories, as update-rc.d (and
# insserv) name them: /etc/rcN.d/S01name or K01name.
_RC_LINK = re.compile(rb"/etc/rc[0-6S]\.d/[SK][0-9]{2}([^/]+)")

# How long after the second dpkg stamped its last line the write may reach
# dpkg.log: dpkg takes the time, then writes the line; on a busy machine
# the write was seen 1.1 ms into the next second, together with the
# change it followed.  The log's modification time still ends the run.
_WRITE_LAG = 0.1

# How far two file times may disagree with the order of the writes that
# made them.  The kernel stamps files from a clock that moves in ticks
# (up to 10 ms at HZ=100) and, with multigrain timestamps (Linux 6.13+),
# hands out fine-grained times beside coarse ones: a file written after
# the collector's state was seen here with a ctime 2 ms before the
# state's mtime (1 run in 40 of a unit test).  A dpkg run whose last
# write (dpkg.log's mtime) is within this of the previous run's end still
# counts as after it; its changes must still lie inside it.
_TICK = 0.01

# logrotate names: dpkg.log.1, dpkg.log.2.gz, ... or, with "dateext",
# dpkg.log-20250601(.gz).  Debian's /etc/logrotate.d/{dpkg,apt} use gzip;
# xz and bz2 are read too, for a "compresscmd" set by the admin.  The
# decompressor objects, unlike gzip.open(), hand back what precedes a
# cut or a corruption instead of raising and losing it.
_DECOMPRESSORS = {
    b".gz": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    b".xz": lzma.LZMADecompressor,
    b".bz2": bz2.BZ2Decompressor,
}
_DAMAGED = (EOFError, zlib.error, lzma.LZMAError, OSError)

# "pkg:arch (1.0)", "pkg:arch (1.0, automatic)", "pkg:arch (1.0, 1.1)".
# Versions never hold ", " or ")" (Debian Policy 5.6.12), so a plain
# pattern is enough.
_APT_ITEM = re.compile(r"([^\s,()]+) \(([^()]*)\)")
_APT_SECTIONS = ("Install", "Reinstall", "Upgrade", "Downgrade", "Remove", "Purge")


class LogUnreadable(RunError):
    """dpkg's or apt's log exists but could not be read."""


@dataclasses.dataclass(frozen=True)
class Event:
    """One thing dpkg did to one package.

    ``time`` is epoch seconds.  ``action`` is one of ``ACTIONS``.  For
    install/upgrade/reinstall/downgrade ``old_version`` is what was there
    (None for a fresh install) and ``new_version`` what is there now; for
    remove/purge/disappear ``old_version`` is what went; for configure
    ``new_version`` is the version configured.  A conffile event names
    the package being configured, the file (``path``, bytes, as dpkg
    logged it) and dpkg's ``decision``: "install" (the package's version
    replaced the file) or "keep".  ``tool`` is the program that ran dpkg
    ("apt-get", "apt", "unattended-upgrade", ...; "dpkg" when no apt run
    covers the event), with apt's ``commandline`` and ``requested_by``
    (the user who ran it through sudo or pkexec) when apt recorded them.
    """

    time: float
    action: str
    package: str
    arch: str | None = None
    old_version: str | None = None
    new_version: str | None = None
    path: bytes | None = None
    decision: str | None = None
    tool: str = "dpkg"
    commandline: str | None = None
    requested_by: str | None = None


@dataclasses.dataclass(frozen=True)
class AptRun:
    """One block of apt's history.log: one apt (or libapt) run.

    ``end`` is None when the block has no End-Date (apt was killed, or is
    still running).  ``changes`` lists ``(section, name, arch, versions,
    automatic)`` from the Install/Upgrade/... lines, versions as a tuple.
    """

    start: float
    end: float | None
    commandline: str | None
    requested_by: str | None
    changes: tuple
    error: str | None = None
    tool: str = "apt"

    def listed(self):
        """``{name: section}`` of the packages this run named."""
        return {name: section for section, name, _arch, _versions, _auto in self.changes}


@dataclasses.dataclass(frozen=True)
class DpkgRun:
    """One run of dpkg, as its log shows it: from its "startup" line
    (``start``) to its last line (``end``), epoch seconds of whole
    seconds; ``bound``, the first instant after it (see
    ``Attribution.dpkg_runs``); the names of the packages its lines name;
    its events; and the apt run that made it (``tool``, ``commandline``,
    ``requested_by``), when one did."""

    start: float
    end: float
    bound: float
    packages: frozenset
    events: tuple
    tool: str = "dpkg"
    commandline: str | None = None
    requested_by: str | None = None
    exact: bool = False     # ``bound`` is dpkg.log's last write, not a whole second

    def holds(self, when):
        """Whether dpkg was at work in this run at ``when`` (epoch
        seconds, as precise as a ctime).  A bound of a whole second is
        the first instant after the run; one taken from dpkg.log's
        modification time is its last write: a change stamped with that
        very time (the kernel stamps files from a clock that moves in
        ticks of a few milliseconds) cannot be told from it, and is the
        run's."""
        if self.exact:
            return self.start <= when <= self.bound
        return self.start <= when < self.bound

    def touches(self, package):
        """Whether this run names ``package`` (NAME or NAME:ARCH)."""
        return package.partition(":")[0] in self.packages

    def as_dict(self, package=None, label=None):
        """What a change record keeps of the run that made it."""
        out = {"start": self.start, "end": self.end, "tool": self.tool}
        if label:
            out["label"] = label
        if self.commandline:
            out["commandline"] = self.commandline
        if self.requested_by:
            out["requested_by"] = self.requested_by
        if package:
            out["package"] = package
        return out


def _line_package(line):
    """The package name (without architecture) a dpkg.log line names, or
    None: "status STATE PKG VERSION", "ACTION PKG ..." (install, upgrade,
    remove, purge, configure, trigproc, disappear)."""
    fields = line[_STAMP_LEN + 1:].split(b" ")
    if len(fields) >= 4 and fields[0] == b"status":
        name = fields[2]
    elif len(fields) >= 2 and fields[0] in _DPKG_ACTIONS:
        name = fields[1]
    else:
        return None
    return _text(name.partition(b":")[0]) or None


def _log_written(path):
    """When ``path`` was last written (epoch seconds, to the nanosecond),
    or None."""
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


def dpkg_running(settings):
    """Whether dpkg or apt holds dpkg's lock now.

    The lock files are root's and mode 0640: the systraq user cannot open
    them to ask fcntl, but /proc/locks names every lock by device and
    inode, for everybody.
    """
    inodes = set()
    for name in (b"lock-frontend", b"lock"):
        try:
            info = os.stat(os.path.join(settings.dpkg_admindir, name))
        except OSError:
            continue
        inodes.add(f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}")
    if not inodes:
        return False
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as handle:
            for line in handle:
                fields = line.split()
                # "1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a
                # waiting lock has "->" before its type.
                if "->" in fields:
                    continue
                if len(fields) > 5 and fields[5] in inodes:
                    return True
    except OSError:
        return False
    return False


def _tool(commandline):
    """The program an apt history block names ("apt-get"), or "apt"."""
    words = (commandline or "").split(None, 1)
    return (posixpath.basename(words[0]) if words else "") or "apt"


# --- reading the files ---------------------------------------------------

def rotated(base):
    """The existing copies of log ``base`` (bytes), newest first.

    ``base`` itself, then ``base.1``, ``base.2.gz``, ... in number order,
    then dateext copies ``base-YYYYMMDD`` newest date first.
    """
    directory, name = posixpath.split(base)
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as err:
        raise LogUnreadable(f"{os.fsdecode(directory)}: cannot list: {err.strerror}") from None
    numbered, dated = [], []
    pattern = re.compile(re.escape(name) + rb"(?:\.(\d+)|-(\d{8,10}))(\.gz|\.xz|\.bz2)?")
    found_base = False
    for entry in entries:
        if entry == name:
            found_base = True
            continue
        match = pattern.fullmatch(entry)
        if not match:
            continue
        path = posixpath.join(directory, entry)
        if match.group(1) is not None:
            numbered.append((int(match.group(1)), path))
        else:
            dated.append((match.group(2), path))
    numbered.sort()
    dated.sort(reverse=True)
    return ([base] if found_base else []) + [p for _, p in numbered] + [p for _, p in dated]


def _suffix(path):
    for suffix in _DECOMPRESSORS:
        if path.endswith(suffix):
            return suffix
    return b""


def _read_file(path):
    """The bytes of ``path``; None when it vanished (logrotate ran meanwhile)."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise LogUnreadable(f"{os.fsdecode(path)}: cannot read: {err.strerror}") from None


def read_log(path):
    """``(data, damaged)``: the bytes of one log copy, decompressed.

    ``data`` is None when the file vanished.  A compressed copy that ends
    early or is corrupt gives what could be decompressed and ``damaged``
    True.
    """
    raw = _read_file(path)
    suffix = _suffix(path)
    if raw is None or not suffix:
        return raw, False
    out = []
    damaged = False
    while raw:
        engine = _DECOMPRESSORS[suffix]()
        try:
            out.append(engine.decompress(raw))
        except _DAMAGED:
            damaged = True
            break
        if not engine.eof:
            damaged = True  # cut short: the rest of the stream is missing
            break
        # gzip allows several members in one file, and some writers pad
        # the end with zeros (gzip(1) ignores them too).
        raw = engine.unused_data.lstrip(b"\0")
    return b"".join(out), damaged


def _lines(data):
    """The complete lines of ``data`` and whether a partial last line was dropped.

    dpkg and apt write whole lines; a last line without its newline was
    cut by a crash (or is being written now), and its tail -- a version,
    a "keep" -- may be missing without the rest looking wrong.
    """
    lines = data.split(b"\n")
    partial = lines.pop() != b""
    return lines, partial


def _text(raw):
    return raw.decode("utf-8", "surrogateescape")


# --- the reader ----------------------------------------------------------

class Attribution:
    """Package operations recorded under ``settings.root`` since a time.

    ``utc_offset``: seconds east of UTC in which the logs were written;
    None (the default) uses this process's local time zone.
    ``native_arch``: dpkg's native architecture, used to treat ``:all``
    as dpkg does (same as native); None asks ``dpkg --print-architecture``
    when the root is the host's and otherwise lets ``all`` match any
    architecture.

    After a read, ``damaged_files`` lists copies that ended early or were corrupt, and
    ``files_read`` lists every copy opened (newest first per log).
    """

    def __init__(self, settings, *, utc_offset=None, native_arch=None):
        self.settings = settings
        self.utc_offset = utc_offset
        self._native_arch = native_arch
        self._native_known = native_arch is not None
        self._minutes = {}
        self._cache = None  # (since, events, times, runs)
        self._runs = []
        self.damaged_files = []
        self.files_read = []

    # -- time ----------------------------------------------------------

    def _minute(self, stamp):
        """Epoch seconds of a "YYYY-MM-DD HH:MM" prefix (bytes), or None."""
        try:
            return self._minutes[stamp]
        except KeyError:
            pass
        epoch = None
        if (len(stamp) == 16 and stamp[4] == 45 and stamp[7] == 45
                and stamp[10] == 32 and stamp[13] == 58):
            try:
                fields = (int(stamp[0:4]), int(stamp[5:7]), int(stamp[8:10]),
                          int(stamp[11:13]), int(stamp[14:16]))
            except ValueError:
                fields = None
            if fields and 1 <= fields[1] <= 12 and 1 <= fields[2] <= 31 \
                    and fields[3] < 24 and fields[4] < 60:
                try:
                    if self.utc_offset is None:
                        # tm_isdst=-1: let the C library decide whether daylight
                        # saving time was in force, as it did when dpkg wrote it.
                        epoch = time.mktime(fields + (0, 0, 0, -1))
                    else:
                        epoch = calendar.timegm(fields + (0,)) - self.utc_offset
                except (OverflowError, ValueError):  # year 0000 and the like
                    epoch = None
        if len(self._minutes) > 200000:
            self._minutes.clear()
        self._minutes[stamp] = epoch
        return epoch

    def _epoch(self, stamp):
        """Epoch seconds of "YYYY-MM-DD HH:MM:SS" (bytes), or None."""
        minute = self._minute(stamp[:16])
        if minute is None or stamp[16] != 58 or not stamp[17:19].isdigit():
            return None
        seconds = int(stamp[17:19])
        return minute + seconds if seconds < 61 else None

    def _key(self, epoch):
        """The local "YYYY-MM-DD HH:MM:SS" (bytes) of ``epoch``."""
        if self.utc_offset is None:
            parts = time.localtime(epoch)
        else:
            parts = time.gmtime(epoch + self.utc_offset)
        return time.strftime("%Y-%m-%d %H:%M:%S", parts).encode("ascii")

    def _cut_key(self, since):
        # Any timestamp sorts after "0000": since=0 reads everything.
        return self._key(since - _SLACK) if since > _SLACK else b"0000"

    # -- architecture --------------------------------------------------

    @property
    def native_arch(self):
        if not self._native_known:
            self._native_known = True
            if self.settings.is_host_root:
                try:
                    out = subprocess.run(
                        ["dpkg", "--print-architecture"], capture_output=True,
                        text=True, check=True, timeout=30).stdout.strip()
                    self._native_arch = out or None
                except (OSError, subprocess.SubprocessError):
                    self._native_arch = None
        return self._native_arch

    def _same_arch(self, wanted, logged):
        """True when ``logged`` may be the instance a query for ``wanted`` means.

        A query without an architecture, and a log line without one (dpkg
        before multiarch), match any.  ``all`` is the native architecture
        to dpkg: a package may move between them from one version to the
        next, and both occupy the same slot.
        """
        if wanted is None or logged is None or wanted == logged:
            return True
        native = self.native_arch
        if native is None:
            return wanted == "all" or logged == "all"
        return {wanted, logged} == {"all", native}

    # -- dpkg.log ------------------------------------------------------

    def _read_newest_first(self, base, since, first_stamp):
        """Contents of ``base``'s copies that may hold lines from ``since`` on.

        Opens copies newest first and stops after the first copy whose
        earliest entry is older than the cut: older copies hold only older
        lines.  Returns ``(copies, key)``: each copy's complete lines, oldest
        copy first, and the cut as a timestamp string.
        """
        key = self._cut_key(since)
        found = []
        for path in rotated(base):
            data, damaged = read_log(path)
            if data is None:
                continue
            self.files_read.append(path)
            lines, partial = _lines(data)
            if partial or damaged:
                self.damaged_files.append(path)
            found.append(lines)
            first = first_stamp(lines)
            if first is not None and first < key:
                break
        found.reverse()
        return found, key

    def _first_dpkg_stamp(self, lines):
        for line in lines:
            if len(line) > _STAMP_LEN and self._epoch(line[:_STAMP_LEN]) is not None:
                return line[:_STAMP_LEN]
        return None

    def _dpkg_records(self, since):
        """``(time, action, name, arch, old, new, path, decision)`` from ``since`` on.

        Sorted by time, log order kept within a second.  ``action`` is
        dpkg's word: an "upgrade" may yet prove a reinstall or downgrade.
        """
        files, key = self._read_newest_first(
            self.settings.dpkg_log, since, self._first_dpkg_stamp)
        records = []
        configuring = None  # (package, arch, version) of the last "configure"
        # Each dpkg run: [first stamp, last stamp, names of the packages
        # its lines name], from a "startup" line to the line before the
        # next one.
        runs = []
        for lines in files:
            for line in lines:
                # Most lines are older than the cut; compare the timestamp
                # bytes before doing anything else with the line.
                if line[:_STAMP_LEN] < key:
                    continue
                record = self._dpkg_line(line, configuring)
                if record is False:
                    continue    # malformed: skipped
                stamp = line[:_STAMP_LEN]
                if record is None:
                    # A status, startup or trigproc line: a dpkg run
                    # begins at a "startup" line.
                    if line[_STAMP_LEN + 1:_STAMP_LEN + 9] == b"startup ":
                        runs.append([stamp, stamp, set()])
                else:
                    if record[1] == "configure":
                        configuring = (record[2], record[3], record[5])
                    if record[0] >= since:
                        records.append(record)
                if not runs:
                    runs.append([stamp, stamp, set()])   # the log starts inside a run
                run = runs[-1]
                run[1] = stamp
                name = _line_package(line)
                if name:
                    run[2].add(name)
        # Copies were read oldest first, but a dpkg run that went on while
        # logrotate renamed the file wrote its tail to the older copy.
        records.sort(key=lambda record: record[0])
        self._runs = []
        for first, last, names in runs:
            start, end = self._epoch(first), self._epoch(last)
            # A run whose last second reaches ``since`` may have gone on after it.
            if start is not None and end is not None and end + 1 > since:
                self._runs.append((start, end, frozenset(names)))
        self._runs.sort()
        return records

    def _dpkg_line(self, line, configuring):
        """The record of one dpkg.log line; None when it is valid but no
        event (status, startup, trigproc), False when it is malformed."""
        if len(line) < _STAMP_LEN + 2 or line[_STAMP_LEN] != 32:
            return False
        verb, _, args = line[_STAMP_LEN + 1:].partition(b" ")
        if verb == b"status" or verb == b"startup":
            # Most lines; they carry nothing an event needs, so only their
            # shape is checked, not the date.
            if args.count(b" ") != (2 if verb == b"status" else 1) or line[4] != 45:
                return False
            return None
        when = self._epoch(line[:_STAMP_LEN])
        if when is None:
            return False
        if verb == b"conffile":
            # "conffile FILE install|keep"; the name may hold spaces.
            # dpkg logs it while configuring a package, after that
            # package's "configure" line (src/main/configure.c).
            path, _, decision = args.rpartition(b" ")
            if not path.startswith(b"/") or decision not in (b"install", b"keep"):
                return False
            package, arch, version = configuring or ("", None, None)
            return (when, "conffile", package, arch, None, version, path, _text(decision))
        if verb not in _DPKG_ACTIONS:
            return False
        fields = args.split(b" ")
        if len(fields) != 3 or not fields[0]:
            return False
        if verb == b"trigproc":
            return None
        name, _, arch = _text(fields[0]).partition(":")
        installed, available = _version(fields[1]), _version(fields[2])
        action = _DPKG_ACTIONS[verb]
        if action == "configure":
            return (when, action, name, arch or None, None, installed, None, None)
        if action in ("remove", "purge", "disappear"):
            return (when, action, name, arch or None, installed, None, None, None)
        return (when, action, name, arch or None, installed, available, None, None)

    # -- apt history ---------------------------------------------------

    def apt_runs(self, since):
        """The apt runs that ended at or after ``since``, oldest first.

        Parsed here rather than with python-debian's deb822.  Measured on
        5 MB of history: deb822 splits it into blocks in 0.27 s, this loop
        splits, dates and reads the package lists in 0.21 s, so deb822
        would save no code that matters; and on a non-UTF-8 command line
        it guesses the encoding and logs a warning to stderr, which would
        break a cron job's silence.
        """
        files, key = self._read_newest_first(
            self.settings.apt_history, since, self._first_apt_stamp)
        runs = []
        for lines in files:
            block = []
            for line in lines:
                if line.startswith(b"Start-Date: "):
                    self._close_block(block, key, runs)
                    block = [line]
                elif not line.strip():
                    self._close_block(block, key, runs)
                    block = []
                else:
                    block.append(line)
            self._close_block(block, key, runs)
        runs.sort(key=lambda run: run.start)
        return [run for run in runs if run.end is None or run.end >= since]

    def _first_apt_stamp(self, lines):
        for line in lines:
            if line.startswith(b"Start-Date: "):
                stamp = _apt_stamp(line)
                if stamp is not None and self._epoch(stamp) is not None:
                    return stamp
        return None

    def _close_block(self, lines, key, runs):
        """Add the run that block ``lines`` records, unless it ended before the cut.

        A block's lines are only split into fields once its dates say it
        matters; a run may have started long before the cut (apt waiting
        at a conffile prompt over a weekend) and still be the one that
        ran dpkg after it.
        """
        if not lines:
            return
        if not lines[0].startswith(b"Start-Date: "):
            return      # a block without its start: skipped
        start_stamp = _apt_stamp(lines[0])
        end_stamp = None
        if lines[-1].startswith(b"End-Date: "):
            end_stamp = _apt_stamp(lines[-1])
        if end_stamp is not None and end_stamp < key and start_stamp is not None \
                and start_stamp < key:
            return
        start = self._epoch(start_stamp) if start_stamp is not None else None
        if start is None:
            return
        block = {}
        for line in lines[1:]:
            field, sep, value = line.partition(b": ")
            if not sep or not field or b" " in field:
                continue
            block[_text(field)] = _text(value)
        end = None
        if "End-Date" in block:
            end = self._epoch(end_stamp) if end_stamp is not None else None
        requested = block.get("Requested-By")
        if requested is not None:
            # "alice (1000)": apt writes the name and the uid.
            requested = re.sub(r" \(\d+\)$", "", requested)
        changes = []
        for section in _APT_SECTIONS:
            for name, versions in _APT_ITEM.findall(block.get(section, "")):
                versions = tuple(v.strip() for v in versions.split(","))
                automatic = versions[-1:] == ("automatic",)
                if automatic:
                    versions = versions[:-1]
                name, _, arch = name.partition(":")
                changes.append((section.lower(), name, arch or None, versions, automatic))
        commandline = block.get("Commandline")
        runs.append(AptRun(start, end, commandline, requested or None,
                           tuple(changes), block.get("Error"), _tool(commandline)))

    # -- the API -------------------------------------------------------

    def _load(self, since):
        cached = self._cache
        if cached is not None and cached[0] <= since:
            return cached
        self.damaged_files = []
        self.files_read = []
        records = self._dpkg_records(since)
        runs = self.apt_runs(records[0][0]) if records else []
        starts = [run.start for run in runs]
        listed = {}
        events = []
        for when, action, name, arch, old, new, path, decision in records:
            run = _run_at(runs, starts, when)
            if action == "upgrade":
                action = self._upgrade_kind(name, old, new, run, listed)
            if run is None:
                events.append(Event(when, action, name, arch, old, new, path, decision))
            else:
                events.append(Event(when, action, name, arch, old, new, path, decision,
                                    run.tool, run.commandline, run.requested_by))
        self._cache = (since, events, [e.time for e in events], self._runs)
        return self._cache

    @staticmethod
    def _upgrade_kind(name, old, new, run, listed):
        """"upgrade", "reinstall" or "downgrade": dpkg logs all three as "upgrade".

        The apt run that made it says which; without one the versions are
        compared as dpkg does.
        """
        if old is None or new is None:
            return "upgrade"
        if old == new:
            return "reinstall"
        if run is not None:
            if id(run) not in listed:
                listed[id(run)] = run.listed()
            section = listed[id(run)].get(name)
            if section in ("upgrade", "downgrade"):
                return section
        order = _compare(old, new)
        return "reinstall" if order == 0 else "downgrade" if order > 0 else "upgrade"

    def events(self, since):
        """Every event at or after ``since`` (epoch seconds), oldest first."""
        _, events, times, _ = self._load(since)
        return events[bisect.bisect_left(times, since):]

    def dpkg_runs(self, since):
        """Every dpkg run that went on after ``since``, oldest first:
        DpkgRun, with the events that fall in it and the apt run that
        made it, if any."""
        # Log lines have whole seconds: those of since's own second count.
        _, events, times, runs = self._load(float(int(since)))
        latest = _log_written(self.settings.dpkg_log)
        found = []
        for number, (start, end, names) in enumerate(runs):
            # The first instant after the run.  dpkg.log has whole
            # seconds: the last second of a run holds both what dpkg did
            # last and, after it, what anybody did next.  The tie goes to
            # the run (a postinst's last write and dpkg's last line often
            # share a second, and a warning for every install would teach
            # admins to ignore them), except where the log itself says
            # when it was last written: for the run whose line is the
            # log's last, its modification time ends the run to the
            # nanosecond.  A run still going on (dpkg holds its lock) has
            # no end yet.
            bound, exact = end + 1, False
            if number == len(runs) - 1:
                if dpkg_running(self.settings):
                    bound = float("inf")
                elif latest is not None and end <= latest < end + 1 + _WRITE_LAG:
                    bound, exact = latest, True
            if bound <= since - _TICK:
                continue
            held = events[bisect.bisect_left(times, start):bisect.bisect_left(times, end + 1)]
            first = held[0] if held else None
            found.append(DpkgRun(start, end, bound, names, tuple(held),
                                 first.tool if first else "dpkg",
                                 first.commandline if first else None,
                                 first.requested_by if first else None, exact))
        return found

    def pick(self, events, package):
        """Of ``events``, the one that changed ``package``'s files, or None.

        ``package`` is ``name`` or ``name:arch`` as dpkg prints it (see
        ``_same_arch``).  An install, upgrade or removal is preferred to a
        later configure or conffile event of the same package: it is what
        changed the package's files; without one, the latest event.
        """
        name, _, arch = package.partition(":")
        found = [e for e in events
                 if e.package == name and self._same_arch(arch or None, e.arch)]
        for event in reversed(found):
            if event.action in FILE_CHANGING:
                return event
        return found[-1] if found else None

    def describe(self, event, *, now=None, ascii=False):
        """``describe()`` in this reader's time zone and architecture."""
        return describe(event, now=now, ascii=ascii, utc_offset=self.utc_offset,
                        native_arch=self.native_arch)


def _run_at(runs, starts, when):
    """The apt run whose Start-Date..End-Date holds ``when``, or None."""
    index = bisect.bisect_right(starts, when) - 1
    if index < 0:
        return None
    run = runs[index]
    end = run.end
    if end is None:
        # A block without End-Date (apt was killed) is taken to last
        # until the next run starts.
        end = starts[index + 1] if index + 1 < len(runs) else float("inf")
    return run if when <= end else None


def _apt_stamp(line):
    """The "YYYY-MM-DD HH:MM:SS" bytes of a Start-Date/End-Date line, or None.

    apt writes two spaces between date and time ("%F  %T").
    """
    value = line.partition(b": ")[2].strip()
    date, _, clock = value.partition(b" ")
    stamp = date + b" " + clock.strip()
    return stamp if len(stamp) == _STAMP_LEN else None


def _version(raw):
    # dpkg writes "<none>" (translated: "<无>" under a zh locale) for a
    # version that is not there.
    if raw.startswith(b"<") and raw.endswith(b">"):
        return None
    return _text(raw)


def _compare(old, new):
    # python-debian loads python-apt: only when a version is compared,
    # not in every command that imports this module (the apt hook).
    from debian.debian_support import version_compare
    try:
        return version_compare(old, new)
    except ValueError:  # not a Debian version: only say "same" or not
        return 0 if old == new else -1


# --- the one-line label --------------------------------------------------

_VERBS = {
    "install": "installed", "upgrade": "upgraded", "reinstall": "reinstalled",
    "downgrade": "downgraded", "remove": "removed", "purge": "purged",
    "disappear": "disappeared", "configure": "configured",
}


def describe(event, *, now=None, ascii=False, utc_offset=None, native_arch=None):
    """A one-line label for ``event``, e.g.

    ``upgraded 10:32 by apt-get for alice: openssh-server 1:9.2p1-2 → 1:9.2p1-2+deb12u3``

    The time is "HH:MM" on the day of ``now`` (default: the current
    time) and "YYYY-MM-DD HH:MM" otherwise.  The architecture is shown
    only for a foreign one.  Every field taken from a log is escaped as
    file names are (pathcodec), so a log line cannot put control
    characters into a mail.  The arrow is U+2192; the result is a str
    and the mail layer encodes it; ``ascii=True`` writes "->" for
    outputs that must stay ASCII.
    """
    arrow = "->" if ascii else "\u2192"
    now = time.time() if now is None else now
    if utc_offset is None:
        local, today = time.localtime(event.time), time.localtime(now)
    else:
        local, today = time.gmtime(event.time + utc_offset), time.gmtime(now + utc_offset)
    when = time.strftime("%H:%M" if local[:3] == today[:3] else "%Y-%m-%d %H:%M", local)
    who = f" for {_safe(event.requested_by)}" if event.requested_by else ""
    name = _safe(event.package) or "unknown package"
    if event.arch and event.arch != "all" and event.arch != native_arch:
        name += ":" + _safe(event.arch)
    old, new = _safe(event.old_version), _safe(event.new_version)
    if event.action == "conffile":
        what = escape(event.path or b"")
        verb = (f"replaced conffile {what} with the package's version"
                if event.decision == "install" else f"kept the local conffile {what}")
        versions = new
    else:
        verb = _VERBS.get(event.action, _safe(event.action))
        if event.action in ("upgrade", "downgrade") or (event.action == "install" and old):
            versions = f"{old} {arrow} {new}"
        elif event.action in ("remove", "purge", "disappear"):
            versions = old
        else:
            versions = new
    label = f"{verb} {when} by {_safe(event.tool)}{who}: {name}"
    return f"{label} {versions}" if versions else label


def _safe(text):
    if text is None:
        return ""
    return escape(text.encode("utf-8", "surrogateescape"))


# --- which operation made a change -------------------------------------------------

# What dpkg (conffile handling, dpkg-maintscript-helper) and ucf leave
# beside a configuration file: the path without it is the packaged file.
_ARTEFACT = re.compile(rb"\.(?:dpkg-(?:dist|old|new|bak|tmp|remove|backup)|ucf-(?:dist|old|new))$")


def _lines_of(path):
    """The lines of a small system file; none when it is absent or unreadable."""
    try:
        with open(path, "rb") as handle:
            return handle.read().splitlines()
    except OSError:
        return []


class Judge:
    """Which package operation made a change a collector has just seen.

    A collector asks when it records a change, and the answer travels
    with the record (records.py ``explained`` and ``during``): the report
    never judges a file as it is later.  A dpkg run explains a change
    only when the evidence ties them:

    - the changed inode's change time (ctime: the kernel's, which no
      program sets back; a removed path's parent directory's) lies
      inside the run, from its first line in dpkg.log to the first
      instant after its last (see ``Attribution.dpkg_runs`` for how the
      log's one-second resolution is decided), and the run ended after
      the collector's previous run: no slack on either side;
    - and a package the run's lines name owns the path (dpkg's file
      lists; for ``.dpkg-dist`` and ``.ucf-dist`` copies, the packaged
      file's owner; ucf's registry; the old systraq's files its upgrade
      removes), or no package owns it (a maintainer script wrote it).

    A path that matches ``critical`` and that no package the run touched
    owns is never explained: made while dpkg ran, it gets ``during`` (a
    warning in the report, with the operation named, but no alert), as a
    maintainer script's adduser writes /etc/passwd.  Everything else is
    the collector's warning.

    ``since``: when the collector's previous run ended (epoch seconds);
    None for a first run, which explains nothing.
    """

    def __init__(self, settings, since, critical=()):
        self.settings = settings
        self.since = since
        self.critical = tuple(os.fsencode(p) for p in critical)
        self.notes = []
        self._runs = None
        self._log = None
        self._database = None
        self._registry = None
        self._obsolete = None
        self._helper_links = None

    def runs(self, since=None):
        """The dpkg runs after ``since`` (default: the collector's previous
        run)."""
        since = self.since if since is None else since
        if since is None:
            return []
        if self._runs is None or self._runs[0] != since:
            self._log = self._log or Attribution(self.settings)
            try:
                self._runs = (since, self._log.dpkg_runs(since))
            except LogUnreadable as exc:
                self.notes.append(f"package operations unknown: {exc}")
                self._runs = (since, [])
        return self._runs[1]

    def judge(self, record, package=None):
        """``record`` (records.Record) with ``explained`` or ``during``
        set when a dpkg run made its change, else as it is.
        ``package``: the package that owns the path, when the collector
        knows it (the package check)."""
        if record.path is None or record.change in ("baseline", "state damaged"):
            return record
        since = self.since
        if since is None and record.since:
            # A first run that compared with what the old package left
            # (its .stat files, filetraq's backups): the record says since
            # when.
            from systraq.spool import epoch
            since = epoch(record.since)
        if not self.runs(since):
            return record
        from systraq.pathcodec import unescape
        raw = unescape(record.path)
        when = self._ctime(raw, gone=record.change in ("removed", "missing"))
        if when is None:
            return record
        # Every run that holds the change time: apt runs dpkg several
        # times in a row, often within one second of the log.
        held = [r for r in reversed(self.runs(since))
                if r.holds(when) and r.bound > since - _TICK]
        if not held:
            return record
        owners = [package] if package else self.owners(raw)
        # The runs that touched an owner, latest first.  apt unpacks an
        # Essential package in one dpkg run and configures it in the
        # next, often within the same second of the log: both hold the
        # change, and the run that unpacked it (an install, upgrade or
        # removal) is the one named, as it changed the package's files.
        touching = [(run, owner, self._log.pick(run.events, owner))
                    for run in held for owner in owners if run.touches(owner)]
        if touching:
            run, owner, event = next(
                (t for t in touching if t[2] is not None and t[2].action in FILE_CHANGING),
                touching[0])
            label = self._log.describe(event, ascii=True) if event is not None else None
            return record.with_fields(explained=run.as_dict(owner, label))
        made = self._helper_made(raw, held) or self._rc_link_made(raw, held)
        if made is not None:
            run, owner, label = made
            return record.with_fields(explained=run.as_dict(owner, label))
        if self._is_critical(raw):
            return record.with_fields(during=held[0].as_dict())
        if owners:
            return record    # its package was in none of these runs
        return record.with_fields(explained=held[0].as_dict())

    def _helper_made(self, path, held):
        """``(run, package, label)`` when deb-systemd-helper says it made
        the link ``path``: its record of the unit (``UNIT.dsh-also``,
        which lists the links it made) names ``path`` and was itself
        written inside one of the ``held`` runs, and that run worked on
        the package that ships the unit.  Else None: a link under
        /etc/systemd made while dpkg ran, with no such record, stays the
        admin's (or an attacker's)."""
        for top, _state, unit_dirs in _SYSTEMD_HELPERS:
            if not path.startswith(top):
                continue
            for unit, written in self._helper_records().get(path, ()):
                for run in held:
                    if not run.holds(written):
                        continue
                    for directory in unit_dirs:
                        for owner in self.owners(directory + unit):
                            if run.touches(owner):
                                return (run, owner, "enabled by deb-systemd-helper for "
                                        + unit.decode("utf-8", "backslashreplace"))
        return None

    def _rc_link_made(self, path, held):
        """``(run, package, label)`` when ``path`` is a boot link as
        update-rc.d makes it -- /etc/rcN.d/[SK]NNname pointing at
        ../init.d/NAME -- and a package of one of the ``held`` runs ships
        that script.  Else None: another link there, or one to a script
        no package of the run ships, stays a warning."""
        match = _RC_LINK.fullmatch(path)
        if match is None:
            return None
        name = match.group(1)
        try:
            target = os.readlink(self.settings.host(path))
        except OSError:
            return None
        if target not in (b"../init.d/" + name, b"/etc/init.d/" + name):
            return None
        for owner in self.owners(b"/etc/init.d/" + name):
            for run in held:
                if run.touches(owner):
                    return (run, owner, "enabled by update-rc.d for "
                            + name.decode("utf-8", "backslashreplace"))
        return None

    def _helper_records(self):
        """{link: [(unit, ctime of the record)]} from deb-systemd-helper's
        records of the links it made (read once)."""
        if self._helper_links is not None:
            return self._helper_links
        from systraq.fsutil import read_untrusted
        links = {}
        for _top, state, _units in _SYSTEMD_HELPERS:
            directory = self.settings.host(state)
            try:
                names = os.listdir(directory)
            except OSError:
                continue
            for name in names:
                if not name.endswith(b".dsh-also"):
                    continue
                try:
                    data, info = read_untrusted(os.path.join(directory, name), limit=1 << 16)
                except OSError:     # gone, or not a regular file (NotRegular)
                    continue
                unit = name[:-len(b".dsh-also")]
                for line in data.split(b"\n"):
                    if line.startswith(b"/"):
                        links.setdefault(line, []).append((unit, info.st_ctime_ns / 1e9))
        self._helper_links = links
        return links

    def _ctime(self, path, gone):
        """The ctime of ``path`` by lstat, which opens nothing; when it is
        gone, of the nearest directory above it that is still there (a
        removal changes its directory, or removes that too); None when it
        cannot be seen."""
        target = path
        while True:
            if gone:
                if target in (b"/", b""):
                    return None
                target = target.rpartition(b"/")[0] or b"/"
            try:
                return os.lstat(self.settings.host(target)).st_ctime_ns / 1e9
            except FileNotFoundError:
                if not gone:
                    return None
            except OSError:
                return None

    def _is_critical(self, path):
        import fnmatch
        return any(fnmatch.fnmatchcase(path, pattern) for pattern in self.critical)

    def owners(self, path):
        """The packages a change of ``path`` (bytes) may come from."""
        base = _ARTEFACT.sub(b"", path)
        owners = self._dpkg_owners(path) or self._dpkg_owners(base)
        owners += [package for package in self._ucf().get(base, ()) if package not in owners]
        if base in self._obsolete_files() and "systraq" not in owners:
            owners.append("systraq")
        return owners

    def _dpkg_owners(self, path):
        if self._database is None:
            from systraq import dpkgdb
            try:
                self._database = dpkgdb.load(self.settings)
            except RunError as exc:
                self.notes.append(f"package owners unknown: {exc}")
                self._database = False
        return [p.key for p in self._database.owners(path)] if self._database else []

    def _ucf(self):
        if self._registry is None:
            self._registry = {}
            for line in _lines_of(self.settings.ucf_registry):
                package, _, path = line.partition(b" ")
                if path:
                    self._registry.setdefault(path.strip(), []).append(
                        package.decode("ascii", "replace"))
        return self._registry

    def _obsolete_files(self):
        if self._obsolete is None:
            self._obsolete = {line.strip() for line in _lines_of(self.settings.obsolete_files)
                              if line.startswith(b"/")}
        return self._obsolete
