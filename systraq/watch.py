# SPDX-License-Identifier: GPL-2.0-or-later
"""``systraq watch``: the realtime watcher of the critical paths.

This module owns deciding what to watch, when to look again and when to
mail; inotify itself is inotify.py's.  An event never says what changed:
it only says "look again at this path".  The looking is the scheduled
jobs' own: the contents job and the snapshot, restricted to the paths
that had events (``contents.run(only=...)``, ``snapshot.run(only=...)``),
under their locks, against their state.  The watcher and the hourly
check therefore write the same records and never report a change twice.
Alerts go through ``delivery.alert``, with its lock and its "alerted
once" ledger; which change a package operation made, the collectors'
records already say.

What is watched: every ``[check] critical`` pattern, as directories.  A
path without wildcards is watched through its parent directory (so that
creation, deletion, rename and an atomic replace are all seen) and, when
it is a file, by itself too; the watch on the file is put on the new file
after a replace.  A pattern with wildcards is watched from the directory
before its first wildcard down ('*' matches '/'), only into directories
whose names can lead to a match, and through that directory's parent.
A pattern starting with '*' (``*/.ssh/authorized_keys*``) is watched
below each home directory.  A directory that does not exist is watched
through its nearest existing parent, until it appears.

The loop:

- A burst of events is looked at once it has been quiet for ``[watch]
  quiet_window`` seconds (at the latest QUIET_MAX after its first event),
  so that an editor's save or a package's run of changes is one look and
  one mail.
- While dpkg runs (its lock is held), nothing is looked at: the changes
  are looked at when it is done, and the records then fall in the window
  of its run, so that the report and the alert attribute them to it.
- Alerts are rate-limited to ``[watch] mails_per_hour``; what is held
  back waits in the spool, unalerted, and the next alert lists it.
- IN_Q_OVERFLOW (events lost): every watched path is looked at again and
  the watches are set anew.
- No watch left (ENOSPC): one log line, and the directories left without
  a watch are looked at every ``[watch] poll_interval`` seconds.
- At start, full runs of the contents job and the snapshot compare with
  the last state, so that what changed while the watcher was stopped is
  reported, not absorbed.  SIGHUP reads the configuration again; SIGTERM
  stops at once (what was pending is found by the next start's runs).

With nothing pending the loop blocks in poll(2): no timer runs while
inotify works.
"""

import fnmatch
import json
import os
import posixpath
import re
import signal
import stat
import sys
import time

from systraq import accounts, attribution, config as config_module, contents, inotify, snapshot
from systraq.errors import ConfigError, RunError, SystraqError
from systraq.fsutil import atomic_write
from systraq.settings import NEVER_WALK
from systraq.spool import Spool, stamp

# A burst whose events never stop is looked at this long after its
# first event all the same.
QUIET_MAX = 60.0
# How often the watcher asks whether dpkg is done, while it runs.
DPKG_RECHECK = 1.0
# How long an alert that could not be sent (lock busy, sendmail failed)
# waits before the next try.
ALERT_RETRY = 60.0
HOUR = 3600.0

_MAGIC = re.compile(rb"[*?[]")


def state_path(settings):
    return os.path.join(settings.state_dir, b"watch.state")


def _under(path, top):
    return path == top or top == b"/" or path.startswith(top + b"/")


class Target:
    """One place to watch for one critical pattern.

    ``top``: the directory where matches start (watched, and through its
    parent); ``prefix``: what every match starts with (the pattern up to
    its first wildcard); ``deep``: whether matches lie below ``top``
    (wildcards) rather than being ``prefix`` itself.
    """

    __slots__ = ("top", "prefix", "deep")

    def __init__(self, top, prefix, deep):
        self.top = top
        self.prefix = prefix
        self.deep = deep

    def may_hold(self, directory):
        """Whether a match can lie in or below ``directory``."""
        return (directory + b"/").startswith(self.prefix) or self.prefix.startswith(directory + b"/")


