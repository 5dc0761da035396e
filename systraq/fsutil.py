# SPDX-License-Identifier: GPL-2.0-or-later
"""Files, the safe way: written so that a crash never leaves half a file,
opened so that a file someone else controls never leads us astray.

``atomic_write`` writes a temporary file in the target's directory, flushes
it to disk, renames it over the target and flushes the directory: after a
crash either the old or the new content is there, never a mix.

``open_untrusted`` is the one way any module opens a file that someone
else may control (a user's home, /etc, a directory another user may
write, the systraq user's state when root reads it): lstat first, a
regular file only, opened without following a link, blocking on a FIFO
or taking a terminal, then fstat must show the very inode lstat saw.  A
symlink planted there is never followed, a FIFO or device never opened.
"""

import contextlib
import fcntl
import os
import stat
import time

from systraq.errors import RunError

TEMP_PREFIX = b".tmp-"


def atomic_write(path, data, mode=0o640, group=None):
    """Replace the file at ``path`` (bytes) with ``data``, atomically.

    ``data``: bytes, or an iterable of bytes written one after the other
    (a large file need not be built in memory first).
    The file is created with ``mode`` (before the umask) and never exists
    with wider permissions, even for a moment.  ``group``: a gid to give
    the file before it appears under its name; the file then has exactly
    ``mode``, whatever the umask: it is written for that group to read (the
    root job's records for the report), and root's umask of 077 -- a
    hardened shell, a unit's UMask= -- would leave them unreadable.
    """
    directory, name = os.path.split(path)
    # An unpredictable name created with O_EXCL: the root job writes into
    # directories the systraq user owns, where a planted file or symlink
    # must make the write fail, never redirect it.
    temp = os.path.join(directory, TEMP_PREFIX + name + b"." + os.urandom(6).hex().encode())
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        for chunk in ((data,) if isinstance(data, (bytes, bytearray, memoryview)) else data):
            view = memoryview(chunk)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        if group is not None:
            os.fchown(fd, -1, group)
            os.fchmod(fd, mode)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(temp)
        raise
    os.close(fd)
    try:
        os.rename(temp, path)
    except BaseException:
        _unlink_quietly(temp)
        raise
    fsync_directory(directory or b".")


# How a file someone else may control is opened: never through a link,
# never blocking (a FIFO swapped in), never as a controlling terminal.
OPEN_UNTRUSTED = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class NotRegular(OSError):
    """The path is no regular file (``kind``: what lstat saw, a stat
    format), or it was swapped for something else between lstat and open
    (``kind`` None)."""

    def __init__(self, path, kind=None):
        super().__init__(f"{os.fsdecode(path)}: not a regular file")
        self.filename = path
        self.kind = kind


def open_untrusted(path, dir_fd=None, seen=None):
    """``(fd, fstat result)`` of the regular file ``path`` (relative to
    ``dir_fd`` when given): lstat (or ``seen``, the lstat the caller
    took), open with OPEN_UNTRUSTED, fstat, and the same device and
    inode, or NotRegular.  OSError as open raises it otherwise (ENOENT:
    gone; ELOOP: a symlink now)."""
    if seen is None:
        seen = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISREG(seen.st_mode):
        raise NotRegular(path, stat.S_IFMT(seen.st_mode))
    fd = os.open(path, OPEN_UNTRUSTED, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (
                seen.st_dev, seen.st_ino):
            raise NotRegular(path)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def read_untrusted(path, dir_fd=None, seen=None, limit=None):
    """``(bytes, fstat result)`` of the regular file ``path``, opened by
    ``open_untrusted``; at most ``limit`` bytes (None: all)."""
    fd, info = open_untrusted(path, dir_fd, seen)
    try:
        chunks, size = [], 0
        while limit is None or size < limit:
            chunk = os.read(fd, (1 << 20) if limit is None else min(1 << 20, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), info
    finally:
        os.close(fd)


def mode_directory(settings, mode):
    """Create (if needed) and return the state directory of ``mode``.

    The root mode's directory holds digests and copies of files only root
    may read: it must be closed to everybody else, and a run refuses to
    use it otherwise.
    """
    directory = settings.mode_dir(mode)
    try:
        os.makedirs(directory, mode=0o750 if mode == "pub" else 0o700, exist_ok=True)
    except OSError as exc:
        raise RunError(f"cannot create {os.fsdecode(directory)}: {exc.strerror}") from None
    if mode == "root" and stat.S_IMODE(os.stat(directory).st_mode) & 0o077:
        raise RunError(f"{os.fsdecode(directory)} is readable by others; "
                       "it must be mode 0700")
    return directory


def fsync_directory(directory):
    """Make a rename or unlink in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


class Busy(Exception):
    """Another run holds the lock."""


class exclusive_lock:
    """``with exclusive_lock(path, wait):`` -- one run at a time.

    Takes an flock on ``path`` (created if needed), waiting up to ``wait``
    seconds for a run that holds it; raises Busy if it is still held.  The
    kernel releases the lock when the process dies, however it dies.
    """

    def __init__(self, path, wait):
        self.path = path
        self.wait = wait
        self.fd = None

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise Busy(self.path) from None
                time.sleep(0.1)
        self.fd = fd
        return self

    def __exit__(self, *exc):
        os.close(self.fd)
        self.fd = None


@contextlib.contextmanager
def held(path, wait, what):
    """``with held(path, wait, "'systraq audit'"):`` -- the lock of
    ``exclusive_lock``, or a RunError that names ``what`` holds it and the
    lock file, as one line."""
    lock = exclusive_lock(path, wait)
    try:
        lock.__enter__()
    except Busy:
        raise RunError(f"another {what} is running (lock {os.fsdecode(path)}); gave up "
                       f"after {wait:g} s") from None
    except OSError as exc:
        raise RunError(f"{os.fsdecode(path)}: cannot lock: {exc.strerror}") from None
    try:
        yield lock
    finally:
        lock.__exit__(None, None, None)
