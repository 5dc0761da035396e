# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq localsums``: the admin's own digests of files no package owns.

The old package had the admin run ``md5sum`` over /usr/local and keep the
output as ``systraq.md5sums``; systraq checked it every day, as debsums
checks packaged files.  This module owns that file, now
``/var/lib/systraq/systraq.sums``: its format, verifying it, and
recording the digests of files the admin declares trusted.

The format is what ``md5sum`` and ``sha256sum`` write, read the way
``md5sum -c`` reads it, so that a file the admin made by hand keeps
working and ``sha256sum -c systraq.sums`` keeps working on what systraq
writes:

- ``DIGEST  PATH`` or, in binary mode, ``DIGEST *PATH``.  The digest's
  length says the algorithm: 32 hex digits md5, 64 sha256.
- A name holding a backslash, newline or carriage return is escaped
  (``\\\\``, ``\\n``, ``\\r``) and its line starts with a backslash.
- Lines starting with ``#`` and blank lines are ignored.

Unlike ``md5sum -c``, which skips a line it cannot read, a malformed
line is an error naming file and line: a line silently skipped is a file
silently no longer checked.  Paths must be absolute, since a relative one
would depend on the directory cron happens to start in.
"""

import errno
import os
import re
import stat
from collections import namedtuple
from dataclasses import dataclass, field

from systraq import records, runner, standing
from systraq.errors import ConfigError, RunError, UsageError
from systraq.fsutil import NotRegular, atomic_write, held, read_untrusted
from systraq.pathcodec import escape, unescape as pathcodec_unescape
from systraq.scan import Scanner

SUMS_NAME = b"systraq.sums"
# The old package's name (its manual: "md5sums of binary files not in
# Debian packages"); read when systraq.sums does not exist.
LEGACY_NAME = b"systraq.md5sums"

# By digest length: md5 (the old package's) and sha256 (what --update
# writes).  No more: 128 hex digits could be sha512sum's or b2sum's
# output, and a wrong guess would call a good file changed.
ALGORITHMS = {32: "md5", 64: "sha256"}

# One digest line.  digest: lower-case hex; algorithm: "md5" or "sha256";
# path: logical absolute path (bytes, unescaped, duplicate slashes folded);
# number: its line number in the file, from 1.
Line = namedtuple("Line", "digest algorithm path number")


def sums_path(settings):
    return os.path.join(settings.state_dir, SUMS_NAME)


def legacy_path(settings):
    return os.path.join(settings.state_dir, LEGACY_NAME)


class _Malformed(Exception):
    """One line cannot be read; the message says why."""


# Leading blanks, the escape marker, the digest, one blank, and the rest:
# md5sum -c's split_3.  A line may end in "\r" (made on another system);
# md5sum -c drops it, and so does this.
_LINE = re.compile(rb"[ \t]*(\\?)([0-9A-Fa-f]+)[ \t](.*)", re.DOTALL)
# "MD5 (name) = digest", what md5sum --tag writes.
_TAGGED = re.compile(rb"\\?[A-Z][A-Z0-9-]* \(.*\) = [0-9A-Fa-f]+")
_UNESCAPE = {b"\\": b"\\", b"n": b"\n", b"r": b"\r"}


def _unescape(name):
    """md5sum -c's filename_unescape: only \\\\, \\n and \\r exist."""
    out = bytearray()
    i = 0
    while i < len(name):
        byte = name[i:i + 1]
        if byte == b"\\":
            code = name[i + 1:i + 2]
            if code not in _UNESCAPE:
                raise _Malformed("bad escape in the file name (after a leading '\\' "
                                 "only \\\\, \\n and \\r may follow a backslash)")
            out += _UNESCAPE[code]
            i += 2
        else:
            out += byte
            i += 1
    return bytes(out)


def check_path(path):
    """``path`` (bytes) as a logical path, or a message saying why it is not one."""
    if not path:
        return None, "no file name"
    if b"\0" in path:
        return None, "NUL byte in the file name"
    if not path.startswith(b"/"):
        return None, "not an absolute path (name files from /)"
    if path.endswith(b"/") and path != b"/":
        return None, "the name ends in '/' (it names a directory)"
    components = [c for c in path.split(b"/") if c]
    if any(c in (b".", b"..") for c in components):
        # Folding them away would differ from what the kernel does when
        # a component is a symlink; the admin writes the path plainly.
        return None, "'.' or '..' in the path (write it without them)"
    return b"/" + b"/".join(components), None


