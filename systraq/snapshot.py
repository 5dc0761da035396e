# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq snapshot``: existence, owner, mode and digest of listed files, compared with the last run.

Two modes, each with its own lists, state and lock:

pub   ``snapshot_pub.list`` and ``snapshot_pub.homelist``, plus every home
      directory itself (owner and mode, as the old ST_OPHOMES did).  Runs
      as the systraq user; only world-readable files are hashed.
root  ``snapshot_root.list`` and ``snapshot_root.homelist``.  Runs as root;
      its state lives in a directory only root can read.

A run compares what it sees with the state of the previous run and turns
every difference into a change record.  Records say *what* changed (added,
removed, content, type, symlink target, mode, owner, group); they never
hold content or a digest.

Crash safety: the run transaction (runner.py) writes the state and
spools the records as one: a change is spooled once, never lost, never
twice.

Upgrade: when the first run of a mode finds the old package's
``snapshot_{mode}.stat`` in the mode's directory, it also records what
changed since the old package last looked (see oldstat.py), with the
same commit: until the state is in place the old file stays, and a run
killed before its records were spooled finds the same ones again.
"""

import os
import stat
import time

from systraq import accounts, lists, oldstat, runner, scan, statefile
from systraq import records as records_
from systraq.errors import ConfigError
from systraq.fsutil import atomic_write, mode_directory
from systraq.pathcodec import escape, unescape
from systraq.scan import Scanner
from systraq.statefile import DamagedState

MODES = ("pub", "root")
STATE_FORMAT = 2
# How long a run waits for another run of the same mode to finish.
LOCK_WAIT = 10.0

# The homes of a list that applies where the pub job cannot enter.
CLOSED = "closed"
_LISTS = {
    "pub": (("snapshot_pub.list", "system"), ("snapshot_pub.homelist", "home")),
    "root": (("snapshot_root.list", "system"), ("snapshot_root.homelist", "home")),
}


# --- state files -------------------------------------------------------------

def state_path(settings, mode):
    return os.path.join(settings.mode_dir(mode), f"snapshot_{mode}.state".encode())


def load_records(path):
    """``(header, {path: record})`` from a snapshot state file; ``(None,
    None)`` when absent; DamagedState when it cannot be read back."""
    return statefile.load(path, STATE_FORMAT)


def load_state(path):
    """``(header, {path: Entry})``; ``(None, None)`` when absent."""
    header, records = load_records(path)
    if records is None:
        return header, None
    return header, {p: scan.decode(r) for p, r in records.items()}


def _stat_text(records, names):
    """The human-readable .stat file, one line per path as the old
    st_snapshot kept, as an iterable of chunks."""
    lines = []
    for path in sorted(records):
        e = scan.decode(records[path])
        user = names.user(e.uid)
        group = names.group(e.gid)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.mtime_ns / 1e9))
        digest = e.digest or e.note or "-"
        link = f" -> {escape(e.target)}" if e.target is not None else ""
        lines.append(f"{e.kind} {e.perm:04o} {user} {group} {e.size} {when} "
                     f"{digest.replace(' ', '_')} {escape(path)}{link}\n")
        if len(lines) >= statefile.CHUNK:
            yield "".join(lines).encode("utf-8", "surrogateescape")
            lines = []
    yield "".join(lines).encode("utf-8", "surrogateescape")


# --- comparing ---------------------------------------------------------------

def gained_flags(old_perm, new_perm, kind):
    gained = new_perm & ~(old_perm or 0)
    flags = []
    if gained & stat.S_ISUID:
        flags.append("setuid gained")
    if gained & stat.S_ISGID and kind != "d":
        flags.append("setgid gained")
    if gained & stat.S_IWOTH and kind != "l":
        flags.append("world-writable gained")
    return flags


def _who(names, uid, gid):
    return {"owner": names.user(uid), "uid": uid,
            "group": names.group(gid), "gid": gid}


def _new_thing(entry):
    """What to say of a path that appeared or changed type: a symlink's
    target (a name, not content), or the alarming bits of anything else."""
    if entry.kind == "l":
        return {"target": escape(entry.target)}
    return {"flags": gained_flags(0, entry.perm, entry.kind)}


def compare(old, new, mode, names, differ):
    """Change records for the paths ``differ`` names, whose records differ
    between two {path: record} dicts (the scanner says which)."""
    records = []

    def record(path, change, **fields):
        # An added path's (or its replacement's) "mode" is its permission
        # bits, as the spool has always kept it (records.FileChange).
        fields.setdefault("mode", mode)
        records.append(records_.make("snapshot", change, escape(path), **fields))

    for path in sorted(differ):
        before, after = old.get(path), new.get(path)
        before = scan.decode(before) if before is not None else None
        after = scan.decode(after) if after is not None else None
        if before is None:
            record(path, "added", kind=after.kind, mode=f"{after.perm:04o}",
                   **_who(names, after.uid, after.gid), **_new_thing(after))
            continue
        if after is None:
            record(path, "removed", kind=before.kind)
            continue
        if before.kind != after.kind:
            # Something else stands there now: one record saying what, whose
            # and with which permissions, rather than a mode change on top.
            record(path, "type", before=before.kind, after=after.kind,
                   mode=f"{after.perm:04o}", **_who(names, after.uid, after.gid),
                   **_new_thing(after))
            continue
        if after.kind == "f":
            if (before.digest and after.digest and before.digest != after.digest):
                fields = {"size_before": before.size, "size_after": after.size} if mode == "pub" else {}
                record(path, "content", **fields)
        elif after.kind == "l" and before.target != after.target:
            record(path, "target", before=escape(before.target), after=escape(after.target))
        if before.perm != after.perm and after.kind != "l":
            record(path, "mode", before=f"{before.perm:04o}", after=f"{after.perm:04o}",
                   flags=gained_flags(before.perm, after.perm, after.kind))
        if before.uid != after.uid:
            record(path, "owner", before=names.user(before.uid),
                   after=names.user(after.uid))
        if before.gid != after.gid:
            record(path, "group", before=names.group(before.gid),
                   after=names.group(after.gid))
    return records


# --- a run -------------------------------------------------------------------

def _lists_of(mode):
    """``(list file name, kind, homes)`` of what mode ``mode`` reads;
    ``homes`` None means every home, "closed" the homes the pub job
    cannot enter.  The pub home list names shell start-up files: in a home
    the pub job cannot enter (a 0700 home, /root) the root job looks at
    them, without showing content."""
    found = [(name, kind, None) for name, kind in _LISTS[mode]]
    if mode == "root":
        found.append(("snapshot_pub.homelist", "home", CLOSED))
    return found


def scope_of(settings, config, mode):
    """What mode ``mode`` is told to watch: the entries of its lists and
    the exclusions, as a JSON-able dict.  The state's header keeps it, so
    that a path the lists name only since the last run is recorded
    without a warning (``_scope_changes``)."""
    found = []
    for name, kind, homes in _lists_of(mode):
        try:
            entries = lists.parse(settings.list_file(name), kind)
        except lists.MissingListFile:
            continue  # an absent list watches nothing; status names it
        found.append([name, kind, homes, [escape(e.pattern) for e in entries]])
    private = config.get("snapshot", "private_under") if mode == "root" else ()
    return {"lists": found, "exclude": [escape(x) for x in config.exclude],
            "private": [escape(x) for x in private]}


class Paths:
    """What a scope names now.  ``paths`` and ``walk``: what the lists name
    (Scanner.records' arguments), ``prune``: what no walk lists or enters;
    ``private``: the directories of [snapshot] private_under, walked too,
    of which only what others may not read is kept (``kept``)."""

    def __init__(self, paths, walk, prune, private):
        self.paths, self.walk, self.prune, self.private = paths, walk, prune, private

    def listed(self, path):
        """Whether the lists name ``path`` (itself, or a directory above it)."""
        if under(path, self.prune):
            return False
        return path in self.paths or under(path, self.walk)

    def covers(self, path):
        """Whether the snapshot of this scope looks at ``path``."""
        return self.listed(path) or (under(path, self.private) and not under(path, self.prune))

    def kept(self, records, old):
        """``records`` ({path: record}) without what lies below a private
        top only and others may read: that is the contents job's and the
        pub snapshot's to tell, with content.  What the last state ``old``
        held stays: a secret made readable to all is a mode change.
        (Hashing the rest all the same costs little: /etc held 2.2 MB
        others may read on a bookworm host.)"""
        if not self.private:
            return records
        old = old or {}
        return {path: record for path, record in records.items()
                if path in old or not under(path, self.private) or self.listed(path)
                or not _open_to_all(path, record, records)}


def _open_to_all(path, record, records):
    """Whether others may read ``path`` (its ``record``): it is readable by
    all, and so is every directory above it that ``records`` hold (a 0644
    file in a 0750 directory is not)."""
    if scan.is_unreadable(record) or not scan.decode(record).perm & stat.S_IROTH:
        return False
    parent = os.path.dirname(path)
    while parent != path:
        above = records.get(parent)
        if above is None:
            return True
        if scan.is_unreadable(above) or not scan.decode(above).perm & stat.S_IXOTH:
            return False
        path, parent = parent, os.path.dirname(parent)
    return True


def paths_of(settings, scope, mode):
    """What ``scope`` (scope_of) names now: a Paths."""
    paths, walk, prune = set(), set(), set()
    exclude = [unescape(x) for x in scope["exclude"]]
    for _name, kind, homes, patterns in scope["lists"]:
        if homes == CLOSED:
            homes = accounts.closed_homes(settings)
            if not homes:
                continue
        entries = [lists.Entry(unescape(p), 0) for p in patterns]
        found = lists.expand(settings, entries, kind, exclude, walk=False, homes=homes)
        paths.update(found.paths)
        walk.update(found.walk)
        prune.update(found.prune)
    if mode == "pub":
        paths.update(h for h in accounts.home_directories(settings)
                     if os.path.isdir(settings.host(h)))
    # systraq's own generated lists: rewritten by the contents job when
    # users come and go, which the snapshot already reports from
    # /etc/passwd; their content is also the admin's filetraq.tail.conf,
    # which stays watched.
    generated = {settings.logical(settings.filetraq_main),
                 settings.logical(settings.filetraq_conf)}
    paths -= generated
    prune.update(generated)
    private = set()
    for top in (unescape(x) for x in scope.get("private", ())):
        if not under(top, exclude) and _is_directory(settings.host(top)):
            private.add(top)
    return Paths(paths, walk, prune, private)


def _scope_changes(settings, mode, before, after, now, old, new, differ):
    """``(differ, note)``: the paths of ``differ`` that are changes, and a
    note record when the lists changed since the last run.

    A path only the new lists name (``after``, which names ``now``, a
    Paths) is newly watched, one only
    the old lists named (``before``) no longer watched: neither is a
    change of the system, and a widened list would otherwise turn every
    file it adds into a warning.  Both scopes are expanded against the
    system as it is now, so a file created where the old lists already
    pointed (an absent /etc/ld.so.preload) is still a change.  A state
    without a scope (written before it was kept) compares as before.
    """
    if before is None or before == after:
        return differ, None
    was = paths_of(settings, before, mode)
    kept, widened, narrowed = [], 0, 0
    for path in differ:
        if path not in old and not was.covers(path):
            widened += 1
        elif path not in new and not now.covers(path):
            narrowed += 1
        else:
            kept.append(path)
    note = records_.make("snapshot", "scope", None, mode=mode, widened=widened,
                         narrowed=narrowed)
    return kept, note


class Result:
    def __init__(self, records, count, unreadable, baseline, damaged, hashed=0, old_stat=None):
        self.records = records
        # What the comparison with the old package's .stat file counted
        # (a dict), None when there was none.
        self.old_stat = old_stat
        self.count = count
        self.hashed = hashed   # files read and hashed (quick mode reuses the rest)
        self.unreadable = unreadable
        self.baseline = baseline
        self.damaged = damaged


def run(settings, config, mode, quick=False, spool_group=None, now=None, workers=None,
        only=None):
    """Take a snapshot of ``mode``, spool its change records, return a Result.

    ``only``: logical paths to look at again, each with everything below
    it (the realtime watcher's "look again"); see ``_restricted``.
    """
    if mode not in MODES:
        raise ConfigError.single("--mode", None, f"unknown mode {mode!r}")
    directory = mode_directory(settings, mode)
    with runner.Run(settings, state_path(settings, mode), STATE_FORMAT,
                    command=f"systraq snapshot --mode {mode}", lock_wait=LOCK_WAIT,
                    lock=os.path.join(directory, f"snapshot_{mode}.lock".encode()),
                    spool_group=spool_group, now=now) as run:
        if only is not None:
            result = _restricted(settings, config, mode, run, workers, only)
            if result is not None:
                return result
        return _full(settings, config, mode, quick, run, workers)


def _full(settings, config, mode, quick, run, workers):
    state = run.state
    algorithm = config.get("snapshot", "digest")
    last = _Last(state, algorithm)
    if mode == "pub":
        digest_if = lambda info: bool(info.st_mode & stat.S_IROTH)  # noqa: E731
    else:
        digest_if = None
    scope = scope_of(settings, config, mode)
    named = paths_of(settings, scope, mode)
    # The last state is loaded by the scanner when it needs it.
    scanner = Scanner(settings, algorithm, digest_if=digest_if, previous=last.load, quick=quick,
                      prune=named.prune, workers=workers)
    new = scanner.records(named.paths, named.walk | named.private)
    old, damaged = last.records, last.damaged
    new = named.kept(new, old)

    stat_file = os.path.join(settings.mode_dir(mode), f"snapshot_{mode}.stat".encode())
    private = 0o600 if mode == "root" else 0o640
    names = accounts.Names(settings)
    old_stat = None
    if damaged is not None:
        records = [records_.make("snapshot", "state damaged", escape(state), mode=mode,
                                 detail=damaged, count=len(new))]
    elif old is None:
        records = [records_.make("snapshot", "baseline", escape(state), mode=mode,
                                 count=len(new))]
        found = _since_old_package(settings, mode, stat_file, new, names, algorithm,
                                   digest_if, workers)
        if found is not None:
            records[0] = records[0].with_fields(old_stat=found.summary)
            old_stat = found.summary
            records += found.records
    else:
        # What a private top holds that others may read was seen, not kept.
        differ = [p for p in scanner.changed + scanner.removed if p in new or p in old]
        differ, note = _scope_changes(settings, mode, last.scope, scope, named, old, new,
                                      differ)
        records = compare(old, new, mode, names, differ)
        if note is not None:
            records.insert(0, note)
        if (not records and last.scope == scope and os.path.exists(stat_file)
                and not oldstat.is_old_file(stat_file)
                and all(new.get(p, b"")[:1] == old.get(p, b"")[:1] == b"d" for p in differ)):
            # Nothing to report, and at most the times of directories
            # moved (the systraq home directory's, at every run): the
            # files on disk are kept and only their time is brought
            # forward, to show when the last run was.  At 76,270 paths
            # this saves writing 26 MB (state and .stat) each hour.
            run.touch()
            return Result([], len(new), scanner.unreadable, False, None, scanner.hashed)
    judge = run.judge(config.get("check", "critical"))
    records = [judge.judge(record) for record in run.stamped(records)]
    header = {"mode": mode, "digest": algorithm, "time": run.stamp, "scope": scope}
    run.commit(header, new, records, source=f"snapshot_{mode}", mode=private)
    atomic_write(stat_file, _stat_text(new, names), mode=private)
    return Result(records, len(new), scanner.unreadable, old is None and damaged is None, damaged,
                  scanner.hashed, old_stat)


class _Last:
    """The records of a mode's last state, loaded by ``load``: None when
    there is none or it is damaged (then ``damaged`` says how)."""

    def __init__(self, state, algorithm):
        self.state = state
        self.algorithm = algorithm
        self.records = None
        self.damaged = None
        self.scope = None

    def load(self):
        try:
            header, old = load_records(self.state)
        except DamagedState as exc:
            self.damaged = str(exc)
            return None
        self.scope = header.get("scope") if header is not None else None
        if header is not None and header.get("digest") != self.algorithm:
            # Another algorithm: old digests cannot be compared; the other
            # attributes still can.
            old = {p: scan.without_digest(r) for p, r in old.items()}
        self.records = old
        return old


def _since_old_package(settings, mode, stat_file, new, names, algorithm, digest_if, workers):
    """The oldstat.Comparison of the first scan ``new`` with the old
    package's .stat file of ``mode``; None when there is no such file.
    Its records carry the old file's time as their ``since``."""
    previous = oldstat.load(stat_file)
    if previous is None:
        return None
    sources = _lists_of(mode)
    list_files = [(settings.logical(settings.list_file(name)), settings.list_file(name))
                  for name, _kind, only in sources if only is None]
    homes = ([h for h in accounts.home_directories(settings) if h in new]
             if mode == "pub" else [])
    # The root mode also reads the pub home list in closed homes, which
    # the old package's root file never covered: a path it lacks there is
    # not new, however unchanged the root lists are.
    unchanged = (oldstat.lists_unchanged(previous, list_files)
                 and not (mode == "root" and accounts.closed_homes(settings)))
    return oldstat.compare(settings, previous, new, mode, names, algorithm, unchanged, homes,
                           digest_if=digest_if, workers=workers)


# --- a run restricted to some paths -----------------------------------------

def under(path, tops):
    """True when logical ``path`` is one of ``tops`` or lies below one."""
    for top in tops:
        if path == top or path.startswith(top + b"/") or top == b"/":
            return True
    return False


def _restrict(paths, walk, prune, tops):
    """What of ``(paths, walk)`` lies at or below ``tops``: the names to
    look at and the directories to walk, for Scanner.records."""
    sub_paths = {p for p in paths if under(p, tops)}
    sub_walk = {w for w in walk if under(w, tops)}
    for top in tops:
        # A top inside a walked directory: the walk would have reached it.
        if any(under(top, (w,)) for w in walk) and not under(top, prune):
            sub_walk.add(top)
    return sub_paths, sub_walk


def _is_directory(host):
    try:
        return stat.S_ISDIR(os.lstat(host).st_mode)
    except OSError:
        return False


def _restricted(settings, config, mode, run, workers, only):
    """Look again at the paths ``only`` (logical, each with everything
    below it) as a full run would, and update only their part of the state.

    The records are the ones a full run would have written for these
    paths: the same scanner, the same comparison, the same "since".  The
    state keeps its time (the end of the last full run), so that the
    next full run's records still cover the window since every path was
    last looked at, which attribution needs.  Returns None when there is
    no usable state to compare with: the caller then takes a full run.
    """
    state = run.state
    try:
        header, old = load_records(state)
    except DamagedState:
        return None
    algorithm = config.get("snapshot", "digest")
    if old is None or header.get("digest") != algorithm:
        return None
    previous_time = os.stat(state)
    tops = sorted(set(only))
    named = paths_of(settings, scope_of(settings, config, mode), mode)
    prune = named.prune
    sub_paths, sub_walk = _restrict(named.paths, named.walk | named.private, prune, tops)
    old_sub = {p: r for p, r in old.items() if under(p, tops)}
    digest_if = (lambda info: bool(info.st_mode & stat.S_IROTH)) if mode == "pub" else None
    scanner = Scanner(settings, algorithm, digest_if=digest_if, previous=old_sub,
                      prune=prune, workers=workers if workers is not None else 1)
    # A walked directory that is a file now is looked at as a name.
    walk_now = {w for w in sub_walk if _is_directory(settings.host(w))}
    new_sub = named.kept(scanner.records(sub_paths | (sub_walk - walk_now), walk_now), old_sub)
    differ = [p for p in scanner.changed + scanner.removed if p in new_sub or p in old_sub]
    result = Result([], len(old), scanner.unreadable, False, None, scanner.hashed)
    if not differ:
        return result
    names = accounts.Names(settings)
    judge = run.judge(config.get("check", "critical"))
    records = [judge.judge(record)
               for record in run.stamped(compare(old_sub, new_sub, mode, names, differ))]
    new = {p: r for p, r in old.items() if p not in old_sub}
    new.update(new_sub)
    private = 0o600 if mode == "root" else 0o640
    run.commit(header, new, records, source=f"snapshot_{mode}", mode=private,
               keep_time=previous_time)
    stat_file = os.path.join(settings.mode_dir(mode), f"snapshot_{mode}.stat".encode())
    atomic_write(stat_file, _stat_text(new, names), mode=private)
    result.records = records
    result.count = len(new)
    return result
