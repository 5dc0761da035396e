# SPDX-License-Identifier: GPL-2.0-or-later
"""The list files: what they say, and which paths they name on this system now.

The format is the old systraq's, kept so that existing lists work as they
are: one entry a line; blank lines and lines starting with '#' are
ignored; surrounding spaces and tabs are dropped.  An entry may use shell
wildcards (``*``, ``?``, ``[...]``; as in the shell, a leading '.' is only
matched by a pattern that spells it).  An entry naming a directory means
the directory and everything below it; symbolic links are listed, never
followed.  In ``*.list`` and ``filetraq.conf`` entries are absolute paths;
in ``*.homelist`` they are relative and apply below every home directory
of the passwd database except '/'.

Names are bytes from end to end: spaces, newlines (matched with ``?`` or
``*``, since an entry is one line) and bytes that are not UTF-8 survive.
"""

import glob
import os
import posixpath
import re
import stat
from collections import namedtuple

from systraq import accounts
from systraq.errors import ConfigError
from systraq.pathcodec import escape
from systraq.settings import NEVER_WALK

Entry = namedtuple("Entry", "pattern line")

_MAGIC = re.compile(rb"[*?[]")


class MissingListFile(ConfigError):
    """A list file that does not exist."""


def parse(path, kind):
    """The entries of the list file at ``path`` (bytes) of kind "system" or "home".

    Raises MissingListFile when it does not exist and ConfigError naming
    every broken line otherwise.
    """
    name = os.fsdecode(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise MissingListFile.single(name, None, "no such file") from None
    except OSError as exc:
        raise ConfigError.single(name, None, f"cannot read: {exc.strerror}") from None

    entries = []
    problems = []
    for number, line in enumerate(raw.split(b"\n"), 1):
        entry = line.strip(b" \t\r")
        if not entry or entry.startswith(b"#"):
            continue
        problem = _check(entry, kind)
        if problem:
            problems.append((name, number, problem))
            continue
        entries.append(Entry(entry.rstrip(b"/") or b"/", number))
    if problems:
        raise ConfigError(problems)
    return entries


def _check(entry, kind):
    if b"\0" in entry:
        return "contains a NUL byte"
    if kind == "system":
        if not entry.startswith(b"/"):
            return f"not an absolute path: '{escape(entry)}'"
    else:
        if entry.startswith(b"/"):
            return ("home list entries are relative to each home directory:"
                    f" '{escape(entry)}'")
        if b".." in entry.split(b"/"):
            return f"'..' would leave the home directory: '{escape(entry)}'"
    return None


class Expansion:
    """What a list names now.

    ``paths``: sorted logical paths that exist.  ``missing``: entries of a
    system list that match nothing, as ``(entry, line)``.  ``unreadable``:
    logical paths this user could not look into (directories, homes),
    each once.  ``homes``: how many home directories were searched.
    ``walk``: with ``expand(..., walk=False)``, the directories whose
    contents are named too, left for the caller to walk (``paths`` then
    holds what the entries matched themselves); ``prune``: what such a
    walk must neither list nor enter.
    """

    def __init__(self):
        self.paths = []
        self.walk = []
        self.prune = ()
        self.missing = []
        self.unreadable = []
        self.homes = 0


class _Expander:
    def __init__(self, settings, exclude, walk):
        self.settings = settings
        self.prune = tuple(NEVER_WALK) + tuple(exclude)
        self.found = set()
        self.unreadable = []
        self.do_walk = walk
        self.to_walk = set()

    def excluded(self, logical):
        for top in self.prune:
            if logical == top or logical.startswith(top + b"/"):
                return True
        return False

    def match(self, logical_pattern):
        """Add what ``logical_pattern`` names; False when it names nothing."""
        settings = self.settings
        if _MAGIC.search(logical_pattern):
            hits = glob.glob(settings.host_glob(logical_pattern))
        else:
            hits = [settings.host(logical_pattern)]
        matched = False
        for host_path in hits:
            parent = (posixpath.dirname(host_path) if host_path != settings.root
                      else host_path)
            if not settings.contains(parent):
                continue  # reached through a symlink that leaves the root
            try:
                info = os.lstat(host_path)
            except FileNotFoundError:
                continue
            except OSError:
                self.unreadable.append(settings.logical(host_path))
                matched = True
                continue
            matched = True
            logical = settings.logical(host_path)
            self.found.add(logical)
            if stat.S_ISDIR(info.st_mode) and not self.excluded(logical):
                if self.do_walk:
                    self.walk(host_path)
                else:
                    self.to_walk.add(logical)
        return matched

    def walk(self, top):
        logical_of = self.settings.logical
        stack = [top]
        while stack:
            directory = stack.pop()
            try:
                with os.scandir(directory) as scan:
                    entries = list(scan)
            except (FileNotFoundError, NotADirectoryError):
                continue  # vanished or replaced while we walked
            except OSError:
                self.unreadable.append(logical_of(directory))
                continue
            for entry in entries:
                logical = logical_of(entry.path)
                if self.excluded(logical):
                    continue
                self.found.add(logical)
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                if is_dir:
                    stack.append(entry.path)


def expand(settings, entries, kind, exclude=(), walk=True, homes=None):
    """Expand parsed ``entries`` of a list of ``kind`` into an Expansion.

    A home list applies below ``homes`` (logical paths) when given, below
    every home directory of the passwd database otherwise.

    With ``walk`` false, directories are not walked here but named in the
    result's ``walk``: the snapshot walks them while it reads them, which
    saves a second pass over every directory.
    """
    expander = _Expander(settings, exclude, walk)
    result = Expansion()
    if kind == "system":
        for entry in entries:
            if not expander.match(entry.pattern):
                result.missing.append(entry)
    else:
        for home in accounts.home_directories(settings) if homes is None else homes:
            host_home = settings.host(home)
            if not os.path.isdir(host_home) or not settings.contains(host_home):
                continue  # /nonexistent and friends
            result.homes += 1
            if not os.access(host_home, os.X_OK):
                expander.unreadable.append(home)
                continue
            for entry in entries:
                expander.match(home + b"/" + entry.pattern)
    result.paths = sorted(expander.found)
    result.walk = sorted(expander.to_walk)
    result.prune = expander.prune
    result.unreadable = sorted(set(expander.unreadable))
    return result
