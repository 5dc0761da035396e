# SPDX-License-Identifier: GPL-2.0-or-later
"""Reading the file system safely: metadata and digests of a set of paths.

This module walks and hashes sets of paths; every file it reads is opened
by fsutil.open_untrusted, the one way systraq opens a file someone else
may control.  Because the root job reads places users control (home
directories, /tmp), it never trusts a name to stay what it was:

- The directory holding each file is reached one component at a time.
  A symbolic link on the way is followed only when it sits in a *trusted*
  directory: owned by root and writable by nobody else, so that only root
  could have put it there.  Anywhere else the path is reported as gone,
  never resolved: a user cannot point the root job at /etc/shadow.
- The file itself is looked at with lstat (a symlink is recorded as a
  symlink, with its target), and opened only if it is a regular file, with
  O_NOFOLLOW|O_NONBLOCK|O_NOCTTY; fstat must then show the same device and
  inode, or the file was swapped and is looked at again.  FIFOs, sockets
  and devices are recorded by type and never opened.
- A file that vanishes during the scan is simply absent from the result.

A file read only for its digest leaves the page cache as it found it:
the first read asks the kernel for cached data only (RWF_NOWAIT); when
the file's start was not cached, its pages are dropped once it is hashed
(POSIX_FADV_DONTNEED), so that a daily check of every package file does
not push the services' working set out of memory.  A file whose start
was cached belongs to someone's working set and is left cached.

The work is shared by worker processes (see parallel.py): each takes a
directory to walk or a group of names to look at, and hands back compact
records.  Digests are computed with a fixed buffer, so memory does not
grow with file size.

A scanned path is kept as a *record*: a short bytes string (85 bytes
with a sha256 digest) rather than an object with a dozen attributes.
Measured on 76,270 paths of /usr and /etc, the records of a run take
20 MB where Entry tuples took 44 MB; and two records are compared with
one bytes comparison, so an unchanged file costs a dictionary lookup.  ``decode`` turns a record into
an ``Entry`` where the fields are needed.
"""

import errno
import hashlib
import mmap
import os
import stat
import struct
import sys
from collections import namedtuple

from systraq import parallel
from systraq.fsutil import NotRegular, open_untrusted

DIGESTS = ("sha256", "sha512", "blake2b", "md5")

# One scanned path, decoded.  kind: f d l p s c b ?; perm: permission bits
# with setuid/setgid/sticky; target: symlink target (bytes); digest: hex or
# None; note: None, or why there is no digest ("not readable", "changing").
Entry = namedtuple("Entry", "kind perm uid gid size mtime_ns ctime_ns dev ino target digest note")

# A record: the fixed part below, then one byte for the note, one for the
# digest's length, the digest's raw bytes, and a symlink's target.
_FIXED = struct.Struct("<cHIIqqqQQ")  # kind perm uid gid size mtime ctime dev ino
_NOTE_AT = _FIXED.size
_DIGEST_LENGTH_AT = _NOTE_AT + 1
NOTES = (None, "not readable", "changing")
_NOT_READABLE = b"\x01"
_CHANGING = b"\x02"

_KIND = {stat.S_IFREG: b"f", stat.S_IFDIR: b"d", stat.S_IFLNK: b"l",
         stat.S_IFIFO: b"p", stat.S_IFSOCK: b"s", stat.S_IFCHR: b"c",
         stat.S_IFBLK: b"b"}