def parse_line(raw, number):
    """The Line in ``raw`` (one line, without its newline); None for a
    comment or a blank line.  Raises _Malformed."""
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if raw.startswith(b"#") or not raw.strip(b" \t"):
        return None
    match = _LINE.fullmatch(raw)
    if match is None:
        if _TAGGED.fullmatch(raw):
            raise _Malformed("BSD-style line ('ALGO (name) = digest', md5sum --tag); "
                             "write it as 'DIGEST  PATH'")
        raise _Malformed("not a checksum line (expected 'DIGEST  PATH', "
                         "as md5sum or sha256sum write it)")
    escaped, digest, rest = match.groups()
    algorithm = ALGORITHMS.get(len(digest))
    if algorithm is None:
        raise _Malformed(f"a digest of {len(digest)} hex digits; expected 32 (md5) "
                         "or 64 (sha256)")
    # After the blank comes the type marker, ' ' (text) or '*' (binary),
    # then the name.  md5sum -c also reads "DIGEST NAME" with a single
    # blank (BSD 'md5 -r'); a name is absolute here, so a name starting
    # with '/' right after the blank is that form, never ambiguous.
    if rest[:1] in (b" ", b"*"):
        rest = rest[1:]
    if escaped:
        rest = _unescape(rest)
    path, problem = check_path(rest)
    if problem:
        raise _Malformed(problem)
    return Line(digest.lower().decode("ascii"), algorithm, path, number)


def read_lines(path):
    """``(raw lines, [(index, Line)])`` of the sums file at host path
    ``path``, or None when there is none.  Raw lines keep their newline,
    so that a rewrite keeps every other line byte for byte.  Raises
    ConfigError naming every malformed line, RunError when the file
    cannot be read."""
    data = _read(path)
    if data is None:
        return None
    # Split at "\n" only, as md5sum -c does (bytes.splitlines would also
    # split at "\r", "\v", "\f" and more, which a name may hold).
    raw_lines = [line + b"\n" for line in data.split(b"\n")]
    raw_lines[-1] = raw_lines[-1][:-1]   # the last line has no newline
    if not raw_lines[-1]:
        raw_lines.pop()
    lines = []
    problems = []
    display = escape(path)
    for index, raw in enumerate(raw_lines):
        try:
            line = parse_line(raw.rstrip(b"\n"), index + 1)
        except _Malformed as exc:
            problems.append((display, index + 1, str(exc)))
            continue
        if line is not None:
            lines.append((index, line))
    if problems:
        raise ConfigError(problems)
    return raw_lines, lines


def parse(path):
    """The digest lines of the sums file at host path ``path`` (bytes or str).

    A missing file is a RunError here; ``verify`` treats it as "nothing
    declared" before calling this.
    """
    path = os.fsencode(path)
    found = read_lines(path)
    if found is None:
        raise RunError(f"{escape(path)}: no such file")
    return [line for _index, line in found[1]]


def _read(path):
    """The bytes of regular file ``path``; None when it does not exist.

    Not through a symbolic link: the state directory belongs to the
    systraq user, and the root admin running --update must not be led to
    read (and echo line numbers of) a file that user points at.
    """
    try:
        return read_untrusted(path)[0]
    except FileNotFoundError:
        return None
    except NotRegular as exc:
        if exc.kind == stat.S_IFLNK:
            raise RunError(f"{escape(path)}: is a symbolic link; not followed") from None
        raise RunError(f"{escape(path)}: not a regular file") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RunError(f"{escape(path)}: is a symbolic link; not followed") from None
        raise RunError(f"{escape(path)}: cannot read: {exc.strerror}") from None


# --- verifying ---------------------------------------------------------------

_KIND_NAMES = {"d": "a directory", "p": "a FIFO", "s": "a socket",
               "c": "a character device", "b": "a block device"}


@dataclass
class Result:
    """What ``verify`` found.  Paths are logical bytes, in the order of
    the sums file, each once; ``reasons`` says why each path in
    ``changed`` is there."""

    source: bytes | None = None     # host path of the file read; None: none exists
    legacy: bool = False            # True when that was systraq.md5sums
    ok: list = field(default_factory=list)
    changed: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unreadable: list = field(default_factory=list)
    reasons: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)


