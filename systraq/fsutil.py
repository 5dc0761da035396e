# SPDX-License-Identifier: GPL-2.0-or-later
"""Writing state so that a crash, a kill or a full disk never leaves half a file.

``atomic_write`` writes a temporary file in the target's directory, flushes
it to disk, renames it over the target and flushes the directory: after a
crash either the old or the new content is there, never a mix.
"""

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
    the file before it appears under its name.
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