class Targets:
    """What the critical patterns ask to watch, on this system now."""

    def __init__(self, settings, patterns):
        self.settings = settings
        self.patterns = tuple(patterns)
        self.targets = []
        for pattern in self.patterns:
            if pattern.startswith(b"*"):
                # Anchored below each home: where such files live.
                rest = pattern.lstrip(b"*")
                if not rest.startswith(b"/"):
                    rest = b"/" + rest
                for home in accounts.home_directories(settings):
                    self._add(home + rest)
            else:
                self._add(pattern)

    def _add(self, pattern):
        magic = _MAGIC.search(pattern)
        if magic is None:
            prefix = posixpath.normpath(pattern)
            self.targets.append(Target(posixpath.dirname(prefix), prefix, False))
            return
        prefix = pattern[:magic.start()]
        top = prefix[:prefix.rfind(b"/")] or b"/"
        self.targets.append(Target(top, prefix, True))

    @property
    def files(self):
        """The critical paths named without wildcards: watched themselves
        too, when they are files."""
        return {t.prefix for t in self.targets if not t.deep}

    def interesting(self, logical):
        """Whether an event at ``logical`` may concern a critical path:
        it matches a pattern, or it is a directory on the way to one."""
        if any(fnmatch.fnmatchcase(logical, pattern) for pattern in self.patterns):
            return True
        for target in self.targets:
            if _under(target.prefix, logical) or (target.deep and target.may_hold(logical)
                                                  and _under(logical, target.top)):
                return True
        return False

    def tops(self):
        """Every path that stands for all critical paths: looked at again
        after an overflow."""
        return sorted({t.prefix if not t.deep else t.top for t in self.targets})

    def walk(self):
        """``(directories, files)`` to watch now, logical, in the order to
        add them (the most important first: when watches run out, the
        rest is polled)."""
        host = self.settings.host
        first, deep, files = [], [], []
        for target in self.targets:
            # The nearest existing directory at or above the top, and the
            # top's parent, so that the top being replaced is seen.
            top = target.top
            while top != b"/" and not _is_directory(host(top)):
                top = posixpath.dirname(top)
            parent = posixpath.dirname(top)
            if parent != top:
                first.append(parent)
            first.append(top)
            if not target.deep:
                if _is_directory(host(target.prefix)):
                    first.append(target.prefix)
                elif _is_file(host(target.prefix)):
                    files.append(target.prefix)
                continue
            if top != target.top:
                continue  # not there yet: seen when it appears
            deep.extend(self._below(target))
        seen = set()
        directories = []
        for path in first + deep:
            if path not in seen and not any(_under(path, n) for n in NEVER_WALK):
                seen.add(path)
                directories.append(path)
        return directories, sorted(set(files))

    def _below(self, target):
        """The directories below ``target.top`` that may hold a match, by depth."""
        found = []
        level = [target.top]
        while level:
            following = []
            for directory in level:
                try:
                    with os.scandir(self.settings.host(directory)) as entries:
                        names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
                except OSError:
                    continue
                for name in sorted(names):
                    path = posixpath.join(directory, name)
                    if target.may_hold(path) and not any(_under(path, n) for n in NEVER_WALK):
                        found.append(path)
                        following.append(path)
            level = following
        return found


def _is_directory(host):
    try:
        return stat.S_ISDIR(os.lstat(host).st_mode)
    except OSError:
        return False


def _is_file(host):
    try:
        return stat.S_ISREG(os.lstat(host).st_mode)
    except OSError:
        return False


def dpkg_running(settings):
    """Whether dpkg or apt holds dpkg's lock now (attribution.py)."""
    return attribution.dpkg_running(settings)


def _stderr(line):
    print(f"systraq watch: {line}", file=sys.stderr, flush=True)


class _Wakeup(Exception):
    """A signal arrived while the loop was waiting for events."""


