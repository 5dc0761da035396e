# SPDX-License-Identifier: GPL-2.0-or-later
"""dpkg's database, read directly: the one module of systraq that does.

It owns everything ``systraq packages`` needs to know before it hashes a
file: which packages are installed (``ADMINDIR/status``), the digests they
shipped (``info/PKG.md5sums`` and the ``Conffiles`` field), which files
each of them owns now (``info/PKG.list``), the diversions
(``ADMINDIR/diversions``), the stat overrides (``ADMINDIR/statoverride``)
and dpkg's ``path-exclude``/``path-include`` filters
(``/etc/dpkg/dpkg.cfg{,.d/*}``).  From these it builds the plan: one
item per file to check, with the path to open and the digest to
expect.  It never opens an installed file; the engine does that.

Why the files are read directly rather than through ``dpkg-query``: on
this development machine (Debian 12, dpkg 1.21.22, 888 packages, 101,308
md5sums lines) running ``dpkg-query --control-show PKG md5sums`` once per
package took 6.4 to 7.2 s, reading the same files directly 11 to 13 ms.
dpkg keeps this layout stable and debsums reads it the same way
("Calling dpkg-query --control-path for every package is too slow, so we
cheat a little bit").

The status file is parsed with python-apt's ``apt_pkg.TagFile`` (C):
888 stanzas took 1.0 to 1.6 ms, and a 3,552-stanza copy 3.7 ms, where
python-debian's ``deb822`` took 34 to 36 ms and 137 ms (14 to 23 ms and
91 ms with its apt_pkg back end).  Measured with /usr/bin/python3 3.11,
python3-apt 2.6.0, python3-debian 0.1.49, best of five, warm cache.

The whole plan for that machine loads in about 0.19 s; for the same
database copied four times over (3,560 packages, 406,480 files) in about
0.66 s.  ``bench/dpkgdb`` (``--scale 4``, ``--compare``) measures all of
these figures again.

Semantics, and where they come from (dpkg 1.21.23 sources, debsums 3.0.2.1):

* Packages.  ``dpkg --verify`` walks every package whose files list dpkg
  loads: every state but ``not-installed`` and ``config-files``
  (``ensure_packagefiles_available``; a removed package has no list).
  debsums only takes ``installed`` and ``half-configured``.  The default
  is dpkg's set, ``ON_DISK_STATES``; ``DEBSUMS_STATES`` gives debsums'.
* Info file names.  ``info/NAME:ARCH.EXT`` for a ``Multi-Arch: same``
  package once ``info/format`` says 1 (the multiarch layout), plain
  ``info/NAME.EXT`` for every other package and in the legacy layout
  (``pkg_infodb_get_file``).
* Which package's digest applies to a path.  dpkg checks a package's file
  only if the package's ``.list`` still names it: when B unpacks a file
  of A (B ``Replaces`` A, or a forced overwrite), dpkg rewrites A's
  ``.list`` without it (``FNNF_ELIDE_OTHER_LISTS``) but leaves A's
  md5sums as shipped, so the last package to install a file owns it.
  debsums reaches nearly the same end another way (a mismatch is
  forgiven when a replacing package ships the observed sum, or when
  ``dpkg -S`` names another owner); it alone reports A's file as missing
  once B is gone.  Here, as in dpkg, a md5sums entry that the package's
  ``.list`` lacks is not checked; it is returned in ``Plan.disowned``.
* Conffiles.  Checked against the ``Conffiles`` field, not md5sums (which
  normally does not list them), as both tools do; a md5sums entry for a
  conffile is dropped.  ``remove-on-upgrade`` conffiles are never checked
  (dpkg keeps them out of ``.list``; debsums drops them).  ``obsolete``
  ones stay in ``.list`` and both tools check them unless debsums'
  ``--ignore-obsolete`` (``ignore_obsolete=True`` here).  A conffile whose
  recorded hash is not a digest (``newconffile`` before configuration,
  ``-`` when dpkg could not read it) gets ``md5=None``: the file can be
  checked for existence, its content against nothing.  debsums skips
  these; dpkg would compare the content with the word and always fail.
  ``debsums -s`` checks no conffile at all; ``Item.conffile`` lets the
  engine choose.
* Diversions.  A file of package P diverted by another package, or
  locally, is checked at the diverted-to path; the diverting package's
  own file stays at its path (dpkg's ``namenodetouse``, debsums'
  ``check``; both compare the package name without architecture).  A
  package that ships the diverted-to path itself is checked there as it
  is.  Note that as implemented both tools only check that a diverted
  file exists: dpkg looks the digest up under the new name, where there
  is none, and debsums forgives any mismatch because ``dpkg -S`` on the
  path prints diversion lines.  The item keeps P's digest; an engine that
  wants their exact output checks only existence when
  ``item.path != item.listed``.
* Shared files.  A path in two packages' lists (the instances of a
  Multi-Arch: same package, which dpkg lets share files) is checked for
  each with its own sum, as dpkg does.  debsums forgives a mismatch unless ``dpkg -S`` names the
  package alone and prints no diversion line for the path;
  ``Database.owners`` and ``Database.diversions`` let an engine do that.
* path-exclude.  dpkg leaves excluded files out of the file system but not
  out of ``.list``; ``excluded(path)`` answers dpkg's question (last
  matching option wins, fnmatch(3) without flags, on the absolute path).
  debsums consults it only when a file cannot be opened, and so should
  the engine.  dpkg 1.21 ``--verify`` does not consult it at all and
  reports such files as missing.
* Checked against the tools.  Driven by this plan, a checker that
  applies the rules above reproduced ``dpkg --verify`` and ``debsums -s``
  (and ``-a``) line for line on that machine (1,294 and 1,169 findings)
  and on a tree built with dpkg itself from test packages (a Replaces
  take-over, a package and a local diversion, an obsolete conffile,
  path-exclude and path-include).
* Malformed data.  A status or diversions file dpkg would refuse to read
  raises ``DatabaseError`` naming file and line: nothing sound can be
  verified from it.  A bad line in one package's md5sums or ``.list`` is
  reported in ``Plan.problems`` and skipped, as debsums does ("invalid
  line (N) in md5sums"), so that one damaged file does not hide the state
  of every other package.  Broken ``path-*`` lines in dpkg's
  configuration raise ``ConfigError``.
"""

