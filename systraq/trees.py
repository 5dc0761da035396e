# SPDX-License-Identifier: GPL-2.0-or-later
"""The system's trees walked every hour by metadata (``[check] trees``).

The root half of the hourly check looks at every file, link and
directory below /usr, the top-level program and library directories,
/boot, /opt and /srv, and records what appeared, vanished or changed
there since its last run: a new or removed entry, a type, symlink
target, mode, owner or group changed, content changed (size or
modification time), a file replaced by another (a new inode), and a
file whose inode change time alone moved (rewritten with its times set
back, an extended attribute such as a file capability set, a chmod to
the same mode).  What a package operation made is the operation's
(attribution.Judge); what Debian's tools generate there (``[audit]
generated``: byte code, caches triggers rebuild) is left out.  The
daily jobs say more of the same files: ``systraq packages`` whether a
package file still matches dpkg's sums, ``systraq audit`` whether a
package ships a new file at all.  The walk opens no file: only a package
file whose content may have changed, and that no package operation
explains, is read, to say whether it still matches dpkg's sums.

Why this walk is not the snapshot's Scanner: it has to cost little
enough to run every hour over about 145,000 entries.  The inode change
time (ctime) of an entry moves with every change of its content, mode,
owner, link count or extended attributes, and no program can set it
back (only the system clock can); a directory's moves whenever an entry
is added to it, removed or renamed.  So:

- a directory whose own metadata did not move holds the names it held:
  it is not listed again, each name is looked at with one fstatat;
- an entry whose ctime and inode number did not move is unchanged: only
  those two numbers are compared, a whole directory's at once;
- everything else is told from the full metadata the last run kept.

The state (``/var/lib/systraq/root/trees.state``, root's) holds one
record per directory: its own metadata, then its entries' names, the
ctime and inode of each, their full metadata and the targets of its
symbolic links.  ``bench/aide`` measures the walk beside AIDE.
"""

import errno
import fnmatch
import os
import stat
import struct

from systraq import accounts, records, runner, scan
from systraq.fsutil import mode_directory
from systraq.pathcodec import escape, unescape
from systraq.settings import NEVER_WALK
from systraq.snapshot import gained_flags

STATE_FORMAT = 1
# One directory's record after its own metadata: how many entries, the
# lengths of the NUL-separated names and of the NUL-separated targets of
# its symlinks (in entry order).
_HEAD = struct.Struct("<III")
# What tells an entry unchanged: its inode change time and inode number.
_KEY = struct.Struct("<qQ")
_FIXED = scan._FIXED
_FIXED_SIZE = _FIXED.size
# An entry's metadata as the snapshot's records begin: kind, permissions,
# owner, group, size, times, device and inode.
_fixed = scan._fixed
_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)


class Result:
    def __init__(self, records_, count, baseline):
        self.records = records_
        self.count = count          # entries seen
        self.baseline = baseline


def state_path(settings):
    return os.path.join(settings.root_state_dir, b"trees.state")


class Entry:
    """One entry as a change needs it: its metadata (scan's fixed part,
    decoded) and a symlink's target."""

    __slots__ = ("kind", "perm", "uid", "gid", "size", "mtime", "ctime", "dev", "ino",
                 "target")

    def __init__(self, fixed, target=None):
        (kind, self.perm, self.uid, self.gid, self.size, self.mtime, self.ctime, self.dev,
         self.ino) = _FIXED.unpack(fixed)
        self.kind = kind.decode()
        self.target = target


def _head(value):
    """``(own fixed, names, keys)`` of a directory's record: what an
    unchanged directory needs, without copying the rest."""
    count, names_length, _targets_length = _HEAD.unpack_from(value, _FIXED_SIZE)
    at = _FIXED_SIZE + _HEAD.size
    names = value[at:at + names_length].split(b"\0") if count else []
    at += names_length
    return value[:_FIXED_SIZE], names, memoryview(value)[at:at + count * _KEY.size]


def _unpack(value):
    """``(own fixed, names, keys, fixeds, targets)`` of a directory's record."""
    own, names, keys = _head(value)
    count, names_length, targets_length = _HEAD.unpack_from(value, _FIXED_SIZE)
    at = _FIXED_SIZE + _HEAD.size + names_length + count * _KEY.size
    fixeds = value[at:at + count * _FIXED_SIZE]
    at += count * _FIXED_SIZE
    targets = value[at:at + targets_length].split(b"\0") if targets_length else []
    return own, names, keys, fixeds, targets


