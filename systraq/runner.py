# SPDX-License-Identifier: GPL-2.0-or-later
"""The run transaction: how every collector takes its lock, finds its last
state, and hands over the next state together with its change records.

This module owns "never lost, never twice".  A collector run is::

    with runner.Run(settings, state, STATE_FORMAT, lock=LOCK, command=...) as run:
        header, old = run.load()          # the state the last run left
        ...look, compare, make records...
        run.commit(header, new, records, source="snapshot_pub", mode=0o640)

and in that order, always:

1. the lock (one run of a collector at a time; the next waits, then
   gives up with a one-line error naming the lock);
2. recovery (statefile.recover): the next state a killed run left is
   renamed into place if its records reached the spool, removed if not,
   so that a change is spooled once, never lost, never twice;
3. the baseline ledger is told which state this run compares against
   (baselines.observe), and ``since`` is when the last run ended;
4. the commit: the next state written as STATE.next, tagged with a new
   run id; the records spooled with that run id; the collector's own
   last step (``before_rename``: the contents job's backups); the
   rename; the ledger's link.  A run that found nothing writes nothing
   and only stamps the state's time (``touch``).

A collector that has no state of this kind (the old package's .stat
files, the root audit's findings file) writes those after the commit:
they are derived from the state, and a crash before them is repaired by
the next run.
"""

import os
import time

from systraq import baselines, records, statefile
from systraq.fsutil import atomic_write, held
from systraq.spool import Spool, stamp as record_stamp

# How long a run waits for another run of the same collector.
LOCK_WAIT = 10.0


class Run:
    """One run of a collector over the state file ``state`` (bytes path)
    of format ``state_format``.

    ``lock``: the lock file (default STATE with .lock for .state);
    ``command``: how the admin names the job, for the error when another
    run holds the lock; ``finish``/``undo``: called with the header of a
    killed run's next state during recovery, when its records did / did
    not reach the spool (the contents job carries out or drops the
    backups it journals there).
    """

    def __init__(self, settings, state, state_format, *, command, lock=None,
                 lock_wait=LOCK_WAIT, spool_group=None, now=None, finish=None, undo=None):
        self.settings = settings
        self.state = state
        self.format = state_format
        self.command = command
        if lock is None:
            base = state[:-len(b".state")] if state.endswith(b".state") else state
            lock = base + b".lock"
        self.lock_path = lock
        self.lock_wait = lock_wait
        self.spool = Spool(settings)
        self.spool_group = spool_group
        # The run's time: given, or taken when first needed (after the
        # looking, so that it says when the run ended).
        self._now = now
        self.finish = finish
        self.undo = undo
        self.against = None
        self.since = None          # when the last run ended (ISO stamp), or None
        self._since_exact = None
        self.damaged = None        # why the last state could not be read back
        self.run_id = None
        self._lock = None

    def __enter__(self):
        self._lock = held(self.lock_path, self.lock_wait, f"'{self.command}'")
        self._lock.__enter__()
        try:
            statefile.recover(self.state, self.spool, self.format, finish=self.finish,
                              undo=self.undo)
            self.against = baselines.observe(self.settings, self.state, self.spool_group,
                                             self._now)
            self.since = statefile.last_run(self.state)
            try:
                self._since_exact = os.stat(self.state).st_mtime_ns / 1e9
            except FileNotFoundError:
                self._since_exact = None
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        return self._lock.__exit__(*exc)

    @property
    def now(self):
        if self._now is None:
            self._now = time.time()
        return self._now

    @property
    def since_epoch(self):
        """When the last run ended, epoch seconds (the state's modification
        time, to the nanosecond); None for a first run."""
        return self._since_exact

    def judge(self, critical=()):
        """An attribution.Judge for this run's changes: which package
        operation since the last run made each."""
        from systraq import attribution
        return attribution.Judge(self.settings, self.since_epoch, critical)

    @property
    def stamp(self):
        """The run's time as a record's ISO stamp."""
        return record_stamp(self.now)

    def load(self):
        """``(header, {path: record})`` of the last state; ``(None, None)``
        when there is none, or it is damaged (``damaged`` then says how:
        the collector records that, and starts from a fresh baseline)."""
        try:
            return statefile.load(self.state, self.format)
        except statefile.DamagedState as exc:
            self.damaged = str(exc)
            return None, None

    def stamped(self, found, since=True):
        """``records`` (records.Record, or their spool objects) with this
        run's time, and the last run's end as their ``since`` (when there
        was one and ``since``)."""
        out = []
        for record in found:
            fields = {"time": record.get("time") or self.stamp}
            if since and self.since is not None and not record.get("since"):
                fields["since"] = self.since
            out.append(records.load(record).with_fields(**fields))
        return out

    def commit(self, header, entries, queued, *, source, mode, before_rename=None,
               keep_time=None):
        """Write the next state (``header`` and ``entries``) and spool
        ``queued`` (records) as one: see the module's docstring.  ``mode``: the
        state file's permissions; ``keep_time``: a stat result whose
        times the state keeps (a restricted run leaves the time of the
        last full run)."""
        self.run_id = os.urandom(8).hex()
        header = dict(header or {}, format=self.format, run=self.run_id, count=len(entries),
                      against=self.against)
        pending = self.state + b".next"
        atomic_write(pending, statefile.encode(header, entries), mode=mode)
        if queued:
            self.spool.add(source, queued, now=self.now, run=self.run_id,
                           group=self.spool_group)
        if before_rename is not None:
            before_rename()
        os.rename(pending, self.state)
        baselines.commit(self.settings, self.state, self.against, self.spool_group, self.now)
        if keep_time is not None:
            os.utime(self.state, ns=(keep_time.st_atime_ns, keep_time.st_mtime_ns))

    def touch(self):
        """Nothing to write: the state's time says when this run ended."""
        try:
            os.utime(self.state, (self.now, self.now))
        except FileNotFoundError:
            pass
