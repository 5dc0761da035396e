# SPDX-License-Identifier: GPL-2.0-or-later
"""The old package's ``.stat`` files: what they recorded, and what changed since.

systraq 20201231-1 ran ``st_snapshot`` (a shell script) every hour and
kept its output in ``snapshot_pub.stat`` (as debian-systraq) and
``snapshot_root.stat`` (as root).  On an upgrade those files are the last
look the old package took.  The first snapshot of a mode (no state yet)
hands its scan to this module, which compares it with the old file, so
that what changed between the old package's last run and the upgrade is
reported rather than silently taken into the new baseline.

This module owns reading that format and that one comparison.  The file
holds, in this order:

- in pub mode, ``# ownership and permissions of homedirs`` and one
  ``PERMS USER GROUP HOME`` line per home directory, from ``ls -ld``;
- ``# remainder of file built from LIST and HOMELIST``;
- when ST_SUM was set, ``# sha256sum of critical files`` (or md5sum, or
  whatever ST_SUM named) and that tool's own output, ``DIGEST  PATH``,
  with a leading backslash when the name holds a backslash or newline;
- ``# ownership and permissions of critical files`` and one
  ``PERMS USER GROUP PATH`` line per regular file, from ``find -ls``.

The last section went through ``while read ... f; do echo $p $u $g $f``
in dash: find's escapes were undone by ``read``, runs of blanks squeezed
by the unquoted ``$f``, and backslash sequences interpreted by ``echo``
(one name may print a newline, or ``\\c`` stop the output so that the
next file's line follows on the same line).  Rather than guess back, the
names seen now and the exact names of the digest section are put through
the same steps (``mangle``) and matched with what the file says.  A line
that matches nothing, or more than one name, is skipped and counted,
never guessed at.  The result is conservative: no record unless the old
file says so plainly.
"""

import errno
import os
import re
import stat
from collections import Counter, namedtuple

from systraq import scan
from systraq.fsutil import NotRegular, read_untrusted
from systraq.pathcodec import escape
from systraq.spool import stamp as record_stamp

HOMES = b"# ownership and permissions of homedirs"
REMAINDER = b"# remainder of file built from "
PERMISSIONS = b"# ownership and permissions of critical files"
_SUMS = re.compile(rb"# (.+) of critical files")

# ST_SUM's tool: hashlib's name and the length of its hex digest.
TOOLS = {b"md5sum": ("md5", 32), b"sha1sum": ("sha1", 40), b"sha224sum": ("sha224", 56),
         b"sha256sum": ("sha256", 64), b"sha384sum": ("sha384", 96),
         b"sha512sum": ("sha512", 128), b"b2sum": ("blake2b", 128)}

# ls -l's permission string; GNU ls adds '+' (ACL) or '.' (SELinux).
_PERMS = re.compile(rb"([-dlpscbD?])([r-][w-][xsS-][r-][w-][xsS-][r-][w-][xtT-])[.+]?")
# A name that no step of the old script changes: printable ASCII, no
# blank, no backslash, no glob character.
_SAFE = re.compile(rb"[\x21-\x29\x2b-\x3e\x40-\x5a\x5d-\x7e]+")

# What one old line says of a path: kind letter, permission bits, owner
# and group names as printed (a number when the id had no name).
Listed = namedtuple("Listed", "kind perm user group")


class OldStat:
    """One parsed old ``.stat`` file.

    ``homes``: raw lines of the home directory section (None when there is
    no such section); ``lines``: raw lines of the ownership section;
    ``tail``: an unterminated last line (the file was cut short, or a
    ``\\c`` swallowed the newline); ``digests``: {path: hex} from the digest
    section, exact names; ``tool``: ST_SUM as named in its header (bytes)
    and ``algorithm`` its hashlib name, None when unknown; ``built_from``:
    the list files the header names; ``skipped``: lines not understood,
    by reason.
    """

    def __init__(self, mtime):
        self.mtime = mtime
        self.homes = None
        self.lines = []
        self.tail = None
        self.digests = {}
        self.tool = None
        self.algorithm = None
        self.built_from = None
        self.sections = set()
        self.skipped = Counter()


