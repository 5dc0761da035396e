# SPDX-License-Identifier: GPL-2.0-or-later
"""Change records: what a collector saw, as the spool keeps it and the report tells it.

This module owns the change record.  Every collector (snapshot, contents,
packages, the archive check, the audit, the local sums, the watcher's own
state) hands its findings to the spool as records of the kinds below, and
the report and the alerts read them back through ``load``: nothing else
turns a record into text, decides how serious it is, or what it may show.

Each kind is a class with its fields, and says of itself:

``rank``        how serious it is: CRITICAL, SERIOUS, CHANGE or MINOR (0 is
                read first), before the report's own policy (a critical
                path, set in systraq.conf) raises it;
``is_note``     whether it is news rather than a warning (a first run, a
                finding fixed, a change a package operation made);
``describe()``  the lines a person reads: one head line, then details (a
                diff, keys added and removed);
``secret``      whether it comes from the root job, whose records say
                *what* changed and never carry content: such a record is
                refused at construction if it holds a diff;
``explained``   the package operation that made the change, when the
                collector that saw it found the evidence (attribution.py):
                a dict with the operation's ``label``, ``start`` and
                ``end`` (epoch seconds) and, when a package owns the path,
                ``package``;
``during``      for a change no package explains but made while dpkg ran,
                the same dict: still a warning, but no alert.

The spool encoding is a JSON object per record (``to_dict``; ``load``
reads it back, and keeps the fields of a newer systraq it does not know,
so that nothing is dropped).  A record is also a read-only mapping of
that object: a record *is* the dict the spool keeps, with the kind's
behaviour on top, so ``record["path"]`` and ``json.dumps(record)`` work.
"""

import json

# Ranks: 0 is read first.
CRITICAL, SERIOUS, CHANGE, MINOR = 0, 1, 2, 3


class Record(dict):
    """A change record of a kind this module does not know (a newer
    systraq's): shown as its data, never dropped."""

    # The fields of the kind, beyond the common ones.
    FIELDS = ()
    COMMON = ("source", "change", "path", "time", "since", "mode", "explained", "during")

    def __init__(self, source, change, path=None, *, time=None, since=None, mode=None,
                 explained=None, during=None, **fields):
        super().__init__(source=source, change=change)
        for key, value in (("path", path), ("time", time), ("since", since), ("mode", mode),
                           ("explained", explained), ("during", during)):
            if value is not None:
                self[key] = value
        for key, value in fields.items():
            if value is not None:
                self[key] = value
        self._check()

    def _check(self):
        """Refuse a record that would break the kind's rules."""

    def __repr__(self):
        return f"{type(self).__name__}({dict.__repr__(self)})"

    def to_dict(self):
        """The spool encoding: a plain JSON-serialisable dict."""
        return dict(self)

    def with_fields(self, **fields):
        """A copy with ``fields`` set (None removes one)."""
        data = dict(self)
        for key, value in fields.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        return load(data)

    # --- what every kind says ------------------------------------------------

    source = property(lambda self: self.get("source", "?"))
    change = property(lambda self: self.get("change", "?"))
    path = property(lambda self: self.get("path"))
    time = property(lambda self: self.get("time"))
    since = property(lambda self: self.get("since"))
    explained = property(lambda self: self.get("explained"))
    during = property(lambda self: self.get("during"))

    @property
    def secret(self):
        return self.get("mode") == "root" or self.source.endswith("_root")

    @property
    def rank(self):
        return CHANGE

    @property
    def is_note(self):
        return self.explained is not None

    def describe(self):
        if "text" in self:      # a kind that words itself
            return [str(self["text"])]
        return [f"{self.path or self.source}: {self.change} "
                + json.dumps({k: v for k, v in self.items()
                              if k not in ("source", "change", "path")}, sort_keys=True)]

    def line(self):
        """One line: the head of ``describe``."""
        return self.describe()[0]

    @property
    def standing_key(self):
        """What makes a standing finding (standing.py) one entry of the
        report: its source, change, path and, for an account, its line."""
        return (self.source, self.change, self.path, self.get("account"), self.get("line"))


class _RunNote(Record):
    """News about a collector's run rather than about the system."""

    @property
    def is_note(self):
        return True

    @property
    def rank(self):
        return MINOR


