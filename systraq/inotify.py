# SPDX-License-Identifier: GPL-2.0-or-later
"""inotify, through Debian's python3-pyinotify, behind a small interface.

This is the one module that talks to pyinotify.  The realtime watcher
(watch.py) asks it to watch directories and files and to wait for what
happened to them; it gets back plain ``Event`` tuples with byte paths.
What pyinotify does not do, or does in a way a daemon cannot live with,
is handled here:

- Paths are bytes everywhere else in systraq; pyinotify takes str and
  encodes it strictly, so a name that is not valid in the file system
  encoding cannot be watched (``add`` says False: the caller polls it).
- pyinotify decodes the names of events strictly too: one event about a
  file whose name is not UTF-8 makes it raise after the whole queue was
  read, losing the other events with it.  That is reported as an
  overflow, which the caller answers by looking at everything again.
- ``add`` raises ``Exhausted`` when the kernel has no watch left
  (ENOSPC from inotify_add_watch, fs.inotify.max_user_watches), so that
  the caller can fall back to polling; every other failure (the path
  vanished, no permission, not a directory) is False.
- Adding a watch on a file again after it was replaced (written to a
  temporary name and renamed over it) watches the new file and drops the
  watch on the old one, which would otherwise linger as long as that
  inode lives (a backup hard link such as ``/etc/passwd-``).

Waiting uses pyinotify's blocking ``Notifier`` one step at a time
(``check_events`` with a timeout, then read and process), so that the
caller keeps its own timers; with nothing to wait for it blocks in
poll(2) and uses no CPU.
"""

import ctypes
import errno
import logging
import os
import warnings
from collections import namedtuple

with warnings.catch_warnings():
    # pyinotify 0.9.6 imports asyncore for a notifier systraq does not use.
    warnings.simplefilter("ignore", DeprecationWarning)
    import pyinotify

# pyinotify logs to stderr by itself (a watch it cannot find the owner
# of, a failed add): this module reports what matters, once.
logging.getLogger("pyinotify").setLevel(logging.CRITICAL)

_DIRECTORY_MASK = (pyinotify.IN_CREATE | pyinotify.IN_DELETE | pyinotify.IN_MOVED_FROM
                   | pyinotify.IN_MOVED_TO | pyinotify.IN_CLOSE_WRITE | pyinotify.IN_MODIFY
                   | pyinotify.IN_ATTRIB | pyinotify.IN_DELETE_SELF | pyinotify.IN_MOVE_SELF
                   | pyinotify.IN_ONLYDIR | pyinotify.IN_DONT_FOLLOW | pyinotify.IN_EXCL_UNLINK)
_FILE_MASK = (pyinotify.IN_CLOSE_WRITE | pyinotify.IN_MODIFY | pyinotify.IN_ATTRIB
              | pyinotify.IN_DELETE_SELF | pyinotify.IN_MOVE_SELF | pyinotify.IN_DONT_FOLLOW)
# The events that change which names a directory holds.
NAMES_CHANGED = (pyinotify.IN_CREATE | pyinotify.IN_DELETE | pyinotify.IN_MOVED_FROM
                 | pyinotify.IN_MOVED_TO)
# The watched thing itself went away: its watch is gone or useless.
_GONE = pyinotify.IN_DELETE_SELF | pyinotify.IN_MOVE_SELF | pyinotify.IN_IGNORED

# path: bytes, the watched path or the name inside a watched directory;
# directory: the event is about a directory; names: a name was created,
# deleted or moved; gone: the watched path itself was removed or moved
# away (its watch no longer stands for it); overflow: events were lost.
Event = namedtuple("Event", "path directory names gone overflow")


class Exhausted(Exception):
    """No inotify watch is left for this user (fs.inotify.max_user_watches)."""


def max_user_watches():
    """The kernel's limit, for the message that says it was reached."""
    try:
        with open("/proc/sys/fs/inotify/max_user_watches", "rb") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return None