class Watcher:
    """The watcher's state and loop.

    ``alert``: a function of the configuration mailing the pending
    alert (``delivery.alert`` under the delivery lock) and returning the
    alerted items.  ``clock``
    (monotonic) times bursts; ``wall`` (epoch) counts mails per hour
    across restarts.  Tests give them, and ``dpkg_running``.
    """

    def __init__(self, settings, config, alert, log=_stderr, clock=time.monotonic,
                 wall=time.time, dpkg=dpkg_running, notify=inotify.Inotify):
        self.settings = settings
        self.alert = alert
        self.log = log
        self.clock = clock
        self.wall = wall
        self.dpkg = dpkg
        self.notify_factory = notify
        self.notify = None
        self.dirty = set()
        self.first_event = None
        self.last_event = None
        self.resync_needed = False
        self.rearm = set()
        self.polled = []
        self.next_poll = None
        self.alert_pending = False
        self.alert_at = None
        self.rate_limited = False
        self.dpkg_said = False
        self.stopping = False
        self.reloading = False
        self._waiting = False
        self.looks = 0
        # --once: what could not complete, for its exit status (the
        # daemon logs it and tries again instead).
        self.failed = None
        self.configure(config)

    def configure(self, config):
        self.config = config
        self.quiet = config.get("watch", "quiet_window")
        self.mails_per_hour = config.get("watch", "mails_per_hour")
        self.poll_interval = config.get("watch", "poll_interval")
        self.targets = Targets(self.settings, config.get("check", "critical"))

    # --- setting up --------------------------------------------------------

    def start(self):
        """Watch, then compare everything with the last state and alert;
        then say so.  "watching" is logged once the start-up alert is
        handed over, so that what follows the line is what changes from
        then on."""
        self.notify = self.notify_factory()
        self.resync()
        # After the watches are set: a change made during these runs is
        # seen by them or by an event, never by neither.
        self.look(None)
        self.send_alert()
        self.log(f"watching {len(self.notify.watched())} paths for "
                 f"{len(self.targets.patterns)} critical patterns")

    def once(self):
        """The start-up comparison and its alert, without watching: True
        when changes were queued.  RunError, naming the first, when a job
        or the alert could not complete: unlike the daemon, nothing here
        tries again, so the exit status must say so (3)."""
        self.failed = []
        queued = self.look(None)
        try:
            self.send_alert()
        finally:
            failed, self.failed = self.failed, None
        if failed:
            raise RunError(f"watch: {failed[0]}")
        return queued

    def close(self):
        if self.notify is not None:
            self.notify.close()
            self.notify = None

    def resync(self):
        """Watch what the targets name now, drop what they no longer name.
        Returns the directories newly watched (or polled), whose contents
        were not watched until now."""
        host = self.settings.host
        directories, files = self.targets.walk()
        wanted = {host(p) for p in directories} | {host(p) for p in files}
        for path in self.notify.watched() - wanted:
            self.notify.remove(path)
        watched = self.notify.watched()
        new, polled = [], []
        exhausted = False
        for path in directories:
            if host(path) in watched:
                continue
            if exhausted:
                polled.append(path)
                continue
            try:
                if self.notify.add(host(path), directory=True):
                    new.append(path)
            except inotify.Exhausted:
                exhausted = True
                polled.append(path)
        for path in files:
            if exhausted:
                break   # the parent directory's watch or poll covers it
            try:
                # Again after a replace: the watch moves to the new file.
                self.notify.add(host(path), directory=False)
            except inotify.Exhausted:
                exhausted = True
        if polled and not self.polled:
            limit = inotify.max_user_watches()
            self.log(f"inotify watches exhausted (fs.inotify.max_user_watches = {limit}): "
                     f"{len(polled)} directories are looked at every "
                     f"{self.poll_interval} s instead")
        elif self.polled and not polled:
            self.log("every directory has an inotify watch again; polling stopped")
        before = set(self.polled)
        self.polled = polled
        if polled and self.next_poll is None:
            self.next_poll = self.clock() + self.poll_interval
        elif not polled:
            self.next_poll = None
        self.resync_needed = False
        return new + [p for p in polled if p not in before]

    # --- the loop ----------------------------------------------------------

    def run(self):
        """Watch until SIGTERM; returns the exit status."""
        previous = {sig: signal.signal(sig, self._signal)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        try:
            self.start()
            while not self.stopping:
                self.step()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.close()
        self.log("stopped")
        return 0

    def _signal(self, number, _frame):
        if number == signal.SIGHUP:
            self.reloading = True
        else:
            self.stopping = True
        if self._waiting:
            # Leave poll(2) now; outside the wait the flags are read at
            # the next turn, never in the middle of a run.
            raise _Wakeup()

    def timeout(self):
        """Seconds until something is due; None: nothing is, wait for events."""
        now = self.clock()
        due = []
        if self.dirty or self.resync_needed:
            if self.dpkg_said:
                due.append(now + DPKG_RECHECK)
            else:
                due.append(min(self.last_event + self.quiet, self.first_event + QUIET_MAX))
        if self.next_poll is not None:
            due.append(self.next_poll)
        if self.alert_pending and self.alert_at is not None:
            due.append(self.alert_at)
        if not due:
            return None
        return max(0.0, min(due) - now)

    def step(self, limit=None):
        """Wait for events (at most ``limit`` seconds more than needed,
        for tests) and do what is due."""
        timeout = self.timeout()
        if limit is not None:
            timeout = limit if timeout is None else min(timeout, limit)
        ready = False
        self._waiting = True
        try:
            if self.stopping or self.reloading:
                raise _Wakeup()
            ready = self.notify.ready(timeout)
        except _Wakeup:
            pass
        finally:
            self._waiting = False
        events = self.notify.read() if ready else []
        if self.stopping:
            return
        if self.reloading:
            self.reload()
        for event in events:
            self.take(event)
        self.due()

    def take(self, event):
        """Note what one event asks to look at."""
        now = self.clock()
        if event.overflow:
            self.log("inotify event queue overflowed: looking at every watched path again")
            self.mark(self.targets.tops(), now)
            self.resync_needed = True
            return
        path = self.settings.logical(event.path)
        files = self.targets.files
        if event.gone:
            # A watched file was replaced or removed: its watch goes on
            # the file now there.  A watched directory went away: the
            # watches must follow.
            if path in files:
                self.rearm.add(path)
            else:
                self.resync_needed = True
            self.mark([path], now)
            return
        if not self.targets.interesting(path):
            return
        if event.directory and event.names:
            # A directory came or went on the way to critical paths.
            self.resync_needed = True
        elif event.names and path in files:
            self.rearm.add(path)   # created, or replaced by a rename
        self.mark([path], now)

    def mark(self, paths, now):
        if not self.dirty and not self.resync_needed:
            self.first_event = now
        self.dirty.update(paths)
        self.last_event = now
        if self.first_event is None:
            self.first_event = now

    def due(self):
        now = self.clock()
        if self.next_poll is not None and now >= self.next_poll:
            self.next_poll = now + self.poll_interval
            if self.polled:
                # Looked at now: a poll has no burst to wait for.
                self.mark(self.polled, now - self.quiet)
        if (self.dirty or self.resync_needed) and now >= min(self.last_event + self.quiet,
                                                            self.first_event + QUIET_MAX):
            if self.dpkg(self.settings):
                if not self.dpkg_said:
                    self.log("dpkg is running: looking again when it is done")
                    self.dpkg_said = True
            else:
                self.dpkg_said = False
                self.flush()
        if self.alert_pending and (self.alert_at is None or self.clock() >= self.alert_at):
            self.send_alert()

    def flush(self):
        if self.resync_needed:
            self.dirty.update(self.resync())
        self._rearm()
        paths = self.dirty
        self.dirty = set()
        self.first_event = self.last_event = None
        if paths:
            self.look(paths)    # the alert, if any, follows in due()

    def _rearm(self):
        """Watch the critical files that were replaced or created."""
        for path in sorted(self.rearm):
            if not _is_file(self.settings.host(path)):
                continue
            try:
                self.notify.add(self.settings.host(path), directory=False)
            except inotify.Exhausted:
                break   # its directory's watch or poll covers it
        self.rearm = set()

    def look(self, paths):
        """The contents job and the snapshot on ``paths`` (None: all), as
        the hourly check runs them; True when they queued records."""
        self.looks += 1
        queued = False
        only = sorted(paths) if paths is not None else None
        for name, run in (("contents", lambda: contents.run(self.settings, self.config,
                                                              "pub", only=only)),
                          ("snapshot", lambda: snapshot.run(self.settings, self.config,
                                                            "pub", only=only))):
            try:
                result = run()
            except (SystraqError, OSError) as exc:
                text = exc.lines()[0] if isinstance(exc, SystraqError) else exc.strerror or exc
                if self.failed is not None:
                    self.failed.append(f"{name}: {text}")
                else:
                    self.log(f"{name}: {text}")
                continue
            if result.records and not result.baseline:
                queued = True
        if queued:
            # New changes: try at once, whatever an earlier failure said
            # (the rate limit is counted again).
            self.alert_pending = True
            self.alert_at = None
        return queued

    # --- alerts ------------------------------------------------------------

    def _load_mails(self):
        try:
            with open(state_path(self.settings), "rb") as handle:
                data = json.loads(handle.read().decode("utf-8"))
            return [float(t) for t in data.get("mails", [])]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            name = os.fsdecode(state_path(self.settings))
            self.log(f"{name}: unreadable ({exc}); the hourly mail count starts again")
            if not isinstance(exc, OSError):
                # Damaged, though written atomically: a failing disk or
                # tampering (to hold alerts back), which the report tells.
                Spool(self.settings).add("watch", [{
                    "source": "watch", "change": "state damaged", "time": stamp(self.wall()),
                    "detail": f"{name}: {str(exc).splitlines()[0] if str(exc) else exc!r}"}])
                self._save_mails([])
            return []

    def _save_mails(self, mails):
        data = json.dumps({"mails": mails}, sort_keys=True).encode("ascii") + b"\n"
        atomic_write(state_path(self.settings), data, mode=0o640)

    def send_alert(self):
        """Mail what is pending, unless the hour's mails are spent."""
        now = self.wall()
        mails = [t for t in self._load_mails() if 0 <= now - t < HOUR]
        if len(mails) >= self.mails_per_hour:
            wait = min(mails) + HOUR - now
            if not self.rate_limited:
                self.log(f"{len(mails)} alert mails in the last hour "
                         f"([watch] mails_per_hour = {self.mails_per_hour}): the next one, "
                         f"in {wait / 60:.0f} min, sums up what waits")
                self.rate_limited = True
            self.alert_pending = True
            self.alert_at = self.clock() + wait
            return
        self.rate_limited = False
        try:
            items = self.alert(self.config)
        except (SystraqError, OSError) as exc:
            text = exc.lines()[0] if isinstance(exc, SystraqError) else str(exc)
            if self.failed is not None:
                self.failed.insert(0, f"alert: {text}")
                return
            self.log(f"alert: {text}; trying again in {ALERT_RETRY:g} s")
            self.alert_pending = True
            self.alert_at = self.clock() + ALERT_RETRY
            return
        self.alert_pending = False
        self.alert_at = None
        if items:
            mails.append(now)
            self._save_mails(mails)
            self.log(f"alert sent: {len(items)} critical change{'s' if len(items) != 1 else ''}")

    # --- signals -----------------------------------------------------------

    def reload(self):
        self.reloading = False
        try:
            config = config_module.load(self.settings.config_file)
        except ConfigError as exc:
            for line in exc.lines():
                self.log(line)
            self.log("configuration not reloaded; going on with the previous one")
            return
        if not config.get("watch", "enabled"):
            self.log("[watch] enabled = no now: stopping")
            self.stopping = True
            return
        self.configure(config)
        self.dirty.update(self.resync())
        if self.dirty:
            now = self.clock()
            self.first_event = self.first_event or now
            self.last_event = self.last_event or now
        self.log(f"configuration reloaded; watching {len(self.notify.watched())} paths")