class Baseline(_RunNote):
    """A collector's first run: what it recorded to compare with from now on."""

    FIELDS = ("count", "adopted", "old_stat", "counts")

    def _what(self):
        what = self.source.split("_")[0]
        mode = self.get("mode")
        return f"{what} {mode}" if mode else what

    def line(self):
        if self.source == "audit":      # the audit's own wording (systraq audit)
            return (f"audit baseline: {self.get('count', '?')} setuid, setgid, world-writable "
                    "or unowned items recorded; changes are reported from now on")
        return super().line()

    def describe(self):
        count = self.get("count", 0)
        if self.source.startswith("contents"):
            text = f"{self._what()}: first run, {count} files backed up"
        else:
            text = f"{self._what()}: first run, {count} paths recorded"
        if self.get("adopted"):
            text += f" ({self['adopted']} backups of the old package taken over)"
        return [text]


class ScopeChanged(_RunNote):
    """The snapshot's lists name other paths than at its last run: how many
    it watches from now on (recorded as they are) and how many it no
    longer watches.  The edit of the list itself is a change of its own."""

    FIELDS = ("widened", "narrowed")

    def describe(self):
        if self.source == "trees":
            return [f"trees walked hourly: [check] trees or exclude changed; "
                    f"{self.get('widened', 0)} entries recorded as they are"]
        what = f"snapshot {self['mode']}" if self.get("mode") else "snapshot"
        parts = []
        if self.get("widened"):
            parts.append(f"{self['widened']} paths newly watched, recorded as they are")
        if self.get("narrowed"):
            parts.append(f"{self['narrowed']} paths no longer watched")
        return [f"{what}: the lists changed; " + ("; ".join(parts) or "no path more or fewer")]


class StateDamaged(Record):
    """A collector's state could not be read back: a failing disk, or
    tampering.  It started again from a fresh baseline."""

    FIELDS = ("detail", "count")

    @property
    def rank(self):
        return CRITICAL

    @property
    def is_note(self):
        return False

    def line(self):
        if self.source == "audit":      # the audit's own wording (systraq audit)
            return (f"audit state was damaged ({self.get('detail', '?')}): "
                    f"a new baseline of {self.get('count', '?')} items was recorded")
        return super().line()

    def describe(self):
        what = self.source.split("_")[0]
        if self.get("mode"):
            what += f" {self['mode']}"
        return [f"{what}: state damaged (a failing disk, or tampering), started "
                f"again from a fresh baseline ({self.get('detail', '?')})"]


_KINDS = {"f": "file", "d": "directory", "l": "symlink", "p": "FIFO", "s": "socket",
          "c": "character device", "b": "block device"}


def kind_name(letter):
    """The word for a file type letter of the snapshot (f d l p s c b)."""
    return _KINDS.get(letter, letter or "?")


class FileChange(Record):
    """What the snapshot saw change about one path: added, removed,
    content (digest), type, target (a symlink's), mode, owner or group.
    Never content, never a digest.  ``mode`` is the permission bits of an
    added path or of what replaced it (added, type); otherwise the
    snapshot's mode (pub or root), as the spool has always kept it."""

    FIELDS = ("kind", "owner", "group", "before", "after", "size_before", "size_after",
              "target", "flags", "old_stat")

    @property
    def secret(self):
        # The root snapshot's records name what changed, never content:
        # they may be shown; there is nothing in them to keep secret.
        return False

    @property
    def rank(self):
        if any(flag.endswith("gained") for flag in self.get("flags", ())):
            return SERIOUS
        return CHANGE

    def describe(self):
        change = self.change
        if change == "added":
            fact = f"new {kind_name(self.get('kind'))}, "
            if self.get("kind") != "l":
                fact += f"mode {self.get('mode')}, "
            fact += f"{self.get('owner')}:{self.get('group')}"
        elif change == "removed":
            fact = f"{kind_name(self.get('kind'))} removed"
        elif change == "content":
            fact = "content changed"
            if "size_before" in self:
                fact += f" ({self['size_before']} -> {self['size_after']} bytes)"
        elif change == "type":
            fact = f"{kind_name(self.get('before'))} replaced by a {kind_name(self.get('after'))}, "
            if self.get("after") != "l":     # a symlink's mode means nothing
                fact += f"mode {self.get('mode')}, "
            fact += f"{self.get('owner')}:{self.get('group')}"
        elif change == "target":
            fact = f"symlink retargeted {self['before']} -> {self['after']}"
        elif "before" in self:
            fact = f"{change} {self['before']} -> {self['after']}"
        else:
            fact = change
        if "target" in self:
            fact += f", pointing to {self['target']}"
        if self.get("flags"):
            fact += " [" + ", ".join(self["flags"]) + "]"
        return [f"{self.path}: {fact}"]