class Inotify:
    """One inotify instance and its watches, keyed by byte path."""

    def __init__(self):
        self._manager = pyinotify.WatchManager()
        self._notifier = pyinotify.Notifier(self._manager, self._collect)
        self._notifier.coalesce_events(True)
        self._path_of = {}      # wd -> bytes path
        self._wd_of = {}        # bytes path -> wd
        self._pending = []

    def fileno(self):
        return self._manager.get_fd()

    def watched(self):
        """The paths watched now."""
        return set(self._wd_of)

    def add(self, path, directory=True):
        """Watch ``path`` (bytes): True when watched, False when it cannot
        be (gone, no permission, not a directory, a name pyinotify cannot
        pass on).  Raises Exhausted when the kernel has no watch left."""
        try:
            name = path.decode("utf-8")
        except UnicodeDecodeError:
            return False
        mask = _DIRECTORY_MASK if directory else _FILE_MASK
        try:
            result = self._manager.add_watch(name, mask, quiet=False)
        except pyinotify.WatchManagerError:
            # pyinotify's libc binding keeps errno for ctypes.get_errno.
            if ctypes.get_errno() == errno.ENOSPC:
                raise Exhausted(path) from None
            return False
        wd = next(iter(result.values()), -1)
        if wd < 0:
            return False
        old = self._wd_of.get(path)
        if old is not None and old != wd:
            # The path is another inode now (replaced): the old watch is
            # of no use, and its inode may live on under another name.
            self._forget(old)
            self._manager.rm_watch(old, quiet=True)
        other = self._path_of.get(wd)
        if other is not None and other != path:
            # The same inode under a second name (a hard link, or a move
            # the caller has not caught up with): one name per watch.
            self._wd_of.pop(other, None)
        self._path_of[wd] = path
        self._wd_of[path] = wd
        return True

    def remove(self, path):
        wd = self._wd_of.get(path)
        if wd is None:
            return
        self._forget(wd)
        self._manager.rm_watch(wd, quiet=True)

    def _forget(self, wd):
        path = self._path_of.pop(wd, None)
        if path is not None and self._wd_of.get(path) == wd:
            del self._wd_of[path]

    def is_watched(self, path):
        return path in self._wd_of

    def ready(self, timeout=None):
        """Wait up to ``timeout`` seconds (None: for ever) until events can
        be read; True when they can.  Only this blocks."""
        milliseconds = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
        return bool(self._notifier.check_events(milliseconds))

    def read(self):
        """The events that can be read now, as a list of Event."""
        try:
            self._notifier.read_events()
        except UnicodeDecodeError:
            # See the module docstring: what was read is lost.
            self._pending.append(Event(None, False, False, False, True))
        self._notifier.process_events()
        events, self._pending = self._pending, []
        return events

    def wait(self, timeout=None):
        """The events that arrive within ``timeout`` seconds (None: wait
        until there is one); empty when none came."""
        return self.read() if self.ready(timeout) else []

    def _collect(self, event):
        mask = event.mask
        if mask & pyinotify.IN_Q_OVERFLOW:
            self._pending.append(Event(None, False, False, False, True))
            return
        base = self._path_of.get(event.wd)
        if base is None:
            return  # a watch removed while its events were queued
        name = os.fsencode(event.name) if event.name else b""
        path = os.path.join(base, name) if name else base
        gone = bool(mask & _GONE) and not name
        if gone:
            # pyinotify itself drops the watch on IN_IGNORED; a watch whose
            # directory was moved away follows the inode, not the name, so
            # it is of no use any more either.
            self._forget(event.wd)
            if mask & pyinotify.IN_MOVE_SELF:
                self._manager.rm_watch(event.wd, quiet=True)
        self._pending.append(Event(path, bool(mask & pyinotify.IN_ISDIR), bool(mask & NAMES_CHANGED),
                                   gone, False))

    def close(self):
        try:
            self._notifier.stop()
        except OSError:
            pass