def _source(settings):
    """``(host path, legacy, notes)`` of the sums file to read."""
    current, legacy = sums_path(settings), legacy_path(settings)
    if os.path.lexists(current):
        notes = []
        if os.path.lexists(legacy):
            notes.append(f"{escape(legacy)} is ignored: {escape(current)} replaces it")
        return current, False, notes
    if os.path.lexists(legacy):
        return legacy, True, [f"{escape(current)} does not exist; read the old "
                              f"package's {escape(legacy)}"]
    return None, False, [f"no {escape(current)}: no local files declared"]


def _judge(settings, line, entry):
    """``(status, reason)`` of one line, given what the scan saw."""
    if entry is None:
        return _absent(settings, line.path)
    if entry.kind == "l":
        return "changed", f"a symbolic link (to {escape(entry.target)}), not a regular file"
    if entry.kind != "f":
        return "changed", f"{_KIND_NAMES.get(entry.kind, 'of an unknown type')}, " \
                          "not a regular file"
    if entry.note == "not readable":
        return "unreadable", None
    if entry.digest is None:   # "changing": swapped three times while read
        return "changed", "kept changing while it was read"
    if entry.digest != line.digest:
        return "changed", f"content differs ({line.algorithm})"
    return "ok", None


def _absent(settings, path):
    """Why the scan did not see ``path``.

    The scanner leaves out a path it cannot reach: really absent, behind
    a directory the systraq user may not search, or behind a symlink in a
    directory others can write (which it never follows).  An lstat tells
    them apart; it opens nothing.
    """
    try:
        os.lstat(settings.host(path))
    except PermissionError:
        return "unreadable", None
    except OSError:
        return "missing", None
    return "changed", "reached through a symbolic link in a directory not only root " \
                      "can write; not followed"


def _closed(settings, paths):
    """The paths in a directory this process may not search.

    Left out of the scan: Scanner raises PermissionError for a name in a
    directory it could open (O_PATH) but not search, which ends the
    whole scan; running as the systraq user, /usr/local may hold such a
    directory.  lstat opens nothing.
    """
    closed = set()
    for path in paths:
        try:
            os.lstat(settings.host(path))
        except PermissionError:
            closed.add(path)
        except OSError:
            pass
    return closed


def _scan(settings, algorithm, paths, workers):
    try:
        return Scanner(settings, algorithm, workers=workers).scan(sorted(paths))
    except PermissionError as exc:
        # A directory closed after _closed looked: rare; say what.
        raise RunError(f"{escape(os.fsencode(exc.filename or b'?'))}: cannot read: "
                       f"{exc.strerror}; try again") from None


_RANK = {"ok": 0, "unreadable": 1, "missing": 2, "changed": 3}


def verify(settings, workers=None):
    """Check every digest of the sums file against the file it names.

    Files are hashed by scan.Scanner, one scanner per algorithm, which
    never follows a symlink a user could have planted.  A path listed
    more than once (two algorithms, or a stale line) is judged by its
    worst line.
    """
    source, legacy, notes = _source(settings)
    result = Result(source=source, legacy=legacy, notes=notes)
    if source is None:
        return result
    lines = parse(source)
    by_algorithm = {}
    for line in lines:
        by_algorithm.setdefault(line.algorithm, set()).add(line.path)
    closed = _closed(settings, {line.path for line in lines})
    seen = {algorithm: _scan(settings, algorithm, paths - closed, workers)
            for algorithm, paths in by_algorithm.items()}
    status = {}
    for line in lines:
        # A closed path was not scanned: _absent finds it unreadable.
        verdict, reason = _judge(settings, line, seen[line.algorithm].get(line.path))
        old = status.get(line.path)
        if old is None or _RANK[verdict] > _RANK[old[0]]:
            status[line.path] = (verdict, reason)
    for path, (verdict, reason) in status.items():
        getattr(result, verdict).append(path)
        if reason:
            result.reasons[path] = reason
    return result


# --- the daily check ------------------------------------------------------------

STATE_FORMAT = 1
# A path's verdict in the state: what it was at the last run.
_VERDICTS = (b"changed", b"missing")


def state_path(settings):
    return os.path.join(settings.state_dir, b"localsums.state")


