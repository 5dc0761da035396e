# SPDX-License-Identifier: GPL-2.0-or-later
"""The spool: change records waiting to be delivered.

Collectors hand their change records to the spool before anything is
mailed, so that nothing detected is lost when the mail fails or the
machine crashes.  A run writes its records as one *batch*: a file of JSON
lines in ``spool/``, written atomically, never modified afterwards.  A
batch is pending until delivery succeeded; then it is moved (one rename,
atomic) to ``spool/delivered/``.  A batch is therefore pending or
delivered, never both, and is delivered at most once.

Batch names sort by creation time: ``YYYYmmddTHHMMSS.ffffffZ-SOURCE-RUN.jsonl``,
where RUN is the hexadecimal id of the run that wrote it, so that a run
interrupted after spooling can tell that its records are safe
(``has_run``).
"""

import calendar
import json
import os
import re
import time
from collections import namedtuple

from systraq.fsutil import atomic_write, fsync_directory

_NAME = re.compile(rb"^(\d{8}T\d{6}\.\d{6}Z)-([a-z0-9_]+)-([0-9a-f]+)\.jsonl$")
DELIVERED = b"delivered"

Batch = namedtuple("Batch", "name created source run path")

# The "time" and "since" of a record: ISO 8601, UTC.
STAMP = "%Y-%m-%dT%H:%M:%SZ"


def stamp(epoch):
    """A record's time stamp for ``epoch`` seconds."""
    return time.strftime(STAMP, time.gmtime(epoch))


def epoch(text):
    """The epoch seconds of a record's stamp; None for none or a bad one."""
    if not text:
        return None
    try:
        return float(calendar.timegm(time.strptime(text, STAMP)))
    except (ValueError, TypeError):
        return None


def _encoded(record):
    """A record's spool encoding (records.Record.to_dict), or the dict."""
    return record.to_dict() if hasattr(record, "to_dict") else record


class Spool:
    """The spool directory of one settings object."""

    def __init__(self, settings):
        self.directory = settings.spool_dir
        self.delivered_dir = os.path.join(self.directory, DELIVERED)

    def add(self, source, records, now=None, run=None, group=None):
        """Write ``records`` (a list of JSON-serialisable dicts) as one batch.

        ``run``: the writer's run id (hexadecimal; random when not given).
        ``group``: a gid for the batch file, so that the root job's records
        are readable by the systraq group.  Returns the batch name, or None
        when there was nothing to write.
        """
        if not records:
            return None
        if not re.fullmatch(r"[a-z0-9_]+", source):
            raise ValueError(f"bad spool source name: {source!r}")
        run = run or os.urandom(8).hex()
        if not re.fullmatch(r"[0-9a-f]+", run):
            raise ValueError(f"bad run id: {run!r}")
        now = time.time() if now is None else now
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        micro = int((now % 1) * 1_000_000)
        name = f"{stamp}.{micro:06d}Z-{source}-{run}.jsonl".encode()
        os.makedirs(self.directory, mode=0o750, exist_ok=True)
        data = b"".join(json.dumps(_encoded(record), sort_keys=True).encode("ascii") + b"\n"
                        for record in records)
        atomic_write(os.path.join(self.directory, name), data, group=group)
        return name

    def _batches(self, directory):
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        batches = []
        for name in names:
            match = _NAME.match(name)
            if match:  # temporary files of an interrupted write are skipped
                batches.append(Batch(name, match.group(1).decode(),
                                     match.group(2).decode(), match.group(3).decode(),
                                     os.path.join(directory, name)))
        return sorted(batches)

    def pending(self):
        """Batches not yet delivered, oldest first."""
        return self._batches(self.directory)

    def delivered(self):
        return self._batches(self.delivered_dir)

    def has_run(self, run):
        """True when a batch written by run ``run`` is pending or delivered."""
        return any(batch.run == run for batch in self.pending() + self.delivered())

    @staticmethod
    def records(batch):
        """The records of ``batch``, in the order they were added."""
        with open(batch.path, "rb") as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def prune_delivered(self, before):
        """Remove the delivered batches written before ``before`` (epoch
        seconds): they hold diffs of configuration files, which are kept
        no longer than the backups they were made from.  Returns how
        many went."""
        removed = 0
        for batch in self.delivered():
            try:
                created = calendar.timegm(time.strptime(batch.created[:15], "%Y%m%dT%H%M%S"))
            except ValueError:
                continue
            if created < before:
                try:
                    os.unlink(batch.path)
                    removed += 1
                except FileNotFoundError:
                    pass
        return removed

    def mark_delivered(self, batches):
        """Move ``batches`` to delivered/; call only after delivery succeeded."""
        if not batches:
            return
        os.makedirs(self.delivered_dir, mode=0o750, exist_ok=True)
        for batch in batches:
            os.rename(batch.path, os.path.join(self.delivered_dir, batch.name))
        fsync_directory(self.delivered_dir)
        fsync_directory(self.directory)