import contextlib
import gc
import operator
import os
import re
from typing import NamedTuple, Optional

import apt_pkg

from systraq.errors import ConfigError, RunError, UsageError
from systraq.pathcodec import escape

# Package states (dpkg's ``statusinfos``) whose files are on disk, that is
# whose files list dpkg reads for --verify.
ON_DISK_STATES = frozenset({
    "half-installed", "unpacked", "half-configured",
    "triggers-awaited", "triggers-pending", "installed",
})
# The states debsums checks: /\s(installed|half-configured)$/.
DEBSUMS_STATES = frozenset({"half-configured", "installed"})
_STATES = ON_DISK_STATES | {"not-installed", "config-files"}
_WANTS = frozenset({"unknown", "install", "hold", "deinstall", "purge"})
_EFLAGS = frozenset({"ok", "reinstreq"})
_MULTI_ARCH = frozenset({"no", "same", "foreign", "allowed"})

# info/format: 0 is the legacy layout, 1 the multiarch one; dpkg refuses
# anything newer, and so do we.
INFODB_LEGACY = 0
INFODB_MULTIARCH = 1

# Conffiles hash words that are not digests (dpkg.h).
NEWCONFFILE = "newconffile"
_NO_DIGEST = frozenset({NEWCONFFILE, "-", "nonexistent"})

# A package name as dpkg allows it, and an architecture.  Checked because
# both become parts of file names below info/.
_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]*\Z")
_ARCH = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
_MD5 = re.compile(r"[0-9a-f]{32}\Z")
_MD5_BYTES = re.compile(rb"[0-9a-f]{32}\Z")

# The parts of a md5sums line as dpkg writes and reads it: 32 hex
# digits, two spaces, the path without its leading slash.
_DIGEST = operator.itemgetter(slice(None, 32))
_SEPARATOR = operator.itemgetter(slice(32, 34))
_PATH = operator.itemgetter(slice(34, None))


class DatabaseError(RunError):
    """dpkg's database cannot be read as dpkg would: systraq cannot go on.

    ``file`` is the file's name as text, ``line`` its line number or None.
    """

    def __init__(self, file, line, message):
        self.file = file
        self.line = line
        self.message = message
        where = f"{file}:{line}" if line is not None else file
        super().__init__(f"{where}: {message}")


class UnknownPackages(UsageError):
    """Packages named on the command line that are not installed."""

    def __init__(self, names):
        self.names = list(names)
        noun = "package" if len(self.names) == 1 else "packages"
        super().__init__(f"{noun} not installed: {', '.join(self.names)}")


class Conffile(NamedTuple):
    """One line of a package's ``Conffiles`` field.

    ``md5`` is the hex digest dpkg recorded, or None when the recorded
    word is not one (``hash`` keeps it).  ``flags`` holds "obsolete",
    "remove-on-upgrade" and "newconffile" as they apply.
    """

    md5: Optional[str]
    flags: frozenset
    hash: str


class Diversion(NamedTuple):
    """One record of ``ADMINDIR/diversions``: ``package`` None is local."""

    source: bytes
    target: bytes
    package: Optional[str]


class Item(NamedTuple):
    """One file to check.

    ``path`` is the logical path to open (bytes, diversions applied);
    ``listed`` the path as the package lists it; ``md5`` the expected hex
    digest, None when only existence can be checked; ``conffile`` and
    ``flags`` (a conffile's flags, empty otherwise) as in ``Conffile``.
    """

    package: "Package"
    path: bytes
    md5: Optional[str]
    conffile: bool
    flags: frozenset
    listed: bytes