def run(settings, spool_group=None, now=None, workers=None):
    """The daily check: ``verify``, then queue what is new since the last
    run (a file changed or missing, or fixed) and leave the standing
    findings for the report.  Returns the verify Result."""
    with runner.Run(settings, state_path(settings), STATE_FORMAT, command="systraq localsums",
                    lock_wait=LOCK_WAIT, spool_group=spool_group, now=now) as transaction:
        result = verify(settings, workers)
        _header, old = transaction.load()
        old = old or {}
        current = {path: b"changed" for path in result.changed}
        current.update({path: b"missing" for path in result.missing})
        found = [records.make("localsums", current[path].decode(), escape(path),
                              reason=result.reasons.get(path))
                 for path in sorted(current)]
        queued = [finding for finding in found
                  if old.get(pathcodec_unescape(finding.path)) != current[
                      pathcodec_unescape(finding.path)]]
        queued += [records.make("localsums", "fixed", escape(path))
                   for path in sorted(old) if path not in current]
        if transaction.damaged is not None:
            queued.insert(0, records.make("localsums", "state damaged",
                                          detail=transaction.damaged, count=len(current)))
        if queued or current != old:
            transaction.commit({"time": transaction.stamp}, current,
                               transaction.stamped(queued), source="localsums", mode=0o640)
        else:
            transaction.touch()
        notes = ([f"local sums: {len(result.ok)} files match systraq.sums"]
                 if result.source is not None else [])
        standing.save(settings, "localsums", found, time=transaction.now, notes=notes,
                      group=spool_group)
    return result


# --- recording ---------------------------------------------------------------

# What --update writes: sha256, as sha256sum does.
UPDATE_ALGORITHM = "sha256"
# How long --update waits for another --update to finish.
LOCK_WAIT = 10.0


class Refused(UsageError):
    """Paths given to ``--update`` that cannot be recorded; nothing was written."""

    def __init__(self, problems):
        self.problems = list(problems)   # (path as given, message)
        super().__init__("; ".join(self.lines()))

    def lines(self):
        return ([f"{escape(path)}: {message}" for path, message in self.problems]
                + ["nothing was recorded"])


@dataclass
class Update:
    """What ``update`` did.  Paths are logical bytes, in the order given."""

    path: bytes                     # host path of the sums file written
    added: list = field(default_factory=list)
    replaced: list = field(default_factory=list)    # an older digest was there
    unchanged: list = field(default_factory=list)   # the same digest was there
    converted_from: bytes | None = None   # the legacy file its lines came from
    written: bool = False
    notes: list = field(default_factory=list)


def format_line(digest, path):
    """The line ``sha256sum`` (coreutils 9) writes for ``path``.

    A name with a backslash, newline or carriage return is escaped and
    the line starts with a backslash.  coreutils 8 did not escape "\\r";
    its md5sum -c reads such a line as malformed, which only a name with
    a carriage return can meet.
    """
    if any(special in path for special in (b"\\", b"\n", b"\r")):
        name = path.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
        return b"\\" + digest.encode("ascii") + b"  " + name + b"\n"
    return digest.encode("ascii") + b"  " + path + b"\n"


def _wanted(paths):
    """The admin's paths as logical bytes, each once; Refused if any is
    not a plain absolute path."""
    wanted, problems = [], []
    for given in paths:
        given = os.fsencode(given)
        path, problem = check_path(given)
        if problem:
            if problem.startswith("not an absolute path"):
                problem = "not an absolute path: give the full path (systraq reads " \
                          "the files below its root, not below the current directory)"
            problems.append((given, problem))
        elif path not in wanted:
            wanted.append(path)
    if problems:
        raise Refused(problems)
    if not wanted:
        raise UsageError("--update needs at least one path")
    return wanted


def _refusal(settings, path, entry, closed):
    """Why ``path`` may not be recorded (None: it may)."""
    if path in closed:
        return "cannot be read: permission denied on a directory on the way"
    if entry is None:
        return "no such file"
    if entry.kind == "l":
        return f"a symbolic link (to {escape(entry.target)}); record the file it points to"
    if entry.kind == "d":
        return "a directory; name the files in it"
    if entry.kind != "f":
        return f"{_KIND_NAMES.get(entry.kind, 'of an unknown type')}, not a regular file"
    if entry.note == "not readable":
        return "cannot be read: permission denied"
    if entry.digest is None:
        return "kept changing while it was read; try again"
    # The sums file is read by the systraq user, and DESIGN.md keeps any
    # digest of a secret away from it: a digest lets anyone confirm a
    # guess of the content.  Such files belong in snapshot_root.list,
    # whose digests only root can read.
    if not entry.perm & stat.S_IROTH:
        return (f"not world-readable (mode {entry.perm:04o}): its digest would be "
                "readable by the systraq user; list it in snapshot_root.list instead")
    closed_by = _closed_directory(settings, path)
    if closed_by:
        return (f"{escape(closed_by)} is closed to others: the systraq user could "
                "not check it; list it in snapshot_root.list instead")
    return None


