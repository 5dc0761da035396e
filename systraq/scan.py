# SPDX-License-Identifier: GPL-2.0-or-later
"""Reading the file system safely: metadata and digests of a set of paths.

This is the one module that opens files to look at them.  Because the root
job reads places users control (home directories, /tmp), it never trusts a
name to stay what it was:

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

Digests are computed by a pool of threads: hashlib releases the GIL while
it hashes, and ``hashlib.file_digest`` reads with a fixed buffer, so memory
does not grow with file size.
"""

import errno
import hashlib
import os
import stat
from collections import namedtuple
from concurrent.futures import ThreadPoolExecutor

DIGESTS = ("sha256", "sha512", "blake2b", "md5")

# One scanned path.  kind: f d l p s c b ?; perm: permission bits with
# setuid/setgid/sticky; target: symlink target (bytes); digest: hex or None;
# note: None, or why there is no digest ("not readable").
Entry = namedtuple("Entry", "kind perm uid gid size mtime_ns ctime_ns dev ino target digest note")

_KINDS = ((stat.S_ISREG, "f"), (stat.S_ISDIR, "d"), (stat.S_ISLNK, "l"),
          (stat.S_ISFIFO, "p"), (stat.S_ISSOCK, "s"), (stat.S_ISCHR, "c"),
          (stat.S_ISBLK, "b"))

_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_OPEN_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
# Names handed to one worker at a time: big directories are shared out.
CHUNK = 256
# Files up to this size are read in one call and hashed from memory.
SMALL = 64 * 1024


def kind_of(mode):
    for test, letter in _KINDS:
        if test(mode):
            return letter
    return "?"


def _trusted(info):
    """A directory only root can change the entries of."""
    return info.st_uid == 0 and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


class _Gone(Exception):
    """The directory is not there, or reaching it needs an untrusted symlink."""


def open_directory(top_fd, top_trusted, components):
    """An O_PATH descriptor of the directory ``components`` below ``top_fd``."""
    fd = os.dup(top_fd)
    trusted = top_trusted
    try:
        for name in components:
            try:
                new = os.open(name, _OPEN_DIR, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR) or not trusted:
                    raise _Gone() from None
                # A symlink that root placed: follow it.
                try:
                    new = os.open(name, _OPEN_DIR & ~os.O_NOFOLLOW, dir_fd=fd)
                except OSError:
                    raise _Gone() from None
            os.close(fd)
            fd = new
            trusted = trusted and _trusted(os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


class Scanner:
    """Scan logical paths below ``settings.root``.

    ``algorithm``: one of DIGESTS.  ``digest_if``: a function of the lstat
    result saying whether this file may be hashed (pub mode hashes only
    world-readable files, so that no digest of a secret is kept where
    others can read it).  ``previous``: a dict of earlier Entries for
    ``quick`` mode, which reuses a digest when device, inode, size,
    mtime and ctime are all unchanged.
    """

    def __init__(self, settings, algorithm="sha256", digest_if=None,
                 previous=None, quick=False, workers=None):
        if algorithm not in DIGESTS:
            raise ValueError(f"unknown digest {algorithm!r}")
        self.settings = settings
        self.algorithm = algorithm
        self.digest_if = digest_if or (lambda info: True)
        self.previous = previous or {}
        self.quick = quick
        self.workers = workers or min(8, os.cpu_count() or 1)
        self.unreadable = 0

    def scan(self, paths):
        """A dict logical path -> Entry for the paths that exist."""
        groups = {}
        for path in paths:
            parent, _, name = path.rpartition(b"/")
            if name:
                # The caller's path object is kept as the key: building it
                # again from parent and name cost 8 MiB per 76,000 paths.
                groups.setdefault(parent, []).append((name, path))
        root_fd = os.open(self.settings.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        result = {}
        try:
            tasks = []
            for parent, names in groups.items():
                for start in range(0, len(names), CHUNK):
                    tasks.append((parent, names[start:start + CHUNK]))
            with ThreadPoolExecutor(self.workers) as pool:
                for part in pool.map(lambda task: self._scan_group(root_fd, *task), tasks):
                    result.update(part)
            # The root directory itself, when listed.
            if b"/" in paths:
                info = os.fstat(root_fd)
                result[b"/"] = self._entry(info, None, None)
        finally:
            os.close(root_fd)
        self.unreadable = sum(1 for e in result.values() if e.note == "not readable")
        return result

    def _scan_group(self, root_fd, parent, names):
        components = [c for c in parent.split(b"/") if c]
        try:
            dir_fd = open_directory(root_fd, True, components)
        except _Gone:
            return {}
        out = {}
        try:
            for name, path in names:
                entry = self._scan_one(dir_fd, name, path)
                if entry is not None:
                    out[path] = entry
        finally:
            os.close(dir_fd)
        return out

    def _scan_one(self, dir_fd, name, path):
        for _attempt in range(3):
            try:
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError as exc:
                if exc.errno in _GONE:
                    return None
                raise
            if stat.S_ISLNK(info.st_mode):
                try:
                    target = os.readlink(name, dir_fd=dir_fd)
                except OSError as exc:
                    if exc.errno in _GONE or exc.errno == errno.EINVAL:
                        continue  # replaced meanwhile: look again
                    raise
                return self._entry(info, target, None)
            if not stat.S_ISREG(info.st_mode):
                return self._entry(info, None, None)
            if not self.digest_if(info):
                return self._entry(info, None, None, note="not readable")
            reused = self._reuse(path, info)
            if reused:
                return self._entry(info, None, reused)
            try:
                digest = self._hash(dir_fd, name, info)
            except PermissionError:
                return self._entry(info, None, None, note="not readable")
            except _Swapped:
                continue
            return self._entry(info, None, digest)
        # Changed three times while we looked: record what is there now,
        # without a digest.
        return self._entry(info, None, None, note="changing")

    def _reuse(self, path, info):
        """The previous digest, in quick mode, when nothing suggests a change.

        Weaker than hashing: a tool that restores mtime and ctime (which
        needs root, or a changed clock) goes unseen.
        """
        if not self.quick:
            return None
        old = self.previous.get(path)
        if (old is not None and old.kind == "f" and old.digest is not None
                and (old.dev, old.ino, old.size, old.mtime_ns, old.ctime_ns)
                == (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns,
                    info.st_ctime_ns)):
            return old.digest
        return None

    def _hash(self, dir_fd, name, info):
        try:
            fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in _GONE:
                raise _Swapped() from None  # replaced by a symlink, or gone
            raise
        with open(fd, "rb", buffering=0) as handle:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino) or not stat.S_ISREG(now.st_mode):
                raise _Swapped()
            if now.st_size <= SMALL:
                # One read: file_digest allocates a 256 KiB buffer per call,
                # about 5 us a file, and 40 % of /usr files are this small.
                data = os.read(fd, SMALL + 1)
                if len(data) <= SMALL:
                    return hashlib.new(self.algorithm, data).hexdigest()
                digest = hashlib.new(self.algorithm, data)   # it grew meanwhile
                while chunk := os.read(fd, 1 << 18):
                    digest.update(chunk)
                return digest.hexdigest()
            return hashlib.file_digest(handle, self.algorithm).hexdigest()

    @staticmethod
    def _entry(info, target, digest, note=None):
        return Entry(kind_of(info.st_mode), stat.S_IMODE(info.st_mode), info.st_uid,
                     info.st_gid, info.st_size, info.st_mtime_ns, info.st_ctime_ns,
                     info.st_dev, info.st_ino, target, digest, note)


class _Swapped(Exception):
    """The file changed identity between lstat and open."""