def is_old_format(data):
    """Whether ``data`` (the first bytes of a file) is st_snapshot's output."""
    return data.startswith(HOMES + b"\n") or data.startswith(REMAINDER)


def _open(path):
    """The bytes of the regular file ``path``, None when there is none."""
    try:
        data, info = read_untrusted(path)
    except NotRegular:
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EACCES):
            # Not there, a symlink, or not ours to read (the old package
            # wrote it as the user who reads it now): nothing to compare.
            return None
        raise
    return info, data


def is_old_file(path):
    """Whether the file at ``path`` is an old ``.stat`` (only its start is read)."""
    try:
        return is_old_format(read_untrusted(path, limit=128)[0])
    except OSError:
        return False


def load(path):
    """The OldStat of the file ``path``; None when absent or not in the old format."""
    found = _open(path)
    if found is None or not is_old_format(found[1]):
        return None
    info, data = found
    return parse(data, info.st_mtime)


def _slashes(path):
    # A home given as "/home/bob/" made the script print "/home/bob//.bashrc".
    return re.sub(rb"//+", b"/", path)


def _plausible(path):
    """Whether ``path`` can be a name find printed for a file it found
    from absolute start points."""
    return (path.startswith(b"/") and not path.endswith(b"/")
            and not any(part in (b".", b"..") for part in path.split(b"/")))


def parse(data, mtime=0.0):
    """An OldStat from the bytes of an old ``.stat`` file; never raises on bad input."""
    old = OldStat(mtime)
    lines = data.split(b"\n")
    if lines[-1]:
        old.tail = lines[-1]
    lines.pop()
    section = None
    for line in lines:
        if line == HOMES and section is None:
            section = "homes"
            old.homes = []
        elif line.startswith(REMAINDER) and section in (None, "homes"):
            section = "remainder"
            old.built_from = line[len(REMAINDER):]
        elif line == PERMISSIONS and section in ("remainder", "sums"):
            section = "permissions"
        elif section == "remainder" and _SUMS.fullmatch(line):
            section = "sums"
            old.tool = _SUMS.fullmatch(line).group(1)
            words = old.tool.split()
            known = TOOLS.get(os.path.basename(words[0])) if len(words) == 1 else None
            old.algorithm = known[0] if known else None
        elif section == "homes":
            old.homes.append(line)
        elif section == "sums":
            _digest_line(old, line)
        elif section == "permissions":
            old.lines.append(line)
        else:
            old.skipped["outside any section"] += 1
            continue
        old.sections.add(section)
    if old.tail is not None and section != "permissions":
        old.skipped["cut short"] += 1
        old.tail = None
        old.sections.discard("permissions")
    return old


_SUM_LINE = re.compile(rb"([0-9a-fA-F]+) [ *](.+)", re.S)


def _digest_line(old, line):
    escaped = line.startswith(b"\\")
    match = _SUM_LINE.fullmatch(line[1:] if escaped else line)
    known = TOOLS.get(os.path.basename(old.tool)) if old.algorithm else None
    if not match or (known and len(match.group(1)) != known[1]):
        old.skipped["malformed digest line"] += 1
        return
    name = match.group(2)
    if escaped:
        # sha256sum's escapes (coreutils >= 9.0 also escapes CR).
        parts = re.split(rb"(\\.)", name)
        if any(p.startswith(b"\\") and p not in (b"\\\\", b"\\n", b"\\r") for p in parts) \
                or name.endswith(b"\\") and not name.endswith(b"\\\\"):
            old.skipped["malformed digest line"] += 1
            return
        name = b"".join({b"\\\\": b"\\", b"\\n": b"\n", b"\\r": b"\r"}.get(p, p) for p in parts)
    name = _slashes(name)
    if not _plausible(name):
        # find with no existing start point searched the working directory.
        old.skipped["not an absolute path"] += 1
        return
    digest = match.group(1).lower().decode("ascii")
    if old.digests.get(name, digest) != digest:
        old.skipped["listed twice"] += 1
        old.digests[name] = None
        return
    old.digests[name] = digest