def _closed_directory(settings, path):
    """The first directory above ``path`` that others may not search, if any.

    A world-readable file in /root is as private as /root.  lstat only;
    a symlinked directory on the way is not looked through (the scanner
    followed it only because root placed it).
    """
    parent = path.rpartition(b"/")[0]
    components = [c for c in parent.split(b"/") if c]
    for end in range(1, len(components) + 1):
        directory = b"/" + b"/".join(components[:end])
        try:
            info = os.lstat(settings.host(directory))
        except OSError:
            return None
        if stat.S_ISDIR(info.st_mode) and not info.st_mode & stat.S_IXOTH:
            return directory
    return None


def update(settings, paths, workers=None):
    """Record the sha256 of each of ``paths`` (logical, absolute; bytes or
    str) in systraq.sums.

    Each path must be a regular, world-readable file: otherwise Refused
    names every path that is not, and nothing is written.  A line already
    there for a path is replaced where it stands (other lines for it are
    dropped); new paths are appended; every other line, comment and blank
    line stays byte for byte.  When only the old systraq.md5sums exists,
    its lines are the start of the new systraq.sums and it is left as it
    was.
    """
    wanted = _wanted(paths)
    target = sums_path(settings)
    if not os.path.isdir(settings.state_dir):
        raise RunError(f"{escape(settings.state_dir)}: no such directory "
                       "(is systraq installed?)")
    with held(os.path.join(settings.state_dir, b"systraq.sums.lock"), LOCK_WAIT,
              "'systraq localsums --update'"):
        return _locked_update(settings, wanted, target, workers)


def _locked_update(settings, wanted, target, workers):
    source, legacy, _notes = _source(settings)
    found = read_lines(source) if source is not None else None
    raw_lines, lines = found if found is not None else ([], [])

    closed = _closed(settings, wanted)
    seen = _scan(settings, UPDATE_ALGORITHM, set(wanted) - closed, workers)
    problems = []
    for path in wanted:
        problem = _refusal(settings, path, seen.get(path), closed)
        if problem:
            problems.append((path, problem))
    if problems:
        raise Refused(problems)

    result = Update(path=target, converted_from=source if legacy else None)
    digests = {path: seen[path].digest for path in wanted}
    kept = {}   # path -> the line it had, (digest, algorithm)
    by_index = dict(lines)
    out = []
    for index, raw in enumerate(raw_lines):
        line = by_index.get(index)
        if line is None or line.path not in digests:
            out.append(raw)
            continue
        if line.path in kept:
            continue   # a second line for a path just recorded: stale
        kept[line.path] = (line.digest, line.algorithm)
        out.append(format_line(digests[line.path], line.path))
    for path in wanted:
        if path not in kept:
            if out and not out[-1].endswith(b"\n"):
                out[-1] += b"\n"   # a last line the admin left open
            out.append(format_line(digests[path], path))
            result.added.append(path)
        elif kept[path] == (digests[path], UPDATE_ALGORITHM) \
                and sum(line.path == path for _i, line in lines) == 1:
            result.unchanged.append(path)
        else:
            result.replaced.append(path)
    data = b"".join(out)
    if legacy or data != b"".join(raw_lines):
        _write(settings, target, source, data)
        result.written = True
    if legacy:
        result.notes.append(f"{escape(target)} written from the lines of the old "
                            f"{escape(source)}, which was left as it was and is no "
                            "longer read; remove it when you no longer need it")
    return result


def _write(settings, target, source, data):
    """Write the sums file; who may read it.

    The systraq user must read it, and every digest --update adds is of
    a world-readable file, which anyone could compute: so 0644, as the
    old package's file was (its manual had the admin list it in
    snapshot_pub.list, the world-readable files).  An admin who narrowed
    the file to 0640 keeps that, and the group is kept (or the state
    directory's taken) so that the systraq user keeps reading it.  The
    umask is set aside while writing, so that an admin's umask 077 does
    not leave a root-owned 0600 file the systraq user cannot read.
    """
    existing = os.stat(source if source is not None else settings.state_dir)
    mode = 0o644 if source is None or existing.st_mode & stat.S_IROTH else 0o640
    group = existing.st_gid if os.geteuid() == 0 else None
    umask = os.umask(0o022)
    try:
        atomic_write(target, data, mode=mode, group=group)
    except OSError as exc:
        raise RunError(f"{escape(target)}: cannot write: {exc.strerror}") from None
    finally:
        os.umask(umask)
