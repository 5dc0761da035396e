# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq contents``: backups and unified diffs of world-readable configuration.

The role filetraq played for the old package, fixed where it was wrong.

pub   Every file ``filetraq.conf`` names, and every world-readable
      regular file under /etc (so that a new ``/etc/cron.d/job`` is
      reported at the next run, before the list is generated again).
      Runs as the systraq user.  A changed text file is recorded as a
      unified diff old -> new, capped at ``max_diff_lines``; a binary
      file, or one above ``max_size``, as a notice; a created file with
      its content; a removed file, or one replaced by a symlink or
      something else, as such.  ``authorized_keys`` files are shown as
      keys added and removed (``sshkeys``), not as a diff.
root  The ``authorized_keys`` files of every home that the pub mode
      cannot read (closed homes), as keys added and removed.  Runs as
      root; its copies live in the root-only state directory.

Privacy: content is only read, kept or shown for files readable by
everybody (read bit for others, and every directory above enterable by
others).  A file that stops being so gets a notice and its backups are
closed (mode 0600, no current copy); a backup is never more readable
than its source (mode & 0640).  Files matching ``secret`` patterns are
never backed up or shown, even when world-readable: that they are
world-readable is the warning.

Backups keep the old layout, so those the old package left keep working:
``filetraq/<absolute path>/orig`` is the last content seen, and
``orig.MM.DD.YY__HH.MM`` (local time) each earlier one, named when it
was replaced.  Dated copies older than ``retention_days`` are removed.