class Items:
    """The files of a plan, in plan order, as ``Item`` tuples.

    Most files are plain md5sums entries (not a conffile, not diverted,
    still the package's): a package's run of them is kept as its list of
    paths and their digests, 16 raw bytes each in one bytes string, and
    made into Items only while iterated.  Every other file is kept as its
    Item.  At 300,600 files (3,000 packages) the Items themselves, each
    with its hex digest, took 77 MB of a 236 MB peak; kept this way 28 MB.
    """

    __slots__ = ("_runs", "_length")

    def __init__(self, items=()):
        self._runs = []
        self._length = 0
        for item in items:
            self.append(item)

    def append(self, item):
        runs = self._runs
        if runs and type(runs[-1]) is list:
            runs[-1].append(item)
        else:
            runs.append([item])
        self._length += 1

    def add_plain(self, package, sums):
        """``package``'s md5sums entries ``sums`` (path -> hex digest),
        every one plain."""
        if sums:
            self._runs.append((package, list(sums), bytes.fromhex("".join(sums.values()))))
            self._length += len(sums)

    def __len__(self):
        return self._length

    def __iter__(self):
        make = tuple.__new__
        none = frozenset()
        for run in self._runs:
            if type(run) is list:
                yield from run
                continue
            package, paths, digests = run
            for number, path in enumerate(paths):
                start = number * 16
                yield make(Item, (package, path, digests[start:start + 16].hex(), False,
                                  none, path))

    def paths(self):
        """The ``path`` of every item, in order, without making the Items."""
        for run in self._runs:
            if type(run) is list:
                yield from (item.path for item in run)
            else:
                yield from run[1]

    def __getitem__(self, index):
        return list(self)[index]

    def __eq__(self, other):
        if isinstance(other, (Items, list, tuple)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    def __repr__(self):
        return f"Items({list(self)!r})"


class Plan(NamedTuple):
    """What ``Database.plan`` returns.

    ``packages``      the packages planned, sorted by name and architecture
    ``items``         the files to check (an ``Items``), package by package: md5sums
                      order first, then conffiles in field order
    ``without_sums``  planned packages that have no md5sums file
                      (debsums -l); their conffiles are still planned
    ``disowned``      ``(package, path)``: md5sums entries the package's
                      ``.list`` no longer names (taken over by another
                      package), not checked
    ``problems``      ``(file, line, message)`` for damaged lines and
                      files that were reported and skipped
    """

    packages: list
    items: Items
    without_sums: list
    disowned: list
    problems: list


class Package:
    """One stanza of the status file.

    ``name``, ``arch`` ("" when the stanza has none), ``version``,
    ``multi_arch`` ("no" when absent), ``want``, ``eflag`` and ``state``
    (the three words of Status) are text; ``conffiles`` maps each
    conffile's logical path (bytes) to a ``Conffile``; ``key`` is the name
    dpkg shows, ``NAME:ARCH`` where the name alone is ambiguous (dpkg's
    ``pnaw_nonambig``, the same as ``${binary:Package}``); ``info_name``
    is the stem of the package's files below ``info/``.
    """

    __slots__ = ("name", "arch", "version", "multi_arch", "want", "eflag",
                 "state", "conffiles", "key", "info_name", "line")

    def __init__(self, name, arch, version, multi_arch, want, eflag, state,
                 conffiles, line=None):
        self.name = name
        self.arch = arch
        self.version = version
        self.multi_arch = multi_arch
        self.want = want
        self.eflag = eflag
        self.state = state
        self.conffiles = conffiles
        self.line = line
        self.key = name
        self.info_name = name

    def __repr__(self):
        return f"<Package {self.key} {self.version} {self.state}>"


# --- small helpers --------------------------------------------------------------

def normalize(path):
    """``path`` (bytes) the way dpkg files it: leading '/' and './' pairs
    skipped and one '/' put back (``fsys_hash_find_node``), one trailing
    '/' dropped (as dpkg does for .list and md5sums lines).  Returns None
    for a path that names nothing.
    """
    start = 0
    end = len(path)
    while start < end:
        if path[start] == 0x2F:
            start += 1
        elif path[start] == 0x2E and start + 1 < end and path[start + 1] == 0x2F:
            start += 2
        else:
            break
    if end > start and path[end - 1] == 0x2F:
        end -= 1
    if start >= end:
        return None
    return b"/" + path[start:end]


def _name(path):
    """A file name fit for a message."""
    return escape(path)


def _read(path, missing_ok=False):
    """The bytes of ``path``; None when it does not exist and ``missing_ok``."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise DatabaseError(_name(path), None, "no such file") from None
    except OSError as exc:
        raise DatabaseError(_name(path), None, f"cannot read: {exc.strerror}") from None


# --- fnmatch(3) as dpkg calls it --------------------------------------------------

# POSIX character classes in the C locale.
_CLASSES = {
    "alpha": set(range(0x41, 0x5B)) | set(range(0x61, 0x7B)),
    "digit": set(range(0x30, 0x3A)),
    "upper": set(range(0x41, 0x5B)),
    "lower": set(range(0x61, 0x7B)),
    "space": set(b" \t\n\r\f\v"),
    "blank": set(b" \t"),
    "cntrl": set(range(0x00, 0x20)) | {0x7F},
    "print": set(range(0x20, 0x7F)),
    "graph": set(range(0x21, 0x7F)),
    "xdigit": set(b"0123456789abcdefABCDEF"),
}
_CLASSES["alnum"] = _CLASSES["alpha"] | _CLASSES["digit"]
_CLASSES["punct"] = _CLASSES["graph"] - _CLASSES["alnum"]

_NEVER = re.compile(rb"(?!)")


def _byte_class(members, negate):
    if not members:
        return rb"[\x00-\xff]" if negate else rb"(?!)"
    body = b"".join(b"\\x%02x" % byte for byte in sorted(members))
    return (b"[^" if negate else b"[") + body + b"]"


def _bracket(pattern, start):
    """Translate the bracket expression opening at ``pattern[start]`` ('[').

    Returns ``(regex, next index)``, ``(None, start)`` when the bracket is
    not terminated (glibc then takes the '[' literally), or
    ``(_NEVER, ...)`` for an unknown class name (glibc: no match).
    """
    i = start + 1
    n = len(pattern)
    negate = i < n and pattern[i] in b"!^"
    if negate:
        i += 1
    members = set()
    first = True
    never = False
    while True:
        if i >= n:
            return None, start
        c = pattern[i]
        if c == 0x5D and not first:                  # ']'
            break
        first = False
        if c == 0x5B and i + 1 < n and pattern[i + 1] == 0x3A:   # '[:'
            close = pattern.find(b":]", i + 2)
            if close < 0:
                return None, start
            cls = pattern[i + 2:close].decode("ascii", "replace")
            if cls in _CLASSES:
                members |= _CLASSES[cls]
            else:
                never = True
            i = close + 2
            continue
        if c == 0x5C:                                # '\' quotes in brackets too
            i += 1
            if i >= n:
                return None, start
            c = pattern[i]
        low = c
        i += 1
        if i + 1 < n and pattern[i] == 0x2D and pattern[i + 1] != 0x5D:   # a-z
            high = pattern[i + 1]
            i += 2
            if high == 0x5C:
                if i >= n:
                    return None, start
                high = pattern[i]
                i += 1
            members.update(range(low, high + 1))
        else:
            members.add(low)
    if never:
        return _NEVER.pattern, i + 1
    return _byte_class(members, negate), i + 1


def fnmatch_regex(pattern):
    """A compiled regex that fullmatches what glibc's ``fnmatch(pattern,
    name, 0)`` matches in the C locale: ``*`` and ``?`` match '/' and a
    leading '.', '\\' quotes, ``[...]`` with ``!``/``^``, ranges and
    ``[:class:]``.  Collating symbols (``[.x.]``, ``[=x=]``) are taken
    literally.  dpkg and debsums (File::FnMatch) both call fnmatch with
    no flags; in another locale glibc may treat a multibyte character as
    one for ``?``.
    """
    out = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:                                # '*'
            while i < n and pattern[i] == 0x2A:
                i += 1
            out.append(b".*")
            continue
        if c == 0x3F:                                # '?'
            out.append(b".")
        elif c == 0x5C:                              # '\'
            i += 1
            if i >= n:                               # "Trailing \ loses."
                return _NEVER
            out.append(re.escape(pattern[i:i + 1]))
        elif c == 0x5B:                              # '['
            regex, nxt = _bracket(pattern, i)
            if regex is not None:
                out.append(regex)
                i = nxt
                continue
            out.append(re.escape(b"["))
        else:
            out.append(re.escape(pattern[i:i + 1]))
        i += 1
    return re.compile(b"".join(out), re.S)


# --- dpkg's path filters ------------------------------------------------------

class PathFilters:
    """dpkg's ``path-exclude``/``path-include`` options, in the order dpkg
    applies them.  ``rules`` holds ``(kind, pattern, file, line)``.
    """

    def __init__(self, rules=()):
        self.rules = list(rules)
        self._compiled = [(kind == "exclude", fnmatch_regex(pattern))
                          for kind, pattern, _file, _line in self.rules]

    def excluded(self, path):
        """True when dpkg would not have unpacked the regular file ``path``
        (logical, bytes): the last option whose pattern matches decides
        (``filter_should_skip``).  dpkg's extra rule that keeps directories
        and symlinks an include pattern lies below does not apply to the
        regular files md5sums lists.
        """
        for exclude, regex in reversed(self._compiled):
            if regex.fullmatch(path):
                return exclude
        return False


_CFG_OPTION = re.compile(rb"[A-Za-z0-9-]*")
_CFG_NAME_OK = re.compile(rb"[A-Za-z0-9_-]+\Z")


def _cfg_files(settings):
    """dpkg's configuration files in the order dpkg reads them
    (``dpkg_options_load``): ``dpkg.cfg.d/*`` whose names use only
    letters, digits, '_' and '-' (``valid_config_filename``) in sorted
    order, then ``dpkg.cfg``.  debsums' glob also takes names such as
    ``foo.conf`` that dpkg ignores; dpkg's rule decides what was
    unpacked.  ``~/.dpkg.cfg`` is left out: it is the file of whoever ran
    dpkg, which systraq cannot know.
    """
    directory = os.path.join(settings.dpkg_cfg_dir, b"dpkg.cfg.d")
    try:
        names = sorted(name for name in os.listdir(directory)
                       if _CFG_NAME_OK.match(name))
    except FileNotFoundError:
        names = []
    except OSError as exc:
        raise ConfigError.single(_name(directory), None,
                                 f"cannot read: {exc.strerror}") from None
    files = [os.path.join(directory, name) for name in names]
    files.append(os.path.join(settings.dpkg_cfg_dir, b"dpkg.cfg"))
    return files


def load_path_filters(settings):
    """The ``PathFilters`` of dpkg's configuration below ``settings``' root.

    Lines are read as dpkg reads them (``dpkg_options_load_file``):
    trailing blanks dropped, '#' comments, the option name, one separator
    character, an optional '=', blanks, and a value that may be quoted.
    Other options are ignored.  A path option without a value or with
    unbalanced quotes makes dpkg itself fail, and raises ConfigError here.
    """
    rules = []
    problems = []
    for path in _cfg_files(settings):
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except (FileNotFoundError, IsADirectoryError):
            continue
        except OSError as exc:
            raise ConfigError.single(_name(path), None,
                                     f"cannot read: {exc.strerror}") from None
        for number, line in enumerate(data.split(b"\n"), 1):
            line = line.rstrip(b" \t\r\f\v")
            if not line or line.startswith(b"#"):
                continue
            option = _CFG_OPTION.match(line).group()
            if option not in (b"path-exclude", b"path-include"):
                continue
            value = line[len(option) + 1:]
            if len(line) == len(option):
                problems.append((_name(path), number,
                                 f"'{option.decode()}' needs a value"))
                continue
            if value.startswith(b"="):
                value = value[1:]
            value = value.lstrip(b" \t\n\r\f\v")
            if value[:1] in (b'"', b"'"):
                if value[-1:] != value[:1]:
                    problems.append((_name(path), number,
                                     f"unbalanced quotes in '{escape(line)}'"))
                    continue
                value = value[1:-1]
            kind = option[len(b"path-"):].decode()
            rules.append((kind, value, _name(path), number))
    if problems:
        raise ConfigError(problems)
    return PathFilters(rules)


# --- the status file ------------------------------------------------------------

def _line_of(data, offset):
    return data.count(b"\n", 0, offset) + 1


# A field name as apt's TagSection::Scan finds it: from the start of a
# line that does not start with white space up to the next colon, which
# memchr() looks for beyond the end of the line.  Where such a name is not
# UTF-8, python-apt 2.6's TagSection.keys() crashes the interpreter (a
# NULL from the failed decoding goes into its list), so such a file must
# not reach TagFile.  The hostile-input tests found both the plain case
# and names that run over several lines to a colon, and (python-apt 3.0
# in trixie crashes the same way) a name that starts with a carriage
# return: only a space or a tab starts a continuation line for apt.
_FIELD_NAME = re.compile(rb"(?:\A|\n)([^ \t\n][^:]*)")


def _check_field_names(data, file):
    """Raise DatabaseError for a field name that is not UTF-8."""
    if data.isascii():
        return
    for match in _FIELD_NAME.finditer(data):
        name = match.group(1)
        if name.isascii():
            continue
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            raise DatabaseError(file, _line_of(data, match.start(1)), "field name is "
                                f"not UTF-8: '{escape(name)}'") from None


def _parse_conffiles(value, where):
    """The Conffiles field ``value`` (bytes) as a dict path -> Conffile.

    Parsed from the end of each line as dpkg's ``f_conffiles`` does, so a
    path may hold spaces: ``PATH HASH [obsolete] [remove-on-upgrade]``.
    Raises DatabaseError for a line dpkg rejects; unknown hash words are
    kept, with ``md5`` None.
    """
    result = {}
    for raw in value.split(b"\n"):
        line = raw.lstrip(b" ")
        if not line:
            continue
        words = line.rsplit(b" ", 1)
        flags = set()
        if len(words) == 2 and words[1] == b"remove-on-upgrade":
            flags.add("remove-on-upgrade")
            words = words[0].rsplit(b" ", 1)
        if len(words) == 2 and words[1] == b"obsolete":
            flags.add("obsolete")
            words = words[0].rsplit(b" ", 1)
        if len(words) != 2 or not words[0] or not words[1]:
            raise DatabaseError(*where, "malformed line in Conffiles: "
                                f"'{escape(line)}'")
        path = normalize(words[0])
        if path is None or path == b"/":
            raise DatabaseError(*where, "root or empty directory listed as a "
                                f"conffile: '{escape(line)}'")
        digest = words[1].decode("ascii", "replace")
        if digest == NEWCONFFILE:
            flags.add("newconffile")
        md5 = digest if _MD5.match(digest) else None
        result[path] = Conffile(md5, frozenset(flags), digest)
    return result


def _text(section, field):
    value = section.get(field)
    if value is None:
        return ""
    try:
        return value.decode("ascii").strip()
    except UnicodeDecodeError:
        return None


def read_status(settings):
    """Every stanza of ``ADMINDIR/status`` as a Package, in file order.

    Raises DatabaseError, naming the file and the line where the stanza
    starts, for what dpkg would refuse: a stanza that cannot be parsed
    (a truncated file), no Package or Status field, an unknown Status
    word, no Version for a package that has files, a Multi-Arch value or
    name dpkg does not know.
    """
    path = os.path.join(settings.dpkg_admindir, b"status")
    file = _name(path)
    packages = []
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise DatabaseError(file, None, "no such file") from None
    except OSError as exc:
        raise DatabaseError(file, None, f"cannot read: {exc.strerror}") from None
    with handle:
        # One read for line numbers in messages, and the same bytes for
        # TagFile: dpkg may replace the file meanwhile.
        data = handle.read()
        if data and not data.endswith(b"\n"):
            raise DatabaseError(file, _line_of(data, len(data)),
                                "file ends in the middle of a line (truncated?)")
        _check_field_names(data, file)
        handle.seek(0)
        tags = apt_pkg.TagFile(handle, bytes=True)
        start = counted = 0
        line = 1
        while True:
            try:
                if not tags.step():
                    break
            except (apt_pkg.Error, SystemError) as exc:
                raise DatabaseError(file, _line_of(data, start),
                                    f"cannot parse this entry: {exc}") from None
            section = tags.section
            here = start
            start = tags.offset()
            keys = section.keys()
            if not keys:
                continue
            # Count lines as we go (once over the file, not once per
            # stanza); a stanza may follow several blank lines.
            line += data.count(b"\n", counted, here)
            counted = here
            while data[here:here + 1] == b"\n":
                here += 1
            where = (file, line + here - counted)
            packages.append(_package(section, keys, where))
    return packages


def _package(section, keys, where):
    for key in keys:
        if not key or any(ch in key for ch in " \t\n"):
            raise DatabaseError(*where, "malformed line in this entry")
    name = _text(section, "Package")
    if name == "":
        raise DatabaseError(*where, "entry without a Package field")
    if name is None or not _NAME.match(name):
        shown = escape(section.get("Package"))
        raise DatabaseError(*where, f"invalid package name '{shown}'")
    status = _text(section, "Status")
    if not status:
        raise DatabaseError(*where, f"{name}: no Status field")
    words = status.split()
    if (len(words) != 3 or words[0] not in _WANTS or words[1] not in _EFLAGS
            or words[2] not in _STATES):
        raise DatabaseError(*where, f"{name}: invalid Status '{status}'")
    want, eflag, state = words
    version = _text(section, "Version")
    arch = _text(section, "Architecture")
    multi_arch = _text(section, "Multi-Arch") or "no"
    if version is None or arch is None:
        raise DatabaseError(*where, f"{name}: Version or Architecture is not ASCII")
    if state not in ("not-installed", "half-installed") and not version:
        raise DatabaseError(*where, f"{name}: no Version field")
    if arch and not _ARCH.match(arch):
        raise DatabaseError(*where, f"{name}: invalid Architecture '{arch}'")
    if multi_arch not in _MULTI_ARCH:
        raise DatabaseError(*where, f"{name}: invalid Multi-Arch '{multi_arch}'")
    if multi_arch == "same" and arch in ("", "all"):
        raise DatabaseError(*where, f"{name}: Multi-Arch: same with "
                            f"architecture '{arch}'")
    value = section.get("Conffiles")
    conffiles = _parse_conffiles(value, where) if value else {}
    return Package(name, arch, version, multi_arch, want, eflag, state,
                   conffiles, line=where[1])


# --- diversions --------------------------------------------------------------------

def read_diversions(settings):
    """``ADMINDIR/diversions`` as a dict: source path -> Diversion.

    Records are three lines (``ensure_diversions``): the diverted path,
    where it goes, and the diverting package or ':' for a local
    diversion.  A missing file means no diversions.  A record cut short,
    or two diversions of one path (dpkg: "conflicting diversions"),
    raises DatabaseError naming the line.
    """
    path = os.path.join(settings.dpkg_admindir, b"diversions")
    data = _read(path, missing_ok=True)
    if not data:
        return {}
    file = _name(path)
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if len(lines) % 3:
        first = len(lines) - len(lines) % 3 + 1
        raise DatabaseError(file, first, "diversion record is cut short: "
                            "a record is three lines (from, to, package)")
    result = {}
    targets = set()
    for index in range(0, len(lines), 3):
        number = index + 1
        source = normalize(lines[index])
        target = normalize(lines[index + 1])
        owner = lines[index + 2].decode("ascii", "replace")
        if source is None or target is None or not owner:
            raise DatabaseError(file, number, "empty line in a diversion record")
        if source in result or source in targets or target in result \
                or target in targets:
            raise DatabaseError(file, number, "conflicting diversions involving "
                                f"'{escape(source)}' or '{escape(target)}'")
        result[source] = Diversion(source, target, None if owner == ":" else owner)
        targets.add(target)
    return result


# --- stat overrides ----------------------------------------------------------------

class StatOverride(NamedTuple):
    """One line of ``ADMINDIR/statoverride``: what dpkg gives ``path``
    instead of the owner, group and mode its package ships.

    ``owner`` and ``group`` are as written: a name, or ``#ID``;
    ``mode`` the permission bits (an int).
    """

    owner: str
    group: str
    mode: int
    path: bytes


def read_statoverrides(settings):
    """``ADMINDIR/statoverride`` as a dict logical path -> StatOverride.

    Lines are ``OWNER GROUP MODE PATH`` (dpkg-statoverride(1); dpkg's
    ``statdb.c`` splits on single spaces and takes the rest of the line
    as the path).  A missing file means no overrides.  A line dpkg would
    refuse raises DatabaseError naming it: dpkg itself stops there.
    """
    path = os.path.join(settings.dpkg_admindir, b"statoverride")
    data = _read(path, missing_ok=True)
    if not data:
        return {}
    file = _name(path)
    result = {}
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    for number, line in enumerate(lines, 1):
        parts = line.split(b" ", 3)
        if len(parts) != 4 or not all(parts):
            raise DatabaseError(file, number, "not OWNER GROUP MODE PATH")
        owner, group, mode, target = parts
        try:
            bits = int(mode, 8)
        except ValueError:
            bits = -1
        if not 0 <= bits <= 0o7777:
            raise DatabaseError(file, number, f"bad mode '{escape(mode)}'")
        logical = normalize(target)
        if logical is None:
            raise DatabaseError(file, number, "empty path")
        result[logical] = StatOverride(owner.decode("utf-8", "replace"),
                                       group.decode("utf-8", "replace"), bits, logical)
    return result


# --- the info database ------------------------------------------------------------

def read_info_format(settings):
    """The layout of ``info/`` (``pkg_infodb_get_format``): 0 without a
    ``format`` file, its number otherwise, one more while an upgrade of
    the layout is under way (``format.new`` exists).
    """
    path = os.path.join(settings.dpkg_admindir, b"info", b"format")
    data = _read(path, missing_ok=True)
    if data is None:
        fmt = INFODB_LEGACY
    else:
        match = re.match(rb"\s*(\d+)", data)
        if not match:
            raise DatabaseError(_name(path), 1, "corrupt info database format file")
        fmt = int(match.group(1))
    if os.path.exists(path + b".new"):
        fmt += 1
    if fmt > INFODB_MULTIARCH:
        raise DatabaseError(_name(path), 1, f"info database format ({fmt}) is "
                            "too new for this systraq")
    return fmt


def _parse_sums(data, file, problems):
    """A md5sums file's bytes as a dict logical path -> hex digest.

    The strict form both dpkg and debsums accept: 32 lowercase hex
    digits, two spaces, a path.  Anything else, and a last line without
    its newline (a truncated file may have lost part of the path), is
    added to ``problems`` and skipped.
    """
    # The fast path, all at C speed through map() (a regex findall and a
    # dict comprehension took half as long again): every line is 32
    # lowercase hex digits, two spaces and a path that needs none of
    # dpkg's normalisation (a leading '/' or './', a trailing '/').
    lines = data.split(b"\n")
    if not lines.pop():
        if not lines:
            return {}
        digests = list(map(_DIGEST, lines))
        if (min(map(len, lines)) > 34 and set(map(_SEPARATOR, lines)) == {b"  "}
                and not b"".join(digests).translate(None, b"0123456789abcdef")
                and b"  /" not in data and b"  ./" not in data
                and b"/\n" not in data):
            return dict(zip(map(b"/".__add__, map(_PATH, lines)),
                            map(bytes.decode, digests)))
    sums = {}
    lines = data.split(b"\n")
    last = lines.pop()
    for number, line in enumerate(lines, 1):
        path = normalize(line[34:]) if len(line) > 34 else None
        if (line[32:34] != b"  " or not _MD5_BYTES.match(line[:32])
                or path is None):
            problems.append((file, number, f"invalid md5sums line, skipped: "
                             f"'{escape(line)}'"))
            continue
        sums[path] = line[:32].decode()
    if last:
        problems.append((file, len(lines) + 1, "no newline at the end of the "
                         f"file (truncated?), line skipped: '{escape(last)}'"))
    return sums


def _parse_list(data, file, problems, quick=False):
    """A ``.list`` file's bytes as a set of logical paths (dpkg's
    ``ensure_packagefiles_available``).  Empty lines and an unterminated
    last line are reported and skipped.

    ``quick`` skips the normalisation of lines dpkg never writes (no
    leading '/', '//' or '/./', a trailing '/'): the set may then hold
    such a line as it is, so it is exact for every path it contains and
    may lack a path only such a line names.  Its tests cost more than
    building the set (see Database._plan).
    """
    # Substring tests run at C speed, unlike a regex search over every
    # byte; they send the files that may hold an odd line to the slow path.
    if data.endswith(b"\n") and (quick or (
            data.startswith(b"/")
            and data.count(b"\n/") == data.count(b"\n") - 1
            and b"/\n" not in data and b"\n//" not in data
            and b"\n/./" not in data and not data.startswith((b"//", b"/./")))):
        files = set(data.split(b"\n"))
        files.discard(b"")
        return files
    files = set()
    lines = data.split(b"\n")
    last = lines.pop()
    for number, line in enumerate(lines, 1):
        path = normalize(line)
        if path is None:
            problems.append((file, number, "empty file name, skipped"))
            continue
        files.add(path)
    if last:
        problems.append((file, len(lines) + 1, "no newline at the end of the "
                         f"file (truncated?), line skipped: '{escape(last)}'"))
    return files


# --- the database ---------------------------------------------------------------------

class Database:
    """dpkg's database below ``settings``' root, as ``dpkg --verify`` sees it.

    Loading reads the status file, the diversions, ``info/format`` and
    dpkg's path filters; md5sums and ``.list`` files are read on first
    use and kept.  ``problems`` collects ``(file, line, message)`` for
    everything reported and skipped so far.
    """

    def __init__(self, settings):
        self.settings = settings
        self.info_dir = os.path.join(settings.dpkg_admindir, b"info")
        self.info_format = read_info_format(settings)
        self.packages = read_status(settings)
        self.diversions = read_diversions(settings)
        self.filters = load_path_filters(settings)
        self.statoverrides = read_statoverrides(settings)
        self.problems = []
        self._sums = {}
        self._files = {}
        self._quick = {}
        self._owners = None
        # dpkg's own architecture is the native one: dpkg is always
        # installed for it.  In a tree without dpkg, no name is qualified
        # as foreign.
        native = [p.arch for p in self.packages
                  if p.name == "dpkg" and p.state in ON_DISK_STATES]
        self.native_arch = native[0] if native else None
        seen = {}
        status = _name(os.path.join(settings.dpkg_admindir, b"status"))
        for package in self.packages:
            if package.multi_arch == "same":
                package.key = f"{package.name}:{package.arch}"
            elif (self.native_arch and package.arch
                  and package.arch not in (self.native_arch, "all")):
                package.key = f"{package.name}:{package.arch}"
            if (package.multi_arch == "same"
                    and self.info_format >= INFODB_MULTIARCH):
                package.info_name = f"{package.name}:{package.arch}"
            ident = (package.name, package.arch)
            if ident in seen:
                raise DatabaseError(status, package.line, f"{package.key} is listed twice "
                                    f"(first on line {seen[ident]})")
            seen[ident] = package.line
            for path, conffile in package.conffiles.items():
                if conffile.md5 is None and conffile.hash not in _NO_DIGEST:
                    self.problems.append((
                        status, package.line, f"{package.key}: conffile "
                        f"{escape(path)} has an unknown hash '{conffile.hash}'; "
                        "only its existence can be checked"))

    # -- packages --

    def installed(self, states=ON_DISK_STATES):
        """The packages in one of ``states``, sorted by name and architecture."""
        return sorted((p for p in self.packages if p.state in states),
                      key=lambda p: (p.name, p.arch))

    def find(self, names, states=ON_DISK_STATES):
        """The installed packages ``names`` name, in that order, each once.

        A name is ``NAME`` or ``NAME:ARCH`` (dpkg lowercases names).  A bare
        name that several installed architectures share is ambiguous, as
        for dpkg.  Raises UnknownPackages listing every name that matches
        no installed package.
        """
        installed = self.installed(states)
        result = []
        unknown = []
        ambiguous = []
        for raw in names:
            spec = raw.strip().lower()
            name, _, arch = spec.partition(":")
            if arch:
                found = [p for p in installed if p.name == name and p.arch == arch]
            else:
                found = [p for p in installed if p.name == name]
            if not found:
                unknown.append(raw)
            elif len(found) > 1:
                ambiguous.append(f"{raw} (one of {', '.join(p.key for p in found)})")
            elif found[0] not in result:
                result.append(found[0])
        if ambiguous:
            raise UsageError("ambiguous package name, give the architecture: "
                             + "; ".join(ambiguous))
        if unknown:
            raise UnknownPackages(unknown)
        return result

    def info_path(self, package, ext):
        """Where ``package``'s info file ``ext`` (e.g. b"md5sums") lives."""
        return os.path.join(self.info_dir, package.info_name.encode() + b"." + ext)

    def sums(self, package):
        """``package``'s md5sums as a dict logical path -> hex digest, or
        None when it has no md5sums file (or it cannot be read, which is
        added to ``problems``).
        """
        key = id(package)
        if key not in self._sums:
            path = self.info_path(package, b"md5sums")
            try:
                with open(path, "rb") as handle:
                    data = handle.read()
            except FileNotFoundError:
                result = None
            except OSError as exc:
                self.problems.append((_name(path), None,
                                      f"cannot read: {exc.strerror}"))
                result = None
            else:
                result = _parse_sums(data, _name(path), self.problems)
            self._sums[key] = result
        return self._sums[key]

    def has_sums(self, package):
        """True when ``package`` has a md5sums file (maybe empty)."""
        return os.path.exists(self.info_path(package, b"md5sums"))

    def _read_info(self, package, ext):
        """The bytes of ``package``'s info file ``ext``; None when it does
        not exist, or cannot be read (added to ``problems``)."""
        path = self.info_path(package, ext)
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.problems.append((_name(path), None, f"cannot read: {exc.strerror}"))
            return None

    def files(self, package):
        """The logical paths ``package``'s ``.list`` names (a set), or None
        when it has none: dpkg then takes the package to have no files.
        """
        key = id(package)
        if key not in self._files:
            self._quick.pop(key, None)
            data = self._read_info(package, b"list")
            self._files[key] = (None if data is None else _parse_list(
                data, _name(self.info_path(package, b"list")), self.problems))
        return self._files[key]

    def _quick_files(self, package):
        """``files(package)``, or a set that holds only what it holds but
        may lack a path an odd line names (``_parse_list(quick=True)``)."""
        key = id(package)
        if key in self._files:
            return self._files[key]
        if key not in self._quick:
            data = self._read_info(package, b"list")
            if data is None or not data.endswith(b"\n"):
                # Missing, unreadable or truncated: the careful parse, once.
                self._files[key] = (None if data is None else _parse_list(
                    data, _name(self.info_path(package, b"list")), self.problems))
                return self._files[key]
            self._quick[key] = _parse_list(data, None, None, quick=True)
        return self._quick[key]

    def owners(self, path, states=ON_DISK_STATES):
        """The packages whose ``.list`` names the logical ``path`` (a tuple).

        What ``dpkg -S`` answers, without its diversion lines; the first
        call reads every ``.list``.
        """
        if self._owners is None:
            owners = {}
            for package in self.installed(states):
                for name in self.files(package) or ():
                    owners.setdefault(name, []).append(package)
            self._owners = owners
        return tuple(self._owners.get(path, ()))

    def divert(self, path, package):
        """Where ``package``'s file ``path`` is: diverted unless ``package``
        (any architecture) made the diversion itself.
        """
        diversion = self.diversions.get(path)
        if diversion is not None and diversion.package != package.name:
            return diversion.target
        return path

    def excluded(self, path):
        """True when dpkg's path filters kept ``path`` (bytes) off the disk."""
        return self.filters.excluded(path)

    # -- the plan --

    def plan(self, names=None, states=ON_DISK_STATES, ignore_obsolete=False,
             existence=False):
        """The files to check for ``names`` (all installed packages when
        None), as a Plan.  See the module docstring for the rules.

        ``existence`` adds, with ``md5`` None, every other path the
        package's ``.list`` names (directories, symlinks, files without a
        sum), in byte order: ``dpkg --verify`` reports any of them missing.
        """
        with _no_gc():
            return self._plan(names, states, ignore_obsolete, existence)

    def _plan(self, names, states, ignore_obsolete, existence):
        packages = (self.find(names, states) if names
                    else self.installed(states))
        items = Items()
        without_sums = []
        disowned = []
        diversions = self.diversions
        divert = self.divert
        # Items are built with tuple.__new__ (C) rather than Item() (a
        # Python-level __new__): a third of the time of a plan otherwise.
        make = tuple.__new__
        none = frozenset()
        for package in packages:
            files = self._quick_files(package)
            sums = self.sums(package)
            if sums is None:
                without_sums.append(package)
                sums = {}
            if files is None:
                self.problems.append((_name(self.info_path(package, b"list")),
                                      None, f"{package.key} has no files list; "
                                      "taken to have no files, as dpkg does"))
                continue
            conffiles = package.conffiles
            paths = sums.keys()
            if not (paths <= files and conffiles.keys() <= files):
                # A path is missing from the quick set: read the list
                # carefully before deciding that the package lost it.
                files = self.files(package)
            if (paths <= files and conffiles.keys().isdisjoint(paths)
                    and diversions.keys().isdisjoint(paths)):
                # The common case, done in C: every entry is still the
                # package's, none is a conffile, none is diverted.
                items.add_plain(package, sums)
            else:
                for path, md5 in sums.items():
                    if path in conffiles:
                        continue
                    if path not in files:
                        disowned.append((package, path))
                        continue
                    items.append(make(Item, (package, divert(path, package), md5,
                                             False, none, path)))
            for path, conffile in conffiles.items():
                flags = conffile.flags
                if "remove-on-upgrade" in flags:
                    continue
                if ignore_obsolete and "obsolete" in flags:
                    continue
                if path not in files:
                    continue
                items.append(make(Item, (package, divert(path, package),
                                         conffile.md5, True, flags, path)))
            if existence:
                # The careful set: the quick one may hold odd lines as is.
                for path in sorted(self.files(package) - paths - conffiles.keys()):
                    items.append(make(Item, (package, divert(path, package), None,
                                             False, none, path)))
            # What was read for this package is in the items now: keeping
            # every package's sums and lists as well doubled the peak
            # memory of a plan (72 MB for 890 packages).
            self._sums.pop(id(package), None)
            self._files.pop(id(package), None)
            self._quick.pop(id(package), None)
        return Plan(packages, items, without_sums, disowned, list(self.problems))


@contextlib.contextmanager
def _no_gc():
    """Pause the cyclic garbage collector while a plan is built.

    A plan creates some 100,000 tuples per 1,000 packages and none of
    them is part of a reference cycle, yet each allocation burst starts a
    collection that walks them all: a fifth of the load time here.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load(settings):
    """dpkg's database below ``settings``' root (a Database)."""
    with _no_gc():
        return Database(settings)


def plan(settings, names=None, states=ON_DISK_STATES, ignore_obsolete=False,
         existence=False):
    """Shorthand for ``load(settings).plan(...)``."""
    with _no_gc():
        return Database(settings).plan(names, states=states,
                                       ignore_obsolete=ignore_obsolete,
                                       existence=existence)
