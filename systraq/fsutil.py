# SPDX-License-Identifier: GPL-2.0-or-later
"""Writing state so that a crash, a kill or a full disk never leaves half a file.

``atomic_write`` writes a temporary file in the target's directory, flushes
it to disk, renames it over the target and flushes the directory: after a
crash either the old or the new content is there, never a mix.
"""

import os

TEMP_PREFIX = b".tmp-"


def atomic_write(path, data, mode=0o640):
    """Replace the file at ``path`` (bytes) with ``data`` (bytes), atomically.

    The file is created with ``mode`` (before the umask) and never exists
    with wider permissions, even for a moment.
    """
    directory, name = os.path.split(path)
    # An unpredictable name created with O_EXCL: the root job writes into
    # directories the systraq user owns, where a planted file or symlink
    # must make the write fail, never redirect it.
    temp = os.path.join(directory, TEMP_PREFIX + name + b"." + os.urandom(6).hex().encode())
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
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