_OPEN_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A directory the walk lists: O_PATH descriptors cannot be read.
_OPEN_WALK = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
# Names handed to one worker at a time: big directories are shared out.
CHUNK = 512
# How often a worker reading a directory looks whether another one is
# idle and could take half of the files left: after this many bytes read
# (a file counting as _SHARE_COST bytes more), and when this many files
# are left.
_SHARE_BYTES = 4 << 20
_SHARE_COST = 16 << 10
_SHARE_MIN = 16
# Results a worker collects before handing them to the parent.
BATCH = 4096
# Named paths looked at in this process rather than by forked workers.
_INLINE = 64
# Files up to this size are read in one call and hashed from memory.
SMALL = 64 * 1024
# The read size of larger files (hashlib.file_digest's).
_CHUNK = 1 << 18
# Asks a read for what the page cache holds, never waiting for the disk
# (EAGAIN instead, once the kernel started reading ahead, so the blocking
# read that follows costs no more I/O).  0 where Python or the platform
# does not have it: then nothing is ever dropped.
_NOWAIT = getattr(os, "RWF_NOWAIT", 0) if hasattr(os, "preadv") else 0
# What a read says when RWF_NOWAIT is not supported: EOPNOTSUPP on a file
# system without it (NFS, FUSE, ...), EINVAL from a kernel before 4.14.
_NO_NOWAIT = (errno.EOPNOTSUPP, errno.EINVAL)


def _fixed(info):
    return _FIXED.pack(_KIND.get(stat.S_IFMT(info.st_mode), b"?"), stat.S_IMODE(info.st_mode),
                       info.st_uid, info.st_gid, info.st_size, info.st_mtime_ns,
                       info.st_ctime_ns, info.st_dev, info.st_ino)


def encode(info, target=None, digest=None, note=b"\x00"):
    """The record of a path whose lstat result is ``info``."""
    digest = digest or b""
    return b"".join((_fixed(info), note, bytes((len(digest),)), digest, target or b""))


def decode(record):
    """The Entry a record stands for."""
    kind, perm, uid, gid, size, mtime, ctime, dev, ino = _FIXED.unpack_from(record)
    note = NOTES[record[_NOTE_AT]]
    length = record[_NOTE_AT + 1]
    start = _NOTE_AT + 2
    digest = record[start:start + length].hex() if length else None
    kind = kind.decode()
    target = record[start + length:] if kind == "l" else None
    return Entry(kind, perm, uid, gid, size, mtime, ctime, dev, ino, target, digest, note)


def plain_digest(record):
    """The hex digest of a regular file's record with no note; None otherwise.

    Without building an Entry: a package check asks this of 100,000
    records.
    """
    if record[0] != 0x66 or record[_NOTE_AT] or not record[_DIGEST_LENGTH_AT]:   # b"f"
        return None
    return record[_NOTE_AT + 2:_NOTE_AT + 2 + record[_DIGEST_LENGTH_AT]].hex()


def from_entry(entry):
    """The record of an Entry: the inverse of ``decode``."""
    fixed = _FIXED.pack(entry.kind.encode(), entry.perm, entry.uid, entry.gid, entry.size,
                        entry.mtime_ns, entry.ctime_ns, entry.dev, entry.ino)
    digest = bytes.fromhex(entry.digest) if entry.digest else b""
    return b"".join((fixed, bytes((NOTES.index(entry.note),)), bytes((len(digest),)),
                     digest, entry.target or b""))


def without_digest(record):
    """The same record with its digest dropped (another algorithm's)."""
    length = record[_NOTE_AT + 1]
    start = _NOTE_AT + 2
    return record[:_NOTE_AT + 1] + b"\x00" + record[start + length:]


def is_unreadable(record):
    return record[_NOTE_AT:_NOTE_AT + 1] == _NOT_READABLE


def _trusted(info):
    """A directory only root can change the entries of."""
    return info.st_uid == 0 and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


class _Gone(Exception):
    """The directory is not there, or reaching it needs an untrusted symlink."""


class _Closed(_Gone):
    """The directory is there, but this user may not enter it."""