def _permission_bits(text):
    bits = 0
    for index, char in enumerate(text):
        shift = 6 - 3 * (index // 3)
        where = index % 3
        if where == 0 and char == ord("r"):
            bits |= 4 << shift
        elif where == 1 and char == ord("w"):
            bits |= 2 << shift
        elif where == 2:
            special = (stat.S_ISUID, stat.S_ISGID, stat.S_ISVTX)[index // 3]
            if char in b"xst":
                bits |= 1 << shift
            if char in b"sStT":
                bits |= special
    return bits


def split_line(line):
    """``(Listed, name)`` of an ownership line; None when it is not one."""
    parts = line.split(b" ", 3)
    if len(parts) != 4 or not parts[3]:
        return None
    match = _PERMS.fullmatch(parts[0])
    if not match or not parts[1] or not parts[2]:
        return None
    kind = "f" if match.group(1) == b"-" else match.group(1).decode()
    listed = Listed(kind, _permission_bits(match.group(2)),
                    parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace"))
    return listed, parts[3]


# --- the old script's mangling of names ----------------------------------------

_FIND_NAMED = {0x5C: b"\\\\", 0x0A: b"\\n", 0x08: b"\\b", 0x0D: b"\\r", 0x09: b"\\t",
               0x0C: b"\\f", 0x20: b"\\ ", 0x22: b'\\"'}


def _find_ls(name):
    """GNU find's -ls quoting of a name (findutils 4.x, any locale)."""
    out = bytearray()
    for byte in name:
        if byte in _FIND_NAMED:
            out += _FIND_NAMED[byte]
        elif 0x20 < byte < 0x7F:
            out.append(byte)
        else:
            out += b"\\%03o" % byte
    return bytes(out)


def _read(data):
    """What ``read`` (no -r) leaves of the last field: each backslash
    escapes the next byte, blanks at both ends go."""
    return re.sub(rb"\\(.)", rb"\1", data, flags=re.S).strip(b" \t")


_ECHO = {ord("\\"): b"\\", ord("a"): b"\a", ord("b"): b"\b", ord("e"): b"\x1b",
         ord("f"): b"\f", ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("v"): b"\v"}


def _dash_echo(data):
    """What dash's echo prints for ``data``: ``(bytes, stopped)``, stopped
    when a ``\\c`` ended the output (and its newline)."""
    out = bytearray()
    index = 0
    while index < len(data):
        byte = data[index]
        index += 1
        if byte != 0x5C or index >= len(data):
            out.append(byte)
            continue
        code = data[index]
        if code == ord("c"):
            return bytes(out), True
        if code in _ECHO:
            out += _ECHO[code]
            index += 1
        elif code == ord("0") or ord("1") <= code <= ord("7"):
            # \0 and up to three octal digits; \1..\7 and up to two more.
            start = index + 1 if code == ord("0") else index
            end = start
            while end < len(data) and end < start + 3 and ord("0") <= data[end] <= ord("7"):
                end += 1
            out.append(int(data[start:end] or b"0", 8) & 0xFF)
            index = end
        else:
            out.append(0x5C)
    return bytes(out), False


def mangle(name, quoted=True):
    """What the old script printed for ``name``: a set of ``(text, stopped)``,
    one for /bin/sh being dash and one for an echo without escapes.

    ``quoted``: the name came from ``find -ls`` (the files), not from
    ``ls -ld`` (the home directories, printed raw).
    """
    data = _find_ls(name) if quoted else name
    words = b" ".join(w for w in re.split(rb"[ \t\n]+", _read(data)) if w)
    return {_dash_echo(words), (words, False)}


# --- matching the file with what is there now ----------------------------------

class _Names:
    """Which paths the text of an old line may stand for."""

    def __init__(self, candidates, quoted):
        self.plain = {}      # text -> {paths}
        self.stopped = []    # (text, path): a \c cut the line there
        self.multi = {}      # first line -> [(other lines, path)]
        self.known = candidates
        for path in candidates:
            if _SAFE.fullmatch(path):
                continue      # printed as it is: found by the text itself
            for text, stopped in mangle(path, quoted):
                if stopped:
                    self.stopped.append((text, path))
                elif b"\n" in text:
                    first, *rest = text.split(b"\n")
                    self.multi.setdefault(first, []).append((rest, path))
                else:
                    self.plain.setdefault(text, set()).add(path)
        self.stopped.sort(key=lambda pair: -len(pair[0]))

    def lookup(self, text):
        """The paths ``text`` may stand for: names it is the mangling of,
        and itself when it is a plain name.  A plain name known neither now
        nor from the digest section gives way to a known name it is the
        mangling of ("tabtx" of "tab<TAB>x")."""
        found = set(self.plain.get(text, ()))
        if _SAFE.fullmatch(text) and _plausible(text) and (text in self.known or not found):
            found.add(text)
        return found


class Resolved:
    """The old file's facts by path, after matching: ``files`` and
    ``homes`` ({path: Listed}), ``maybe`` (paths an ambiguous line might
    have meant), ``skipped`` (Counter by reason), ``complete`` (the
    ownership section is there and was not cut short)."""

    def __init__(self):
        self.files = {}
        self.homes = {}
        self.maybe = set()
        self.skipped = Counter()
        self.complete = False


_EMBEDDED = re.compile(rb"-[r-][w-][xsS-][r-][w-][xsS-][r-][w-][xtT-][.+]? \S+ \S+ /")


def _merged(text, known):
    """The next file's line inside ``text``, when a \\c in a name no longer
    there made echo print both on one line: only when it names a path known
    now or from the digest section, so that a name made to look like a line
    is not taken for one."""
    for match in _EMBEDDED.finditer(text, 1):
        split = split_line(text[match.start():])
        if split is not None and _slashes(split[1]) in known:
            return text[match.start():]
    return None


def _take(table, path, listed, resolved):
    if table.get(path, listed) != listed:
        # Two lines that disagree: neither is believed, and the path is
        # not called new either.
        resolved.skipped["listed twice"] += 1
        resolved.maybe.add(path)
        listed = None
    table[path] = listed


def resolve(old, candidates, homes):
    """Match the lines of ``old`` with ``candidates`` (logical paths of
    files known now, and of the digest section) and ``homes`` (home
    directories now); returns a Resolved."""
    resolved = Resolved()
    resolved.skipped.update(old.skipped)
    resolved.complete = "permissions" in old.sections
    known = set(candidates) | set(old.digests)
    names = _Names(known, quoted=True)
    lines = list(old.lines)
    if old.tail is not None:
        lines.append(old.tail)
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        last = old.tail is not None and index == len(lines)
        split = split_line(line)
        if split is None:
            resolved.skipped["cut short" if last else "not an ownership line"] += 1
            resolved.complete = resolved.complete and not last
            continue
        listed, text = split
        text = _slashes(text)
        # A \c in an earlier name: this line holds that name's start and
        # the next file's whole line.
        cut = None
        for start, path in names.stopped:
            if text.startswith(start) and split_line(text[len(start):]) is not None:
                cut = path, text[len(start):]
                break
        if cut is None and last:
            cut = next(((path, None) for start, path in names.stopped if text == start), None)
        if cut is not None:
            _take(resolved.files, cut[0], listed, resolved)
            if cut[1] is not None:
                lines.insert(index, cut[1])
            continue
        if last:
            resolved.skipped["cut short"] += 1
            resolved.complete = False
            continue
        # A name that echo printed over several lines.
        for rest, path in names.multi.get(text, ()):
            if lines[index:index + len(rest)] == rest:
                _take(resolved.files, path, listed, resolved)
                index += len(rest)
                break
        else:
            found = names.lookup(text)
            if not _take_found(found, resolved.files, listed, resolved) and not found:
                rest = _merged(text, known)
                if rest is not None:
                    lines.insert(index, rest)
    _resolve_homes(old, homes, resolved)
    resolved.files = {p: v for p, v in resolved.files.items() if v is not None}
    return resolved


def _resolve_homes(old, homes, resolved):
    if old.homes is None:
        return
    names = _Names(set(homes), quoted=False)
    for line in old.homes:
        split = split_line(line)
        if split is None:
            resolved.skipped["not an ownership line"] += 1
            continue
        listed, text = split
        if listed.kind == "l":
            text = text.split(b" -> ", 1)[0]
        if text == b"/":
            continue    # a system account's home; never a watched home now
        text = text.rstrip(b"/")
        _take_found(names.lookup(_slashes(text)), resolved.homes, listed, resolved)
    resolved.homes = {p: v for p, v in resolved.homes.items() if v is not None}


def _take_found(found, table, listed, resolved):
    """Take the line ``listed`` for the one path ``found`` names (True);
    with none or several, count why it was skipped (False)."""
    if len(found) == 1:
        _take(table, found.pop(), listed, resolved)
        return True
    resolved.skipped["name mangled by the old script" if not found
                     else "name matches several files"] += 1
    resolved.maybe.update(found)
    return False


# --- the comparison -----------------------------------------------------------

def _gone(settings, root_fd, path):
    """Whether ``path`` is really not there, as the scanner would see it: a
    directory on the way that is closed to us hides it (False), an
    untrusted symlink on the way is not followed (True)."""
    parent, _, name = path.rpartition(b"/")
    try:
        fd = scan.open_directory(root_fd, True, [c for c in parent.split(b"/") if c])
    except scan._Closed:
        return False
    except scan._Gone:
        return True
    try:
        os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError as exc:
        return exc.errno in (errno.ENOENT, errno.ENOTDIR)
    finally:
        os.close(fd)
    return False


def _same_owner(old_name, number, name_now):
    """An old name stands for the id it has now; a number for itself."""
    return old_name == name_now or (old_name.isdigit() and int(old_name) == number)


class Comparison:
    """Records of what changed since the old file, and counts for the
    baseline record: ``summary``."""

    def __init__(self, records, summary):
        self.records = records
        self.summary = summary


def compare(settings, old, new, mode, names, algorithm, lists_unchanged, homes,
            digest_if=None, workers=None):
    """Compare the parsed old file ``old`` with ``new`` ({path: record} of the
    first scan).

    ``algorithm``: the digest of ``new``; ``lists_unchanged``: whether the
    list files are those the old file was built from, unchanged since; only
    then can a file missing from the old file be called new.  ``homes``: the
    home directories watched now (pub).  ``digest_if`` and ``workers`` as
    for the Scanner that made ``new``.
    """
    # The record vocabulary is the snapshot's own; imported here because
    # the snapshot imports this module.
    from systraq.snapshot import gained_flags, _new_thing, _who

    resolved = resolve(old, new.keys(), homes)
    since = record_stamp(old.mtime)
    records = []
    compared = Counter()

    def record(path, change, **fields):
        records.append({"source": "snapshot", "mode": mode, "path": escape(path),
                        "change": change, "since": since, "old_stat": True, **fields})

    digests = _digests(settings, old, new, algorithm, digest_if, workers, compared)
    root_fd = os.open(settings.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        listed = dict.fromkeys(set(resolved.files) | set(old.digests))
        for path in sorted(listed):
            before = resolved.files.get(path)
            after = new.get(path)
            if after is None:
                if _gone(settings, root_fd, path):
                    record(path, "removed", kind="f")
                else:
                    compared["no longer watched"] += 1
                continue
            after = scan.decode(after)
            if after.kind != "f":
                record(path, "type", before="f", after=after.kind, mode=f"{after.perm:04o}",
                       **_who(names, after.uid, after.gid), **_new_thing(after))
                continue
            compared["files"] += 1
            old_digest = old.digests.get(path)
            new_digest = digests.get(path)
            if old_digest and new_digest and old_digest != new_digest:
                # No sizes: the old file did not keep them.
                record(path, "content")
            if before is not None:
                _attributes(record, path, before, after, names, gained_flags)
        if old.homes is not None:
            _compare_homes(record, settings, root_fd, resolved, new, homes, names,
                           gained_flags, _who, compared)
    finally:
        os.close(root_fd)

    new_files = lists_unchanged and resolved.complete
    if new_files:
        known = set(listed) | resolved.maybe | set(homes)
        for path in sorted(new):
            if path in known or not _SAFE.fullmatch(path) or new[path][:1] != b"f":
                continue
            after = scan.decode(new[path])
            record(path, "added", kind="f", mode=f"{after.perm:04o}",
                   **_who(names, after.uid, after.gid), **_new_thing(after))
    summary = {"compared": compared["files"], "skipped": sum(resolved.skipped.values()),
               "new_files": "compared" if new_files else "not compared"}
    if old.tool is not None:
        summary["digest"] = old.tool.decode("utf-8", "replace")
    return Comparison(records, summary)


def _digests(settings, old, new, algorithm, digest_if, workers, compared):
    """{path: hex digest now} in the old file's algorithm, for the paths it
    has a digest of.

    The same algorithm as the scan: its digests are used.  Another one
    hashlib knows (md5sum before 2008, or an admin's ST_SUM): those files
    are read once more with it, by the scanner and under the same rule
    on what may be hashed, so a change made before the upgrade is still
    seen; reading them again costs one pass over the old file's list, once.
    Anything else (an unknown ST_SUM): no content is compared, which is
    counted, rather than every file shown as changed.
    """
    wanted = [p for p in old.digests if old.digests[p] and new.get(p, b"")[:1] == b"f"]
    if old.algorithm == algorithm:
        return {p: scan.decode(new[p]).digest for p in wanted}
    if old.algorithm not in scan.DIGESTS:
        compared["digests not comparable"] += len(wanted)
        return {}
    scanner = scan.Scanner(settings, old.algorithm, digest_if=digest_if, workers=workers)
    again = scanner.records(wanted)
    return {p: scan.decode(r).digest for p, r in again.items() if r[:1] == b"f"}


def _attributes(record, path, before, after, names, flags):
    if before.perm != after.perm:
        record(path, "mode", before=f"{before.perm:04o}", after=f"{after.perm:04o}",
               flags=flags(before.perm, after.perm, after.kind))
    user = names.user(after.uid)
    if not _same_owner(before.user, after.uid, user):
        record(path, "owner", before=before.user, after=user)
    group = names.group(after.gid)
    if not _same_owner(before.group, after.gid, group):
        record(path, "group", before=before.group, after=group)


def _compare_homes(record, settings, root_fd, resolved, new, homes, names, flags, who,
                   compared):
    # systraq's own home: the package's postinst sets its owner and mode
    # at the upgrade (0750, where adduser left 0755), which is not news.
    own = settings.logical(settings.state_dir)
    for path in sorted(resolved.homes):
        if path == own:
            continue
        before = resolved.homes[path]
        after = new.get(path)
        if after is None:
            if _gone(settings, root_fd, path):
                record(path, "removed", kind=before.kind)
            continue
        after = scan.decode(after)
        if before.kind != after.kind:
            record(path, "type", before=before.kind, after=after.kind, mode=f"{after.perm:04o}",
                   **who(names, after.uid, after.gid))
        elif after.kind == "d":
            compared["homes"] += 1
            _attributes(record, path, before, after, names, flags)
    for path in sorted(homes):
        if path in resolved.homes or path in resolved.maybe or not _SAFE.fullmatch(path):
            continue
        after = new.get(path)
        if after is None or after[:1] != b"d":
            continue
        after = scan.decode(after)
        # A home the old run listed no line for: an account added since
        # (the script looked at every home directory of passwd).
        record(path, "added", kind="d", mode=f"{after.perm:04o}",
               **who(names, after.uid, after.gid), flags=flags(0, after.perm, "d"))


def lists_unchanged(old, list_files):
    """Whether the old file was built from ``list_files`` ([(logical, host)]
    of the mode's list and home list) and they were not modified after it."""
    logical = [name for name, _host in list_files]
    if old.built_from != b" and ".join(logical):
        return False
    for _name, host in list_files:
        try:
            if os.stat(host).st_mtime > old.mtime:
                return False
        except OSError:
            return False
    return True