Crash safety: a run writes the new backups beside the old ones
(``.orig.next``); its state, naming those updates, and its records go
out through the run transaction (runner.py), which applies the updates
between spooling the records and renaming the state.  A run killed at
any point is finished or undone by the next one: a change is reported
once, and the backup that the next diff starts from is always the
content last reported.
"""

import datetime
import errno
import hashlib
import os
import posixpath
import re
import stat
import struct
import time

from systraq import accounts, listgen, lists, pathcodec, records, runner, spool, sshkeys, textdiff
from systraq.errors import ConfigError, RunError
from systraq.fsutil import NotRegular, atomic_write, mode_directory, open_untrusted, read_untrusted
from systraq.pathcodec import escape

MODES = ("pub", "root")
STATE_FORMAT = 1
LOCK_WAIT = 10.0
READ_CHUNK = 1 << 20
# The longest authorized_keys file the root mode keeps a copy of (a state
# file record holds at most 65,535 bytes); a longer one is compared by
# digest only.  A key line is about 100 to 800 bytes.
KEYS_MAX = 60000

# Index record of one file (pub mode): kind, permission bits, owner,
# size, sha256 of the content.
_RECORD = struct.Struct("<cHIQ32s")
BACKUP = b"f"      # content kept in filetraq/<path>/orig
KEYS = b"k"        # authorized_keys: kept, compared key by key
SECRET = b"s"      # matches a secret pattern: never kept
LARGE = b"L"       # above max_size: never kept

ORIG = b"orig"
STAGED = b".orig.next"
_DATED = re.compile(rb"^orig\.(\d\d)\.(\d\d)\.(\d\d)__(\d\d)\.(\d\d)(?:\.\d+)?$")
_TYPES = {stat.S_IFDIR: "directory", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "socket",
          stat.S_IFCHR: "character device", stat.S_IFBLK: "block device"}


class _Gone(Exception):
    """The file vanished or changed type while it was read."""


def printable(data):
    """File content (bytes) as text safe for a terminal or a mail: UTF-8
    shown as it is, control characters but tab and newline, and bytes
    that are not UTF-8, as backslash escapes."""
    return pathcodec.escape_text(data.decode("utf-8", "surrogateescape"))


def _diff_time(seconds, nanoseconds=0):
    """A time as GNU diff prints it in a header line."""
    moment = time.localtime(seconds)
    return (time.strftime("%Y-%m-%d %H:%M:%S", moment) + f".{nanoseconds:09d} "
            + time.strftime("%z", moment))


class _Reach:
    """Whether others may enter every directory above a logical path."""

    def __init__(self, settings):
        self.settings = settings
        self.cache = {}

    def open_to_all(self, logical):
        parent = posixpath.dirname(logical)
        chain = []
        while True:
            known = self.cache.get(parent)
            if known is not None:
                result = known
                break
            chain.append(parent)
            if parent == b"/":
                result = True
                break
            parent = posixpath.dirname(parent)
        for directory in reversed(chain):
            if result:
                try:
                    result = bool(os.stat(self.settings.host(directory)).st_mode
                                  & stat.S_IXOTH)
                except OSError:
                    result = False
            self.cache[directory] = result
        return result


def _read(host, info, max_size):
    """``(content or None, sha256)`` of the regular file ``host`` whose
    lstat is ``info``; content is None above ``max_size``.

    Opened without following links or blocking, and checked with fstat to
    be the file that lstat saw.
    """
    try:
        fd, _now = open_untrusted(host, seen=info)
    except NotRegular:
        raise _Gone() from None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            raise _Gone() from None
        raise
    try:
        digest = hashlib.sha256()
        parts = []
        kept = 0
        while True:
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            if parts is not None:
                kept += len(chunk)
                if kept > max_size:
                    parts = None
                else:
                    parts.append(chunk)
        return (b"".join(parts) if parts is not None else None), digest.digest()
    finally:
        os.close(fd)


def _read_backup(path):
    try:
        return read_untrusted(path)[0]
    except OSError:
        return None


class Backups:
    """The backup tree: ``<backup_dir><logical path>/orig`` and dated copies."""

    def __init__(self, settings):
        self.top = settings.backup_dir
        self.last_written = None   # set by sweep()

    def directory(self, logical):
        return self.top + logical

    def orig(self, logical):
        return os.path.join(self.directory(logical), ORIG)

    def dated_name(self, logical, now):
        """A name for the copy that ``orig`` becomes now, not yet taken."""
        base = ORIG + b"." + time.strftime("%m.%d.%y__%H.%M", time.localtime(now)).encode()
        name, number = base, 1
        while os.path.lexists(os.path.join(self.directory(logical), name)):
            number += 1
            name = base + b".%d" % number
        return name

    def stage(self, logical, data, perm, mtime_ns):
        """Write the next ``orig`` of ``logical`` beside the current one."""
        directory = self.directory(logical)
        os.makedirs(directory, mode=0o750, exist_ok=True)
        staged = os.path.join(directory, STAGED)
        atomic_write(staged, data, mode=perm & 0o640)
        os.utime(staged, ns=(mtime_ns, mtime_ns))

    def apply(self, update):
        """Carry out one update; safe to repeat after a crash."""
        logical = os.fsencode(update["path"])
        directory = self.directory(logical)
        orig = os.path.join(directory, ORIG)
        dated = update.get("dated")
        if dated and os.path.lexists(orig):
            target = os.path.join(directory, os.fsencode(dated))
            if not os.path.lexists(target):
                os.rename(orig, target)
            else:
                os.unlink(orig)
        staged = os.path.join(directory, STAGED)
        if update.get("put") and os.path.lexists(staged):
            os.rename(staged, orig)
        if update.get("close"):
            self.close(logical)

    def discard(self, update):
        """Undo a staged update that was never reported."""
        staged = os.path.join(self.directory(os.fsencode(update["path"])), STAGED)
        if os.path.lexists(staged):
            os.unlink(staged)

    def close(self, logical):
        """Make every backup of ``logical`` readable by the systraq user only."""
        try:
            with os.scandir(self.directory(logical)) as scan:
                for entry in scan:
                    if entry.is_file(follow_symlinks=False):
                        os.chmod(entry.path, 0o600)
        except FileNotFoundError:
            pass

    def sweep(self, retention_days, now):
        """Walk the tree once: remove dated copies past retention, left-over
        staged files and empty directories, tighten modes wider than 0640
        (the old package copied modes as they were, 0666 included), and
        return the logical paths that have an ``orig``.

        ``self.last_written`` becomes the newest change time of a backup
        file, read before any mode was tightened: the backups' owner last
        wrote no earlier than that."""
        found = []
        self.last_written = None
        limit = now - retention_days * 86400 if retention_days else None
        prefix = len(self.top)

        def visit(directory):
            empty = True
            try:
                with os.scandir(directory) as scan:
                    entries = list(scan)
            except OSError:
                return False
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if visit(entry.path):
                        try:
                            os.rmdir(entry.path)
                            continue
                        except OSError:
                            pass
                    empty = False
                    continue
                info = entry.stat(follow_symlinks=False)
                name = entry.name
                if name == STAGED or name.startswith(b".tmp-"):
                    os.unlink(entry.path)  # a run that died before it journalled
                    continue
                if limit is not None and name != ORIG and _age_stamp(name, info) < limit:
                    os.unlink(entry.path)
                    continue
                if stat.S_ISREG(info.st_mode):
                    self.last_written = max(self.last_written or 0, info.st_ctime)
                    if stat.S_IMODE(info.st_mode) & ~0o640:
                        os.chmod(entry.path, stat.S_IMODE(info.st_mode) & 0o640)
                if name == ORIG:
                    found.append(directory[prefix:])
                empty = False
            return empty

        if os.path.isdir(self.top):
            visit(self.top)
        return sorted(found)


def _age_stamp(name, info):
    """When a dated copy was made: from its name, else its mtime."""
    match = _DATED.match(name)
    if match:
        month, day, year, hour, minute = (int(g) for g in match.groups())
        try:
            return time.mktime(datetime.datetime(2000 + year, month, day, hour,
                                                 minute).timetuple())
        except ValueError:
            pass
    return info.st_mtime


# --- results and records ------------------------------------------------------

class Result:
    def __init__(self, mode):
        self.mode = mode
        self.records = []
        self.count = 0            # files watched with content
        self.private = 0          # listed but not world-readable: skipped
        self.unreadable = 0
        self.baseline = False
        self.backed_up = 0
        self.adopted = 0          # backups of the old package taken over
        self.lists = None         # listgen.Generated when the lists were rewritten
        self.damaged = None


def _encode(kind, perm, uid, size, digest):
    return _RECORD.pack(kind, perm, uid, size, digest)


def _decode(record):
    return _RECORD.unpack(record)


def run(settings, config, mode="pub", spool_group=None, now=None, only=None):
    """One contents run of ``mode``; returns a Result.

    ``only``: logical paths to look at again in the pub mode, each with
    everything below it (the realtime watcher's "look again"); the rest of
    the state is left as it is.  Without a state to compare with, and in
    the root mode, the run is a full one.
    """
    if mode not in MODES:
        raise ConfigError.single("--mode", None, f"unknown mode {mode!r}")
    directory = mode_directory(settings, mode)
    now = time.time() if now is None else now
    backups = Backups(settings)

    def finish(header):
        """A killed run's records were spooled: carry out its backups."""
        for update in header.get("updates", ()):
            backups.apply(update)

    def undo(header):
        """A killed run's records never went out: drop what it staged."""
        for update in header.get("updates", ()):
            backups.discard(update)

    with runner.Run(settings, os.path.join(directory, f"contents_{mode}.state".encode()),
                    STATE_FORMAT, command=f"systraq contents --mode {mode}",
                    lock=os.path.join(directory, f"contents_{mode}.lock".encode()),
                    lock_wait=LOCK_WAIT, spool_group=spool_group, now=now,
                    finish=finish, undo=undo) as transaction:
        if mode == "pub":
            if only is not None:
                result = _Pub(settings, config, transaction).run_restricted(only)
                if result is not None:
                    return result
            return _Pub(settings, config, transaction).run()
        return _Root(settings, config, transaction).run()


class _Run:
    """What both modes share: the records, the state, the commit."""

    def __init__(self, settings, config, transaction, mode):
        self.settings = settings
        self.config = config
        self.transaction = transaction
        self.state = transaction.state
        self.now = transaction.now
        self.stamp = transaction.stamp
        self.since = None
        self.result = Result(mode)
        self.mode = mode
        self.updates = []
        self.backups = Backups(settings)

    def record(self, path, change, **fields):
        self.result.records.append(records.make(
            "contents", change, escape(path), mode=self.mode, time=self.stamp,
            # When the previous run ended: the report looks for the
            # package operation that made a change between the two.
            since=self.since, **fields))

    def load(self):
        header, old = self.transaction.load()
        self.result.damaged = self.transaction.damaged
        self.since = self.transaction.since
        return header, old

    def commit(self, header, unchanged, new, private, keep_time=None):
        """Write the state and spool the records; nothing at all when the
        state is ``unchanged`` and there is nothing to report.

        ``keep_time``: the state's stat result before a restricted run,
        whose time the state keeps (it says when the last full run ended).
        """
        if unchanged and not self.result.records and not self.updates:
            if keep_time is None:
                self.transaction.touch()
            return

        def backups():
            for update in self.updates:
                self.backups.apply(update)
        judge = self.transaction.judge(self.config.get("check", "critical"))
        self.result.records = [judge.judge(record) for record in self.result.records]
        header = dict(header or {}, mode=self.mode, time=self.stamp, updates=self.updates)
        self.transaction.commit(header, new, self.result.records,
                                source="contents" if self.mode == "pub" else "contents_root",
                                mode=private, before_rename=backups, keep_time=keep_time)


class _Pub(_Run):
    def __init__(self, settings, config, transaction):
        super().__init__(settings, config, transaction, "pub")
        self.max_size = config.get("contents", "max_size")
        self.max_lines = config.get("contents", "max_diff_lines")
        self.secret = config.get("contents", "secret")
        self.reach = _Reach(settings)

    def watched(self):
        """Logical paths to look at: the list's and every world-readable /etc file."""
        paths = set(listgen.etc_files(self.settings, self.config.get("contents", "ignore")))
        try:
            entries = lists.parse(self.settings.filetraq_conf, "system")
        except lists.MissingListFile:
            entries = []
        # Most entries are the generated names of files the search just
        # found: looking them up again would only repeat an lstat each.
        entries = [entry for entry in entries if entry.pattern not in paths]
        found = lists.expand(self.settings, entries, "system", self.config.exclude)
        paths.update(found.paths)
        self.result.unreadable += len(found.unreadable)
        return paths

    def run(self):
        settings = self.settings
        self.result.lists = listgen.refresh(settings, self.config)
        header, old = self.load()
        try:
            os.makedirs(self.backups.top, mode=0o750, exist_ok=True)
            top_mode = stat.S_IMODE(os.stat(self.backups.top).st_mode)
            if top_mode & ~0o750:
                os.chmod(self.backups.top, top_mode & 0o750)
        except OSError as exc:
            raise RunError(f"cannot use {os.fsdecode(self.backups.top)}: {exc.strerror}") from None
        retention = self.config.get("contents", "retention_days")
        swept = header.get("swept", 0) if header else 0
        if old is None or self.now - swept >= 86400 or self.now < swept:
            origs = self.backups.sweep(retention, self.now)
            swept = self.now
        else:
            origs = None
        quiet = False
        if old is None:
            # No state: take over the backups there are (the old package's,
            # or ours when the state was lost) as what was seen last, so
            # that what changed since is still reported.  With none, this
            # is the first run: back up quietly, say so in one line.
            old = {}
            for logical in origs:
                data = _read_backup(self.backups.orig(logical))
                if data is not None:
                    old[logical] = _encode(BACKUP, 0o644, 0, len(data),
                                           hashlib.sha256(data).digest())
            self.result.adopted = len(old)
            if old and self.backups.last_written:
                # What changed since was changed after the backups were
                # last written: the report looks for the package
                # operations from then on (the old package's filetraq
                # kept no time of its last run; a later run wrote nothing).
                self.since = spool.stamp(self.backups.last_written)
            quiet = not old
            self.result.baseline = quiet
        new = {}
        watched = self.watched()
        for logical in sorted(watched | set(old)):
            self.examine(logical, old.get(logical), new, quiet, logical in watched)
        if self.result.damaged is not None:
            self.record(settings.logical(self.state), "state damaged",
                        detail=self.result.damaged, count=len(new))
        elif quiet or self.result.adopted:
            self.record(settings.logical(self.backups.top), "baseline", count=self.result.backed_up,
                        adopted=self.result.adopted)
        self.result.count = len(new)
        unchanged = (header is not None and header.get("swept") == swept
                     and old == new)
        self.commit({"swept": swept}, unchanged, new, 0o640)
        return self.result

    def run_restricted(self, tops):
        """Look again at the paths ``tops`` and below, as ``run`` would,
        and update only their part of the state, which keeps its time (the
        end of the last full run, the "since" of the next one's records).
        None when there is no usable state: the caller takes a full run."""
        settings = self.settings
        self.result.lists = listgen.refresh(settings, self.config)
        header, old = self.load()
        if old is None or header is None or self.result.damaged is not None:
            return None
        keep_time = os.stat(self.state)
        tops = sorted(set(tops))
        old_sub = {p: r for p, r in old.items() if _under(p, tops)}
        watched = self.watched_below(tops)
        new_sub = {}
        for logical in sorted(watched | set(old_sub)):
            self.examine(logical, old_sub.get(logical), new_sub, False, logical in watched)
        new = {p: r for p, r in old.items() if p not in old_sub}
        new.update(new_sub)
        self.result.count = len(new)
        self.commit({"swept": header.get("swept", 0)}, old_sub == new_sub, new, 0o640,
                    keep_time=keep_time)
        return self.result

    def watched_below(self, tops):
        """``watched()`` for the paths at or below ``tops`` only, without
        searching all of /etc."""
        settings = self.settings
        paths = set(listgen.etc_files(settings, self.config.get("contents", "ignore"), tops))
        try:
            entries = lists.parse(settings.filetraq_conf, "system")
        except lists.MissingListFile:
            entries = []
        entries = [entry for entry in entries
                   if entry.pattern not in paths and _may_reach(entry.pattern, tops)]
        found = lists.expand(settings, entries, "system", self.config.exclude)
        paths.update(p for p in found.paths if _under(p, tops))
        return paths

    def examine(self, logical, before, new, quiet, listed):
        """Compare ``logical`` with its index record ``before`` (or None);
        put its new record in ``new``; stage its backup; record changes.

        A path no longer listed is still followed to its end (removed,
        replaced, closed); one that is there as before but no longer
        listed (an ignore pattern, an entry taken out of the tail) is
        dropped quietly, its backups left to expire."""
        settings = self.settings
        host = settings.host(logical)
        if before is not None:
            before = _decode(before)
        try:
            info = os.lstat(host)
        except FileNotFoundError:
            info = None
        except OSError:
            self.result.unreadable += 1
            if before is not None:
                new[logical] = _encode(*before)
            return
        if info is None or not stat.S_ISREG(info.st_mode):
            if before is None:
                return  # a directory, link or device in the list: not content
            if info is None:
                self.record(logical, "removed")
            elif stat.S_ISLNK(info.st_mode):
                self.record(logical, "symlink", target=escape(os.readlink(host)))
            else:
                self.record(logical, "type", type=_TYPES.get(stat.S_IFMT(info.st_mode),
                                                             "special file"))
            if before[0] in (BACKUP, KEYS):
                self._journal(logical, before)
            return
        perm = stat.S_IMODE(info.st_mode)
        if not (perm & stat.S_IROTH and self.reach.open_to_all(logical)):
            if before is None:
                self.result.private += 1
                return
            if before[0] == SECRET:
                self.record(logical, "secret closed", perm=f"{perm:04o}")
                return
            self.record(logical, "not world-readable", perm=f"{perm:04o}")
            if before[0] in (BACKUP, KEYS):
                self._journal(logical, before, close=True)
            return
        if not listed:
            return
        try:
            data, digest = _read(host, info, self.max_size)
        except _Gone:
            if before is not None:
                new[logical] = _encode(*before)  # seen again at the next run
            return
        except OSError:
            self.result.unreadable += 1
            if before is not None:
                new[logical] = _encode(*before)
            return
        if listgen.matches(logical, self.secret):
            kind = SECRET
        elif data is None:
            kind = LARGE
        elif posixpath.basename(logical) in listgen.KEY_FILES:
            kind = KEYS
        else:
            kind = BACKUP
        new[logical] = _encode(kind, perm, info.st_uid, info.st_size, digest)
        if before is not None and before[4] == digest and before[0] == kind:
            return
        keep = kind in (BACKUP, KEYS)
        if keep:
            self.backups.stage(logical, data, perm, info.st_mtime_ns)
            self._journal(logical, before, put=True)
        elif before is not None and before[0] in (BACKUP, KEYS):
            # Too large now, or a secret: no current copy any more, and a
            # secret's old copies are closed.
            self._journal(logical, before, close=kind == SECRET)
        if kind == SECRET:
            if before is None or before[0] != SECRET:
                self.record(logical, "world-readable secret", perm=f"{perm:04o}",
                            warning=True)
            else:
                self.record(logical, "secret changed", size=info.st_size)
            return
        if quiet:
            self.result.backed_up += keep
            return
        old_data = None
        if before is not None and before[0] in (BACKUP, KEYS):
            old_data = _read_backup(self.backups.orig(logical))
        if kind == LARGE:
            self.record(logical, "created" if before is None else "content",
                        size=info.st_size, note=f"above max_size ({self.max_size} "
                                                "bytes): no backup, no diff")
        elif kind == KEYS:
            change = sshkeys.compare(old_data or b"", data)
            lines = sshkeys.describe(change)
            if lines:
                self.record(logical, "keys" if before is not None else "created",
                            keys=lines, owner=accounts.Names(self.settings).user(info.st_uid))
        else:
            self.content(logical, before, old_data, data, info)

    def _journal(self, logical, before, put=False, close=False):
        """Note a change to the backups of ``logical``, carried out at the
        commit: the current copy, if one was kept (``before``), becomes a
        dated one; ``put`` makes the staged copy current; ``close`` makes
        every copy readable by the systraq user only."""
        update = {"path": os.fsdecode(logical)}
        if before is not None and before[0] in (BACKUP, KEYS):
            update["dated"] = os.fsdecode(self.backups.dated_name(logical, self.now))
        if put:
            update["put"] = True
        if close:
            update["close"] = True
        self.updates.append(update)

    def content(self, logical, before, old_data, data, info):
        if old_data is None and before is not None:
            note = "previous content not kept"
        else:
            note = None
        if textdiff.is_binary(data) or (old_data and textdiff.is_binary(old_data)):
            fields = {"size": len(data), "binary": True}
            if old_data is not None:
                fields["size_before"] = len(old_data)
            self.record(logical, "created" if before is None else "content", **fields)
            return
        label = escape(logical)
        if old_data is None:
            diff = textdiff.unified(b"", data, "/dev/null", label,
                                    new_time=_diff_time(info.st_mtime, info.st_mtime_ns % 10**9))
        else:
            orig_info = os.lstat(self.backups.orig(logical))
            diff = textdiff.unified(old_data, data, label, label,
                                    old_time=_diff_time(orig_info.st_mtime,
                                                        orig_info.st_mtime_ns % 10**9),
                                    new_time=_diff_time(info.st_mtime,
                                                        info.st_mtime_ns % 10**9))
        shown, cut = textdiff.cap(diff, self.max_lines)
        fields = {"diff": printable(shown), "cut": cut}
        if note:
            fields["note"] = note
        self.record(logical, "created" if before is None else "content", **fields)


def _under(path, tops):
    """True when logical ``path`` is one of ``tops`` or lies below one."""
    return any(path == top or top == b"/" or path.startswith(top + b"/") for top in tops)


_MAGIC = re.compile(rb"[*?[]")


def _may_reach(pattern, tops):
    """Whether a list entry could name something at or below ``tops``:
    what it names starts with its part before the first wildcard."""
    literal = pattern[:_MAGIC.search(pattern).start()] if _MAGIC.search(pattern) else pattern
    return any(literal.startswith(top + b"/") or literal == top or top == b"/"
               or top.startswith(literal) for top in tops)


# --- root mode: authorized_keys behind closed doors -------------------------------

def _read_keys(settings, home, name):
    """``(kind, data)`` of ``home``/.ssh/``name``, read as root without
    following a link the user planted: ``("f", bytes)``, ``("l", target)``,
    ``("x", type)`` for something else, or None when absent."""
    try:
        home_fd = os.open(settings.host(home), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            ssh_fd = os.open(b".ssh", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                             | os.O_CLOEXEC, dir_fd=home_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                try:
                    return ("l", os.readlink(b".ssh", dir_fd=home_fd) + b" (.ssh)")
                except OSError:
                    return None
            return None
        try:
            try:
                info = os.lstat(name, dir_fd=ssh_fd)
            except OSError:
                return None
            if stat.S_ISLNK(info.st_mode):
                return ("l", os.readlink(name, dir_fd=ssh_fd))
            if not stat.S_ISREG(info.st_mode):
                return ("x", _TYPES.get(stat.S_IFMT(info.st_mode), "special file").encode())
            try:
                fd, now = open_untrusted(name, dir_fd=ssh_fd, seen=info)
            except OSError:
                return None     # swapped meanwhile: looked at again next run
            try:
                data = os.read(fd, KEYS_MAX + 1)
                if len(data) > KEYS_MAX:
                    digest = hashlib.sha256(data)
                    while True:
                        chunk = os.read(fd, READ_CHUNK)
                        if not chunk:
                            break
                        digest.update(chunk)
                    return ("h", digest.digest())
                return ("f", data, now)
            finally:
                os.close(fd)
        finally:
            os.close(ssh_fd)
    finally:
        os.close(home_fd)


class _Root(_Run):
    def __init__(self, settings, config, transaction):
        super().__init__(settings, config, transaction, "root")
        self.reach = _Reach(settings)
        self.names = accounts.Names(settings)

    def run(self):
        header, old = self.load()
        quiet = old is None and self.result.damaged is None
        old = old or {}
        new = {}
        handed_over = set()
        for home in accounts.home_directories(self.settings):
            for name in listgen.KEY_FILES:
                logical = home + b"/.ssh/" + name
                found = _read_keys(self.settings, home, name)
                if found is None:
                    record = None
                elif found[0] == "f":
                    info = found[2]
                    if (stat.S_IMODE(info.st_mode) & stat.S_IROTH
                            and self.reach.open_to_all(logical)):
                        handed_over.add(logical)
                        continue  # world-readable: the pub mode shows it
                    record = b"f" + found[1]
                else:
                    record = found[0].encode() + found[1]
                if record is not None:
                    new[logical] = record
                self.compare(logical, old.get(logical), record, quiet)
        for logical in sorted(set(old) - set(new) - handed_over):
            self.compare(logical, old[logical], None, quiet)
        if self.result.damaged is not None:
            self.record(self.settings.logical(self.state), "state damaged",
                        detail=self.result.damaged, count=len(new))
        elif quiet:
            self.result.baseline = True
            self.record(self.settings.logical(self.state), "baseline", count=len(new))
        self.result.count = len(new)
        self.commit({}, header is not None and old == new, new, 0o600)
        return self.result

    def compare(self, logical, before, after, quiet):
        if before == after or quiet:
            return
        if after is None:
            if before[:1] == b"f":
                lines = sshkeys.describe(sshkeys.compare(before[1:], b""))
                self.record(logical, "removed", keys=lines)
            elif before is not None:
                self.record(logical, "removed")
            return
        kind, body = after[:1], after[1:]
        if kind == b"l":
            self.record(logical, "symlink", target=escape(body))
        elif kind == b"x":
            self.record(logical, "type", type=body.decode())
        elif kind == b"h":
            self.record(logical, "keys", note=f"longer than {KEYS_MAX} bytes: "
                                              "compared by digest only")
        else:
            old_body = before[1:] if before is not None and before[:1] == b"f" else b""
            lines = sshkeys.describe(sshkeys.compare(old_body, body))
            if lines:
                self.record(logical, "keys" if before is not None else "created",
                            keys=lines)