def _step(fd, name, trusted):
    """Open directory ``name`` in directory ``fd`` (O_PATH): a symlink is
    followed only when ``trusted`` (see the module docstring)."""
    try:
        return os.open(name, _OPEN_DIR, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise _Closed() from None
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or not trusted:
            raise _Gone() from None
    # A symlink that root placed: follow it.
    try:
        return os.open(name, _OPEN_DIR & ~os.O_NOFOLLOW, dir_fd=fd)
    except OSError:
        raise _Gone() from None


def open_directory(top_fd, top_trusted, components):
    """An O_PATH descriptor of the directory ``components`` below ``top_fd``."""
    fd = os.dup(top_fd)
    trusted = top_trusted
    try:
        for name in components:
            new = _step(fd, name, trusted)
            os.close(fd)
            fd = new
            trusted = trusted and _trusted(os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


class _Chain:
    """The directories from the root down to the last one opened, kept
    open: the next directory, usually a sibling or a child (groups come
    sorted), is reached from the deepest one they share.  With small
    directories grouped into one task, this took the scan of a package
    check (101,647 files) from 4.5 s to 4.0 s on two cores.  At most one
    descriptor per level is open."""

    def __init__(self, root_fd):
        self.root_fd = root_fd
        self.names = []
        self.fds = []
        self.trusted = []

    def open(self, components):
        """The descriptor of directory ``components``; the chain owns it."""
        common = 0
        limit = min(len(self.names), len(components))
        while common < limit and self.names[common] == components[common]:
            common += 1
        self._cut(common)
        for name in components[common:]:
            parent = self.fds[-1] if self.fds else self.root_fd
            trusted = self.trusted[-1] if self.trusted else True
            fd = _step(parent, name, trusted)
            self.names.append(name)
            self.fds.append(fd)
            self.trusted.append(trusted and _trusted(os.fstat(fd)))
        return self.fds[-1] if self.fds else self.root_fd

    def _cut(self, keep):
        for fd in self.fds[keep:]:
            os.close(fd)
        del self.names[keep:], self.fds[keep:], self.trusted[keep:]

    def close(self):
        self._cut(0)


class HeldDirectory:
    """A directory descriptor kept open while children of it wait on the
    walk's stack; closed when the last one was taken."""

    __slots__ = ("fd", "waiting")

    def __init__(self, fd, waiting):
        self.fd = fd
        self.waiting = waiting

    def release(self):
        self.waiting -= 1
        if not self.waiting:
            os.close(self.fd)


def _components(logical):
    return [c for c in logical.split(b"/") if c]


class Scanner:
    """Scan logical paths below ``settings.root``.

    ``algorithm``: one of DIGESTS.  ``digest_if``: a function of the lstat
    result saying whether this file may be hashed (pub mode hashes only
    world-readable files, so that no digest of a secret is kept where
    others can read it).  ``previous``: the records of the last run, as a
    dict path -> record; an unchanged path keeps its record object.  With
    ``quick``, a regular file whose device, inode, size, mtime, ctime,
    mode and owner are all unchanged keeps its previous digest without
    being read.  ``prune``: logical paths a walk neither lists nor enters.
    """

    def __init__(self, settings, algorithm="sha256", digest_if=None,
                 previous=None, quick=False, workers=None, prune=()):
        if algorithm not in DIGESTS:
            raise ValueError(f"unknown digest {algorithm!r}")
        self.settings = settings
        self.algorithm = algorithm
        # The constructor itself: hashlib.new() looks the name up at
        # every call.
        self._new = getattr(hashlib, algorithm)
        self.digest_if = digest_if    # None: every regular file
        self.previous = previous or {}
        self.quick = quick
        self.workers = parallel.default_workers() if workers is None else workers
        self.prune = frozenset(prune)
        self.unreadable = 0
        self.hashed = 0
        self._root_fd = None
        # The read buffer, made at the first file read (in each worker).
        self._view = None
        # Devices whose file system refused RWF_NOWAIT: not asked again.
        self._no_nowait = set()

    # --- in the parent ---------------------------------------------------

    def records(self, paths=(), walk=()):
        """A dict logical path -> record for the paths that exist.

        ``paths`` are looked at themselves; directories in ``walk`` are
        looked at with everything below them, except what ``prune`` names.
        Afterwards ``changed`` holds the paths whose record is new or
        differs from ``previous``, and ``removed`` the paths of
        ``previous`` not seen.  When nothing changed, the result is
        ``previous`` itself.  ``previous`` may be given as a function
        returning it (or None), called when the scan starts.

        Workers send back only what differs.  What they saw unchanged
        they tick in a map shared with this process (one byte per path
        of ``previous``), so that an unchanged path costs no copying
        through a pipe: at 76,270 paths, receiving every record cost the
        parent 0.12 s of a 0.45 s quick run.
        """
        walk = set(walk)
        named = [path for path in paths if path not in walk]
        changed = {}
        gone = set()
        counts = [0, 0]

        def take(batch):
            pairs, hashed, unreadable, absent = batch
            counts[0] += hashed
            counts[1] += unreadable
            changed.update(pairs)
            gone.update(absent)

        self._root_fd = os.open(self.settings.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._load_previous(bool(walk))
            workers = self.workers
            tasks = [("walk", path) for path in sorted(walk, reverse=True)]
            tasks += self._name_tasks(named, CHUNK)
            previous = self.previous
            parallel.run(self._handle, tasks, take, workers)
            if b"/" in paths and b"/" not in walk:
                out = _Out(self, _Collect(take))
                out.add(b"/", encode(os.fstat(self._root_fd)))
                out.flush()
            del tasks
            seen = self._seen
            removed = []
            if seen is None:
                if previous:
                    asked = set(paths)
                    removed = [path for path in previous if path in gone or path not in asked]
                    del asked
            elif previous and seen.find(b"\0", 0, len(previous)) >= 0:
                removed = [path for path, position in self._index.items()
                           if not seen[position]]
        finally:
            os.close(self._root_fd)
            self._root_fd = None
            if self._seen is not None:
                self._seen.close()
            self._seen = self._index = None
        self.hashed, self.unreadable = counts
        self.changed = sorted(changed)
        self.removed = removed
        if not changed and not removed:
            return previous
        result = dict(previous)
        for path in removed:
            del result[path]
        result.update(changed)
        return result

    def _load_previous(self, walking):
        """Make ``previous`` a dict (calling the function given for it),
        with what the workers need to tell what they saw."""
        if callable(self.previous):
            self.previous = self.previous() or {}
        previous = self.previous
        if walking:
            # What a walk finds is known only on the way: the workers tick
            # each previous path they see unchanged in a shared map, at
            # its position in the dict's own order.
            self._index = dict(zip(previous, range(len(previous))))
            # Anonymous and shared: forked workers write into this very map.
            self._seen = mmap.mmap(-1, max(1, len(previous)))
        else:
            # Only named paths: a previous path is gone when it was not
            # asked for, or a worker says it is not there (rare), and no
            # position map is needed.  That map cost 20 MB at 300,000
            # package files, in the parent and in every worker.
            self._index = self._seen = None

    @staticmethod
    def _name_tasks(paths, chunk):
        """Tasks for named ``paths``: names in groups of about ``chunk``,
        small directories together, in order so that a task's directories
        are neighbours."""
        groups = {}
        for path in paths:
            parent, _, name = path.rpartition(b"/")
            if name:
                # The caller's path objects only: the worker cuts each name
                # from its path.  A (name, path) tuple each cost 100 bytes
                # more a path, 30 MB at 300,000 package files.
                groups.setdefault(parent, []).append(path)
        tasks = []
        task, size = [], 0
        for parent in sorted(groups):
            names = groups[parent]
            for start in range(0, len(names), chunk):
                part = names[start:start + chunk]
                task.append((parent, part))
                size += len(part)
                if size >= chunk:
                    tasks.append(("names", task))
                    task, size = [], 0
        if task:
            tasks.append(("names", task))
        return tasks

    def scan(self, paths, walk=()):
        """Like ``records``, decoded: a dict logical path -> Entry."""
        return {path: decode(record) for path, record in self.records(paths, walk).items()}

    # --- in a worker -----------------------------------------------------

    def _handle(self, task, pool):
        out = _Out(self, pool)
        if task[0] == "names":
            self._names(task[1], out)
        else:
            self._walk(task[1], out, pool)
        out.flush()

    def _names(self, groups, out):
        """Look at the paths of ``groups``: (parent, [path]), each path
        being parent + b"/" + name."""
        chain = _Chain(self._root_fd)
        try:
            for parent, paths in groups:
                try:
                    dir_fd = chain.open(_components(parent))
                except _Closed:
                    # Whether these exist is hidden from us: counted, not
                    # recorded.
                    out.unreadable += len(paths)
                    out.absent(paths)
                    continue
                except _Gone:
                    out.absent(paths)
                    continue
                cut = len(parent.rstrip(b"/")) + 1
                for path in paths:
                    if not self._one(dir_fd, path[cut:], path, None, out):
                        out.absent((path,))
        finally:
            chain.close()

    def _walk(self, top, out, pool):
        """Look at directory ``top`` and everything below it.

        Each directory is opened relative to its parent, with O_NOFOLLOW:
        a symlink swapped in for a directory is recorded, not entered.
        When another worker is idle, the older half of the directories
        waiting on the stack (those nearest the top, with the most below
        them) is handed over: giving one directory at a time left the
        other worker idle for half of a full run.
        """
        try:
            fd, name = self._top(top)
        except _Gone:
            return
        stack = [(HeldDirectory(fd, 1), name, top)]
        while stack:
            if len(stack) > 1 and pool.hungry():
                given = stack[:len(stack) // 2]
                del stack[:len(stack) // 2]
                for holder, _name, path in given:
                    holder.release()
                    pool.submit(("walk", path))
            holder, name, path = stack.pop()
            try:
                fd = self._enter(holder.fd, name, path, out)
            finally:
                holder.release()
            if fd is None:
                continue
            children = self._list(fd, path, out, pool)
            if children:
                opened = HeldDirectory(fd, len(children))
                stack.extend((opened, child, child_path) for child, child_path in reversed(children))
            else:
                os.close(fd)

    def _top(self, top):
        """The walk of ``top`` starts at entry ``name`` of directory ``fd``
        (a new descriptor): ``(fd, name)``.  Raises _Gone."""
        if top == b"/":
            return os.dup(self._root_fd), b"."
        parent, _, name = top.rpartition(b"/")
        return open_directory(self._root_fd, True, _components(parent)), name

    def _enter(self, parent_fd, name, path, out):
        """Open directory ``name`` for listing and record it; None when it
        cannot be listed (then it is recorded as what it is now)."""
        try:
            fd = os.open(name, _OPEN_WALK, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno in _GONE or exc.errno in (errno.EACCES, errno.EPERM):
                # Replaced meanwhile, or closed to us: record what is there.
                self._one(parent_fd, name, path, None, out,
                          unlisted=exc.errno not in _GONE)
                return None
            raise
        info = os.fstat(fd)
        out.add(path, encode(info))
        return fd

    def _list(self, fd, path, out, pool):
        """Record the entries of an open directory; its subdirectories,
        as (name, path), to be entered next.

        The files to read are looked at after the listing, so that when
        another worker is idle, half of those left can be handed to it: a
        single directory holds a third of the bytes of /usr/lib, and
        without this one worker hashed it while the other waited.
        """
        base = path + b"/" if path != b"/" else b"/"
        prune = self.prune
        subdirectories = []
        pending = []
        # The quick test of an unchanged regular file is made here rather
        # than in _one: at 76,000 files the calls it saves are a fifth of
        # a quick run.
        index = self._index if self.quick else None
        previous = self.previous
        seen = self._seen
        pack = _FIXED.pack
        digest_if = self.digest_if
        encoding = sys.getfilesystemencoding()
        with os.scandir(fd) as entries:
            for entry in entries:
                # os.fsencode, without its checks on every call.
                name = entry.name.encode(encoding, "surrogateescape")
                child = base + name
                if child in prune:
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError as exc:
                    if exc.errno in _GONE:
                        continue
                    if exc.errno in (errno.EACCES, errno.EPERM):
                        # A directory we may read but not search: its
                        # entries are counted, not recorded.
                        out.unreadable += 1
                        continue
                    raise
                mode = info.st_mode
                form = mode & 0o170000
                if form == stat.S_IFDIR:
                    subdirectories.append((name, child))
                    continue
                if index is not None and form == stat.S_IFREG:
                    position = index.get(child)
                    if position is not None:
                        old = previous[child]
                        if (old[_DIGEST_LENGTH_AT] and old.startswith(pack(
                                b"f", mode & 0o7777, info.st_uid, info.st_gid, info.st_size,
                                info.st_mtime_ns, info.st_ctime_ns, info.st_dev, info.st_ino))
                                and (digest_if is None or digest_if(info))):
                            seen[position] = 1   # unchanged: the record stands
                            continue
                pending.append((name, child, info))
        done = 0
        since_look = 0
        while done < len(pending):
            left = len(pending) - done
            if since_look >= _SHARE_BYTES and left >= _SHARE_MIN:
                since_look = 0
                if pool.hungry():
                    given = pending[len(pending) - left // 2:]
                    del pending[len(pending) - left // 2:]
                    pool.submit(("names", [(path, [child for _name, child, _ in given])]))
            name, child, info = pending[done]
            self._one(fd, name, child, info, out)
            since_look += info.st_size + _SHARE_COST
            done += 1
        if len(out.pairs) >= BATCH:
            out.flush()
        return subdirectories

    def _one(self, dir_fd, name, path, info, out, unlisted=False):
        """Record one path; ``info`` is its lstat result when known.
        True when it was recorded, None when it is gone or hidden."""
        previous = self.previous.get(path)
        for _attempt in range(3):
            if info is None:
                try:
                    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except OSError as exc:
                    if exc.errno in _GONE:
                        return
                    if exc.errno in (errno.EACCES, errno.EPERM):
                        # In a directory we may not search: whether it
                        # exists is hidden from us.  Counted, not recorded.
                        out.unreadable += 1
                        return
                    raise
            mode = info.st_mode
            if stat.S_ISREG(mode):
                if self.digest_if is not None and not self.digest_if(info):
                    out.add(path, encode(info, note=_NOT_READABLE))
                    return True
                if self.quick and previous is not None and previous[_DIGEST_LENGTH_AT] \
                        and previous.startswith(_fixed(info)):
                    out.add(path, previous)   # unchanged: the record stands
                    return True
                try:
                    digest = self._hash(dir_fd, name, info)
                except PermissionError:
                    out.add(path, encode(info, note=_NOT_READABLE))
                    return True
                except _Swapped:
                    info = None
                    continue
                out.hashed += 1
                out.add(path, encode(info, digest=digest))
                return True
            if stat.S_ISLNK(mode):
                if self.quick and previous is not None and previous.startswith(_fixed(info)):
                    # Same inode and ctime: a symlink's target cannot have
                    # changed (it is never rewritten in place).
                    out.add(path, previous)
                    return True
                try:
                    target = os.readlink(name, dir_fd=dir_fd)
                except OSError as exc:
                    if exc.errno in _GONE or exc.errno == errno.EINVAL:
                        info = None
                        continue  # replaced meanwhile: look again
                    raise
                out.add(path, encode(info, target=target))
                return True
            note = _NOT_READABLE if unlisted and stat.S_ISDIR(mode) else b"\x00"
            out.add(path, encode(info, note=note))
            return True
        # Changed three times while we looked: record what is there now,
        # without a digest.
        out.add(path, encode(info, note=_CHANGING))
        return True

    def _hash(self, dir_fd, name, info):
        """The raw digest of regular file ``name``, which lstat showed as ``info``.

        Read to its end, even when it grew since fstat.  When its start
        was not in the page cache, its pages are dropped afterwards (see
        the module docstring): the file was read for its digest alone.
        """
        try:
            fd, now = open_untrusted(name, dir_fd=dir_fd, seen=info)
        except NotRegular:
            raise _Swapped() from None      # another file stands there now
        except OSError as exc:
            if exc.errno in _GONE:
                raise _Swapped() from None  # replaced by a symlink, or gone
            raise
        drop = False
        try:
            view = self._view
            if view is None:
                view = self._view = memoryview(bytearray(_CHUNK))
            size = now.st_size
            # A small file is read in one call and hashed from memory
            # (one byte more than SMALL tells that it grew): 40 % of /usr
            # files are this small, so what a file costs besides its bytes
            # counts; the buffer is kept, where hashlib.file_digest
            # allocated 256 KiB per call, about 5 us a file.
            first = view[:SMALL + 1] if size <= SMALL else view
            # Where RWF_NOWAIT works, the first read is that call itself:
            # a cached file costs no extra call; one read from the disk
            # costs the refused call and the drop.
            nowait = _NOWAIT if now.st_dev not in self._no_nowait else 0
            if nowait:
                try:
                    done = os.preadv(fd, [first], 0, nowait)
                except BlockingIOError:
                    drop = True
                    nowait = 0
                    done = os.preadv(fd, [first], 0)
                except OSError as exc:
                    if exc.errno not in _NO_NOWAIT:
                        raise
                    self._no_nowait.add(now.st_dev)
                    nowait = 0
                    done = os.preadv(fd, [first], 0)
            else:
                done = os.preadv(fd, [first], 0)
            digest = self._new(view[:done])
            # A blocking read shorter than asked met the end of the file;
            # one served from the cache may have stopped where the cached
            # part ends: it is whole when it holds what fstat showed.
            if done < len(first) and (not nowait or done >= size):
                return digest.digest()
            offset = done
            while done := os.preadv(fd, [view], offset):
                digest.update(view[:done])
                offset += done
            return digest.digest()
        finally:
            if drop:
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                except OSError:
                    pass        # only advice: the digest stands
            os.close(fd)


class _Collect:
    """Batches handed straight to a function (work done in the parent)."""

    def __init__(self, function):
        self.emit = function


class _Out:
    """A worker's results for one task, handed over in batches.

    A record equal to the previous run's is not sent: it is ticked in the
    scanner's shared map of paths seen.
    """

    __slots__ = ("index", "previous", "seen", "pool", "pairs", "hashed", "unreadable", "gone")

    def __init__(self, scanner, pool):
        self.index = scanner._index
        self.previous = scanner.previous
        self.seen = scanner._seen
        self.pool = pool
        self.pairs = []
        self.hashed = 0
        self.unreadable = 0
        self.gone = []

    def add(self, path, record):
        if is_unreadable(record):
            self.unreadable += 1
        if self.index is None:
            if self.previous.get(path) == record:
                return
        else:
            position = self.index.get(path)
            if position is not None:
                self.seen[position] = 1
                if self.previous[path] == record:
                    return
        self.pairs.append((path, record))
        if len(self.pairs) >= BATCH:
            self.flush()

    def absent(self, paths):
        """Named ``paths`` that are not there (or hidden): those of the
        previous run are removed ones.  Only named paths of a run without
        walks are told this way; a walk ticks what it sees."""
        if self.index is None:
            previous = self.previous
            self.gone.extend(path for path in paths if path in previous)

    def flush(self):
        if self.pairs or self.hashed or self.unreadable or self.gone:
            self.pool.emit((self.pairs, self.hashed, self.unreadable, self.gone))
        self.pairs = []
        self.hashed = 0
        self.unreadable = 0
        self.gone = []


class _Swapped(Exception):
    """The file changed identity between lstat and open."""