def _pack(own, names, keys, fixeds, targets):
    names_blob = b"\0".join(names)
    targets_blob = b"\0".join(targets)
    return b"".join((own, _HEAD.pack(len(names), len(names_blob), len(targets_blob)),
                     names_blob, keys, fixeds, targets_blob))


# The state file keeps a record in at most 65,535 bytes (statefile.py);
# a larger directory's (/usr/bin's) is kept in pieces, the first under
# its path and the others under PATH NUL NUMBER (no path holds a NUL).
_PIECE = 65535


def _split(state):
    """``state`` ({directory: record}) as the state file keeps it."""
    out = {}
    for path, value in state.items():
        out[path] = value[:_PIECE]
        for number, start in enumerate(range(_PIECE, len(value), _PIECE), 1):
            out[path + b"\0" + str(number).encode()] = value[start:start + _PIECE]
    return out


def _join(kept):
    """The state a state file's records ``kept`` hold (``_split``'s inverse)."""
    state, pieces = {}, []
    for path, value in kept.items():
        if b"\0" in path:
            pieces.append(path)
        else:
            state[path] = value
    for key in sorted(pieces, key=lambda k: (k.split(b"\0")[0], int(k.split(b"\0")[1]))):
        path = key.split(b"\0")[0]
        if path not in state:
            raise ValueError(f"a piece without its record: {escape(path)}")
        state[path] += kept[key]
    return state


def _entries(names, fixeds, targets):
    """{name: Entry} of a directory's record."""
    found = {}
    links = iter(targets)
    for number, name in enumerate(names):
        fixed = fixeds[number * _FIXED_SIZE:(number + 1) * _FIXED_SIZE]
        found[name] = Entry(fixed, next(links, b"") if fixed[:1] == b"l" else None)
    return found