class TreeChange(FileChange):
    """What the hourly walk of ``[check] trees`` saw change about one
    entry (trees.py): the snapshot's facts, from metadata alone (content
    told by size and modification time), plus a file replaced by another
    (a new inode), a file whose inode change time alone moved, and how
    many entries a directory that appeared or vanished holds."""

    FIELDS = FileChange.FIELDS + ("below", "package", "sums")

    @property
    def rank(self):
        if self.get("sums") in ("differ", "moved"):
            return SERIOUS
        return super().rank

    def describe(self):
        change = self.change
        if change == "replaced":
            lines = [f"{self.path}: replaced by another file, same size and "
                     "modification time"]
        elif change == "rewritten":
            lines = [f"{self.path}: inode changed, with its size, times, mode and owner "
                     "as they were (an attribute set, or content rewritten with its "
                     "times set back)"]
        else:
            lines = super().describe()
        if self.get("below"):
            below = self["below"]
            lines[0] += f" ({below} entr{'y' if below == 1 else 'ies'} below)"
        package = self.get("package", "?")
        if self.get("sums") == "match":
            lines[0] += f"; content as the last package check read it, matching {package}'s sums"
        elif self.get("sums") == "differ":
            lines[0] += f"; differs from {package}'s sums"
        elif self.get("sums") == "moved":
            lines[0] += (f"; matches {package}'s sums, but not what the last package check "
                         "read (were the sums edited too?)")
        return lines


_CONTENT_WORDS = {"content": "content changed", "created": "new file", "removed": "removed",
                  "symlink": "now a symlink", "type": "no longer a regular file",
                  "keys": "authorized keys changed"}


class ContentChange(Record):
    """What the contents job saw change in a file's content: a unified
    diff (world-readable files only), keys added and removed
    (authorized_keys), or a notice (removed, replaced, binary, large,
    secret)."""

    FIELDS = ("diff", "cut", "keys", "target", "type", "perm", "binary", "size",
              "size_before", "note")

    def _check(self):
        if self.secret and "diff" in self:
            raise ValueError(f"a record of the root job holds a diff: {self.path}")

    @property
    def rank(self):
        return SERIOUS if self.change == "world-readable secret" else CHANGE

    def describe(self):
        change = self.change
        head = f"{self.path}: {_CONTENT_WORDS.get(change, change)}"
        if "target" in self:
            head += f", pointing to {self['target']}"
        if "type" in self:
            head += f" ({self['type']})"
        if "perm" in self:
            head += f" (mode {self['perm']})"
        if self.get("binary"):
            head += f", binary file: {self['size']} bytes"
        if "note" in self:
            head += f" ({self['note']})"
        lines = [head]
        lines += ["  " + key for key in self.get("keys", ())]
        if "diff" in self:
            lines += self["diff"].rstrip("\n").split("\n")
            if self.get("cut"):
                lines.append(f"[{self['cut']} more lines not shown]")
        return lines


_PACKAGE_WORDS = {"changed": "differs from its package's sums",
                  "missing": "missing, installed by its package",
                  "unexplained": "changed with no package operation to explain it",
                  "critical conffile": "critical conffile edited",
                  "fixed": "matches its package again",
                  "without sums": "dpkg has no md5sums for it"}
# How serious each package finding is; without sums is an old gap, not
# an event.
_PACKAGE_RANKS = {"changed": SERIOUS, "missing": SERIOUS, "unexplained": SERIOUS,
                  "critical conffile": SERIOUS, "without sums": MINOR}


class PackageFinding(Record):
    """What ``systraq packages`` (or its check against the archive) found
    about one package file, or one package: a file that differs from its
    package, is missing, changed with no operation to explain it, a
    package without sums; or news: fixed, explained."""

    FIELDS = ("package", "version", "detail", "label", "first_seen", "warning", "trusted")

    @property
    def rank(self):
        return _PACKAGE_RANKS.get(self.change, SERIOUS)

    @property
    def standing_key(self):
        # One entry per path with the spool's records of that path.
        return ("path", self.path) if self.path else ("package", self.get("package"))

    @property
    def is_note(self):
        return self.change in ("fixed", "explained") or super().is_note

    def describe(self):
        change = self.change
        words = _PACKAGE_WORDS.get(change, change)
        if self.path:
            text = f"{self.path}: {words} ({self.get('package', '?')})"
        else:
            text = f"package {self.get('package', '?')}: {words}"
        if self.get("label"):
            text += f" - {self['label']}"
        elif self.get("detail") and change not in ("without sums", "fixed", "unexplained",
                                                  "missing"):
            text += f" - {self['detail']}"
        # The day it was first seen is the report entry's to show.
        return [text]


# The audit's findings, by how serious they are.
_AUDIT_RANKS = {"uid 0": CRITICAL, "empty password": CRITICAL, "setuid added": CRITICAL,
                "setgid added": CRITICAL, "capabilities added": CRITICAL,
                "capabilities changed": CRITICAL, "world-writable added": CHANGE,
                "unowned added": CHANGE, "shell startup": CHANGE,
                "unpackaged added": SERIOUS, "flags added": SERIOUS, "acl added": SERIOUS,
                "acl changed": SERIOUS}


class AuditFinding(Record):
    """What the root audit found: an account with uid 0 or an empty
    password, a shell start-up file with a dangerous umask or PATH, an
    item of the setuid/setgid/world-writable/unowned inventory added,
    changed or removed."""

    FIELDS = ("account", "line", "text", "type", "owner", "group", "below",
              "mode_before", "owner_before", "group_before", "capabilities",
              "capabilities_before", "named", "content", "flags", "attributes", "acl",
              "acl_before")

    @property
    def secret(self):
        # Names and modes only, never content.
        return False

    @property
    def rank(self):
        return _AUDIT_RANKS.get(self.change, CHANGE)

    @property
    def is_note(self):
        # What went away from the inventory is good news.
        return self.change.endswith(" removed") or super().is_note

    def _flags(self):
        """What a "flags added" finding set: chattr's flags, security
        attributes Debian does not set."""
        said = []
        if self.get("flags") or not self.get("attributes"):
            said.append(f"{self.get('flags') or 'immutable or append-only'} flag set (chattr)")
        if self.get("attributes"):
            said.append("security attribute " + ", ".join(self["attributes"]) + " set")
        return "; ".join(said)

    def _who(self, suffix=""):
        return f"{self.get('owner' + suffix, '?')}:{self.get('group' + suffix, '?')}"

    def line(self):
        """The audit's own one-line wording (``systraq audit``)."""
        if "text" in self:
            return str(self["text"])
        change = self.change
        path = self.path or "?"
        kind = self.get("type", "file")
        what = f"{self.get('mode', '?')} {self._who()}"
        if "capabilities" in self:
            what = f"{self['capabilities']}; {what}"
        if change in ("setuid added", "setgid added"):
            return f"new {change.split()[0]} file: {path} ({what})"
        if change == "capabilities added":
            return f"new file with capabilities: {path} ({what})"
        if change in ("setuid removed", "setgid removed"):
            return (f"no longer a {change.split()[0]} file (removed, or the bit cleared): "
                    f"{path} (was {what})")
        if change == "capabilities removed":
            return f"no longer has file capabilities (removed, or cleared): {path} (was {what})"
        if change == "capabilities changed" and "capabilities_before" in self:
            return (f"file capabilities changed: {path}: {self['capabilities_before']} -> "
                    f"{self.get('capabilities', 'none')} ({self.get('mode', '?')} "
                    f"{self._who()})")
        if change == "flags added":
            return f"{self._flags()}: {path} ({what})"
        if change == "acl added":
            return f"ACL grants {self.get('acl', '?')}: {kind} {path} ({what})"
        if change == "acl changed":
            return (f"ACL changed: {kind} {path}: {self.get('acl_before', '?')} -> "
                    f"{self.get('acl', '?')} ({what})")
        if change == "unpackaged added":
            kind_of = self.get("named")
            below = self.get("below")
            more = f", and {below} more below it" if below else ""
            return (f"no package ships this {kind}: {path}"
                    + (f", {kind_of}" if kind_of else "") + f" ({what}){more}")
        if change in ("world-writable added", "unowned added"):
            label = ("writable by everybody" if change.startswith("world")
                     else "owner or group has no account")
            below = self.get("below")
            more = f", and {below} more below it" if below else ""
            return f"{label}: {kind} {path} ({what}){more}"
        if change.endswith(" changed"):
            return (f"{change.split()[0]} {kind} changed: {path}: "
                    f"{self.get('mode_before', '?')} {self._who('_before')} -> {what}")
        return f"{change}: {path}"

    def describe(self):
        """As the report shows it, path first (a text the audit wrote is
        shown as it is)."""
        if "text" in self:
            return [str(self["text"])]
        text = f"{self.path or '?'}: {self.change}"
        if self.change == "unpackaged added":
            text = f"{self.path or '?'}: new {self.get('type', 'file')} no package ships"
            if self.get("named"):
                text += f", {self['named']}"
        elif self.change == "flags added":
            text = f"{self.path or '?'}: {self._flags()}"
        elif self.change == "acl added":
            text = f"{self.path or '?'}: ACL grants {self.get('acl', '?')}"
        elif self.change == "acl changed":
            text = (f"{self.path or '?'}: ACL changed {self.get('acl_before', '?')} -> "
                    f"{self.get('acl', '?')}")
        if "mode" in self:
            caps = f"{self['capabilities']}, " if "capabilities" in self else ""
            if "capabilities_before" in self and self.get("capabilities") != \
                    self["capabilities_before"]:
                caps = f"{self['capabilities_before']} -> {self.get('capabilities', 'none')}, "
            text += (f" ({caps}mode {self['mode']}, "
                     f"{self.get('owner', '?')}:{self.get('group', '?')})")
        if self.get("below"):
            text += f", and {self['below']} more below it"
        if "content" in self:
            return [text] + ["    " + line for line in str(self["content"]).rstrip("\n").split("\n")]
        return [text]