class _Walk:
    """One walk of the trees against the last run's state ``old``
    ({logical directory: record}); ``new`` is the state of this run and
    ``changes`` what differs: (path, before Entry or None, after Entry or
    None, entries below a directory that appeared or vanished)."""

    def __init__(self, settings, old, prune):
        self.settings = settings
        self.old = old
        self.prune = prune
        self.new = {}
        self.changes = []
        self.count = 0
        self.dirty = False          # the state differs from the last one
        self._mounts = None

    def top(self, root_fd, path):
        """Walk the tree at logical ``path``; a top that is not a directory
        (merged /usr's /bin link) is kept as the record of what it is."""
        parent, _, name = path.rpartition(b"/")
        try:
            parent_fd = scan.open_directory(root_fd, True, [c for c in parent.split(b"/") if c])
        except scan._Gone:
            parent_fd = None
        try:
            info = None
            if parent_fd is not None:
                try:
                    info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                except OSError as exc:
                    if exc.errno not in _GONE:
                        raise
            old = self.old.get(path)
            before = None
            if old is not None:
                target = old[_FIXED_SIZE:] if old[:1] == b"l" else None
                before = Entry(old[:_FIXED_SIZE], target)
            if info is None:
                if before is not None:
                    self.changes.append((path, before, None, _count_below(self.old, path)))
                return
            if stat.S_ISDIR(info.st_mode):
                after = Entry(_fixed(info))
                self._compare(path, before, after)
                self._enter(parent_fd, name, path, info, os.fstat(root_fd).st_dev)
                return
            target = os.readlink(name, dir_fd=parent_fd) if stat.S_ISLNK(info.st_mode) else None
            record = _fixed(info) + (target or b"")
            self.new[path] = record
            self.count += 1
            if old != record:
                self.dirty = True
                self._compare(path, before, Entry(record[:_FIXED_SIZE], target))
        finally:
            if parent_fd is not None:
                os.close(parent_fd)

    def _compare(self, path, before, after):
        if before is None or after is None or before.kind != after.kind \
                or (before.ctime, before.ino) != (after.ctime, after.ino):
            if after is not None and after.kind == "d" and (before is None
                                                            or before.kind != "d"):
                below = None        # counted when the walk is done
            else:
                vanished = before is not None and before.kind == "d" and (
                    after is None or after.kind != "d")
                below = _count_below(self.old, path) if vanished else 0
            self.changes.append((path, before, after, below))

    def _walked(self, path):
        """Whether the file system mounted at ``path`` is walked: not a
        network or pseudo file system (as the audit decides)."""
        from systraq import audit
        if self._mounts is None:
            self._mounts = audit.Mounts(self.settings)
        fstype = self._mounts.table.get(path)
        return fstype is None or audit.walked_type(fstype)

    def _enter(self, parent_fd, name, path, seen, parent_dev):
        """Walk directory ``name`` of ``parent_fd`` (on device
        ``parent_dev``; the root's for a top), which lstat showed as
        ``seen``; its record goes to ``new``."""
        if seen.st_dev != parent_dev and not self._walked(path):
            return              # an NFS /srv: its mount point stands alone
        try:
            fd = os.open(name, _OPEN, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno in _GONE:
                return          # replaced meanwhile: the next run sees what stands there
            if exc.errno in (errno.EACCES, errno.EPERM):
                return          # closed to this user (not root): its entry stands alone
            raise
        try:
            info = os.fstat(fd)
            if (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino):
                return
            self._directory(fd, path, _fixed(info), info.st_dev)
        finally:
            os.close(fd)

    def _directory(self, fd, path, own, dev):
        old = self.old.get(path)
        old_names = None
        if old is not None and old[:1] == b"d":
            old_own, old_names, old_keys = _head(old)
        stat_at = os.stat
        key = _KEY.pack
        base = path + b"/" if path != b"/" else b"/"
        prune = self.prune
        infos = None
        if old_names is not None and old_own == own:
            # The same names as at the last run: no listing.
            infos = []
            for name in old_names:
                try:
                    infos.append(stat_at(name, dir_fd=fd, follow_symlinks=False))
                except FileNotFoundError:
                    infos = None        # changed meanwhile: listed below
                    break
            if infos is not None:
                names = old_names
        if infos is None:
            names, infos = [], []
            with os.scandir(fd) as listing:
                for entry in listing:
                    name = os.fsencode(entry.name)
                    if base + name in prune:
                        continue
                    try:
                        infos.append(entry.stat(follow_symlinks=False))
                    except FileNotFoundError:
                        continue
                    names.append(name)
        keys = b"".join([key(info.st_ctime_ns, info.st_ino) for info in infos])
        self.count += len(names)
        if old_names is not None and old_own == own and keys == old_keys:
            # Nothing changed in this directory.
            self.new[path] = old
        else:
            self._changed(fd, path, own, names, infos, keys, old_names, old)
        for name, info in zip(names, infos):
            if info.st_mode & 0o170000 == stat.S_IFDIR:
                child = base + name
                if child not in prune:
                    self._enter(fd, name, child, info, dev)

    def _changed(self, fd, path, own, names, infos, keys, old_names, old):
        """Record what differs in a directory whose entries moved."""
        self.dirty = True
        base = path + b"/" if path != b"/" else b"/"
        before = {}
        if old_names is not None:
            _own, _names, _keys, old_fixeds, old_targets = _unpack(old)
            before = _entries(old_names, old_fixeds, old_targets)
        fixeds, targets = [], []
        for number, (name, info) in enumerate(zip(names, infos)):
            fixed = _fixed(info)
            fixeds.append(fixed)
            was = before.pop(name, None)
            target = None
            if fixed[:1] == b"l":
                if was is not None and was.kind == "l" and \
                        keys[number * _KEY.size:(number + 1) * _KEY.size] == \
                        _KEY.pack(was.ctime, was.ino):
                    target = was.target
                else:
                    try:
                        target = os.readlink(name, dir_fd=fd)
                    except OSError:
                        target = b""
                targets.append(target)
            self._compare(base + name, was, Entry(fixed, target))
        for name, was in before.items():
            child = base + name
            self.changes.append((child, was, None,
                                 _count_below(self.old, child) if was.kind == "d" else 0))
        self.new[path] = _pack(own, names, keys, b"".join(fixeds), targets)


def _describe(settings, changes, generated, new_state):
    """Change records for what the walk saw differ."""
    names = accounts.Names(settings)
    found = []

    def who(entry):
        return {"owner": names.user(entry.uid), "uid": entry.uid,
                "group": names.group(entry.gid), "gid": entry.gid}

    def record(path, change, **fields):
        found.append(records.make("trees", change, escape(path), **fields))

    for path, before, after, below in sorted(changes, key=lambda c: c[0]):
        if any(fnmatch.fnmatchcase(path, pattern) for pattern in generated):
            continue
        if before is None:
            fields = {"kind": after.kind, "mode": f"{after.perm:04o}", **who(after)}
            if after.kind == "l":
                fields["target"] = escape(after.target or b"")
            else:
                fields["flags"] = gained_flags(0, after.perm, after.kind)
            if after.kind == "d":
                fields["below"] = _count_below(new_state, path)
            record(path, "added", **fields)
            continue
        if after is None:
            record(path, "removed", kind=before.kind, below=below or None)
            continue
        if before.kind != after.kind:
            fields = {"before": before.kind, "after": after.kind, "mode": f"{after.perm:04o}",
                      **who(after)}
            if after.kind == "l":
                fields["target"] = escape(after.target or b"")
            if after.kind == "d":
                fields["below"] = _count_below(new_state, path)
            elif before.kind == "d":
                fields["below"] = below
            record(path, "type", **fields)
            continue
        told = False
        if after.kind == "l":
            if before.target != after.target:
                record(path, "target", before=escape(before.target or b""),
                       after=escape(after.target or b""))
                told = True
        elif after.kind == "f":
            if (before.size, before.mtime) != (after.size, after.mtime):
                sizes = ({"size_before": before.size, "size_after": after.size}
                         if _open_to_all(new_state, path, after.perm) else {})
                record(path, "content", **sizes)
                told = True
            elif before.ino != after.ino:
                record(path, "replaced")
                told = True
        if before.perm != after.perm and after.kind != "l":
            record(path, "mode", before=f"{before.perm:04o}", after=f"{after.perm:04o}",
                   flags=gained_flags(before.perm, after.perm, after.kind))
            told = True
        if before.uid != after.uid:
            record(path, "owner", before=names.user(before.uid), after=names.user(after.uid))
            told = True
        if before.gid != after.gid:
            record(path, "group", before=names.group(before.gid), after=names.group(after.gid))
            told = True
        if not told and after.kind == "f" and (before.ctime, before.ino) != (after.ctime,
                                                                              after.ino):
            # Content, mode and owner as they were, and yet the inode
            # changed: an attribute set, or content rewritten with its
            # times set back.  A directory's ctime moves with its entries,
            # which are told themselves.
            record(path, "rewritten")
    return found


def _open_to_all(state, path, perm):
    """Whether others may read ``path`` (permission bits ``perm``): it is
    readable by all, and every directory above it that ``state`` holds
    may be entered by all.  Only then are its sizes told."""
    if not perm & stat.S_IROTH:
        return False
    parent = os.path.dirname(path)
    while parent != path:
        value = state.get(parent)
        if value is not None and not _FIXED.unpack_from(value)[1] & stat.S_IXOTH:
            return False
        path, parent = parent, os.path.dirname(parent)
    return True


def _count_below(state, path):
    """How many entries directory ``path`` holds in ``state``, all levels."""
    value = state.get(path)
    if value is None or value[:1] != b"d":
        return 0
    _own, names, _keys = _head(value)
    return len(names) + sum(_count_below(state, path + b"/" + name) for name in names)


def _inside_new(changes, critical):
    """``changes`` without what lies below a directory that appeared or
    vanished (that directory's record counts them), except what
    ``critical`` (shell patterns) names: a kernel module in a new
    directory is alerted as one."""
    tops = sorted(path for path, before, after, _below in changes
                  if (after is not None and after.kind == "d"
                      and (before is None or before.kind != "d"))
                  or (before is not None and before.kind == "d"
                      and (after is None or after.kind != "d")))
    if not tops:
        return changes
    return [c for c in changes
            if not any(c[0].startswith(top + b"/") for top in tops)
            or any(fnmatch.fnmatchcase(c[0], pattern) for pattern in critical)]


# What may have changed a file's content.
_CONTENT = ("content", "replaced", "rewritten")


def _with_sums(settings, found):
    """``found`` with, for each package file whose content may have
    changed and that no package operation explains, what its content is
    now (``sums``): ``differ`` from dpkg's sums; ``match`` them and what
    the last package check read; ``moved``: it matches dpkg's sums but
    not what the last package check read (whoever can write the file can
    write the sums too: never a reassurance).  Only those files are read
    (md5, dpkg's digest), and dpkg's lists and the package check's state
    only in an hour that has one."""
    asked = {unescape(r.path): n for n, r in enumerate(found)
             if r.change in _CONTENT and r.explained is None and r.path}
    if not asked:
        return found
    from systraq import dpkgdb, packages, statefile
    try:
        database = dpkgdb.load(settings)
    except dpkgdb.DatabaseError:
        return found        # the package check's to report
    from systraq.audit import _MERGED
    merged = [top for top in _MERGED if os.path.islink(settings.host(top))]
    expected = {}
    for path in asked:
        # Merged /usr: dpkg may list /usr/bin/ls as /bin/ls.
        names = [path] + [path[4:] for top in merged if path.startswith(b"/usr" + top + b"/")]
        for name in names:
            for package in database.owners(name):
                digest = (database.sums(package) or {}).get(name)
                if digest:
                    expected[path] = (package.key, digest, names)
    if not expected:
        return found
    try:
        _header, checked = statefile.load(packages.state_path(settings), packages.STATE_FORMAT)
    except statefile.DamagedState:
        checked = None
    checked = checked or {}
    read = scan.Scanner(settings, "md5", workers=1).records(sorted(expected))
    found = list(found)
    for path, (package, digest, names) in expected.items():
        now = scan.plain_digest(read[path]) if path in read else None
        if now is None:
            continue
        last = next((scan.plain_digest(checked[n]) for n in names if n in checked), None)
        verdict = "differ" if now != digest else "match" if now == last else "moved"
        number = asked[path]
        found[number] = found[number].with_fields(package=package, sums=verdict)
    return found


def tops_of(settings, config):
    """The logical tops to walk: ``[check] trees`` without what is
    excluded or never walked."""
    tops = []
    exclude = tuple(config.exclude) + NEVER_WALK
    for top in config.get("check", "trees"):
        if top == b"/" or any(top == x or top.startswith(x + b"/") for x in exclude):
            continue
        if any(top.startswith(t + b"/") for t in tops):
            continue
        tops = [t for t in tops if not t.startswith(top + b"/")] + [top]
    return sorted(tops)


def run(settings, config, spool_group=None, now=None):
    """Walk ``[check] trees``, queue what changed since the last run,
    return a Result."""
    tops = tops_of(settings, config)
    mode_directory(settings, "root")
    prune = set(config.exclude) | set(NEVER_WALK)
    with runner.Run(settings, state_path(settings), STATE_FORMAT,
                    command="systraq check --mode root", spool_group=spool_group,
                    now=now) as transaction:
        header, old = transaction.load()
        if old is not None:
            try:
                old = _join(old)
            except ValueError as exc:
                transaction.damaged, old = str(exc), None
        scope = {"tops": [escape(t) for t in tops],
                 "exclude": sorted(escape(x) for x in config.exclude)}
        rescoped = old is not None and (header or {}).get("scope") != scope
        # Other trees or exclusions: every directory is listed afresh
        # (one left out before may be walked now).
        walk = _Walk(settings, {} if rescoped else old or {}, prune)
        root_fd = os.open(settings.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for top in tops:
                walk.top(root_fd, top)
        finally:
            os.close(root_fd)
        if old is None or rescoped:
            # A first run, a damaged state or other trees: recorded as
            # they are, with one note.
            if old is None and transaction.damaged:
                found = [records.make("trees", "state damaged", None, count=walk.count,
                                      detail=transaction.damaged)]
            elif old is None:
                found = [records.make("trees", "baseline", None, count=walk.count)]
            else:
                found = [records.make("trees", "scope", None, widened=walk.count)]
        else:
            if not walk.dirty and walk.new.keys() == old.keys():
                transaction.touch()
                return Result([], walk.count, False)
            critical = config.get("check", "critical")
            changes = _inside_new(walk.changes, critical)
            found = _describe(settings, changes, config.get("audit", "generated"), walk.new)
            judge = transaction.judge(critical)
            found = _with_sums(settings, [judge.judge(record)
                                          for record in transaction.stamped(found)])
        transaction.commit({"time": transaction.stamp, "scope": scope}, _split(walk.new),
                           transaction.stamped(found), source="trees", mode=0o600)
        return Result(found, walk.count, old is None)