class LocalSumFinding(Record):
    """A file listed in systraq.sums (the admin's own trusted digests)
    that differs from its digest there, or is missing."""

    FIELDS = ("reason",)

    @property
    def rank(self):
        return SERIOUS if self.change in ("changed", "missing") else MINOR

    @property
    def is_note(self):
        return self.change == "fixed" or super().is_note

    def describe(self):
        if self.change == "changed":
            return [f"{self.path}: differs from its digest in systraq.sums"
                    + (f" ({self['reason']})" if self.get("reason") else "")]
        if self.change == "missing":
            return [f"{self.path}: listed in systraq.sums, missing"]
        if self.change == "fixed":
            return [f"{self.path}: matches its digest in systraq.sums again"]
        return super().describe()


class LogFinding(Record):
    """A log of [check] growing that shrank, was replaced or removed other
    than by its rotation (growing.py): sizes only, never content."""

    FIELDS = ("size_before", "size_after")

    @property
    def rank(self):
        return SERIOUS

    def describe(self):
        before = self.get("size_before", "?")
        if self.change == "shrank":
            return [f"{self.path}: log shrank from {before} to {self.get('size_after', '?')} "
                    "bytes, not by its rotation"]
        if self.change == "replaced":
            return [f"{self.path}: log replaced by another file ({self.get('size_after', '?')} "
                    f"bytes; it had {before}), not by its rotation"]
        if self.change == "removed":
            return [f"{self.path}: log removed ({before} bytes), not by its rotation"]
        return super().describe()


# Which class a spooled record is, by its source (and its change).
_SOURCES = {"snapshot": FileChange, "trees": TreeChange, "contents": ContentChange, "contents_root": ContentChange,
            "packages": PackageFinding, "archive_hook": PackageFinding, "audit": AuditFinding,
            "localsums": LocalSumFinding, "growing": LogFinding}
_COMMON_CHANGES = {"baseline": Baseline, "state damaged": StateDamaged, "scope": ScopeChanged}


def kind_of(source, change):
    """The class of a record from ``source`` with ``change``."""
    return _COMMON_CHANGES.get(change) or _SOURCES.get(source, Record)


def make(source, change, path=None, **fields):
    """A new record of the right kind."""
    return kind_of(source, change)(source, change, path, **fields)


def load(data, source=None):
    """The record a spooled JSON object ``data`` encodes (a Record is
    returned as it is).  ``source``: the source to assume when the object
    names none (an audit finding as ``systraq audit`` lists it)."""
    if isinstance(data, Record):
        return data
    fields = dict(data)
    source = fields.pop("source", source) or "?"
    change = fields.pop("change", "?")
    path = fields.pop("path", None)
    cls = kind_of(source, change)
    record = cls.__new__(cls)
    dict.__init__(record, source=source, change=change)
    if path is not None:
        record["path"] = path
    record.update(fields)
    return record


def describe(data):
    """The lines a person reads about a record (or its spooled object)."""
    return load(data).describe()
