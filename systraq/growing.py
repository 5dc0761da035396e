# SPDX-License-Identifier: GPL-2.0-or-later
"""Logs that may only grow: a log cut, emptied, replaced or removed
outside its rotation is a warning; the rotation itself is silent.

An intruder hides by editing the logs that saw him (ATT&CK T1070.002):
auth.log, syslog, wtmp.  ``[check] growing`` names them (shell
patterns); the root half of the hourly check records each one's device,
inode and size, never its content, and compares them with its last run:

shrank     the same file is shorter than it was;
replaced   another file stands at the path;
removed    nothing stands there.

Each is what logrotate does too, and is the rotation's when the evidence
beside the log says so: a rotated sibling (``LOG.1``, ``LOG.0``,
``LOG-DATE``, compressed or not) that *is* the old file (its inode: a
rename, ``create``) or that was written since the last run and holds at
least as many bytes as the log had (``copytruncate``, or a rotation that
compressed at once: a gzip file's trailer gives its uncompressed size).
Anything else is a warning, with the sizes.  A log that appears is no
news.

The state is root's (``/var/lib/systraq/root/growing.state``); the
records name the path and sizes only.
"""

import glob
import os
import stat
import struct

from systraq import lists, records, runner
from systraq.fsutil import NotRegular, mode_directory, open_untrusted
from systraq.pathcodec import escape

STATE_FORMAT = 1
# A sibling written this long before the last run ended still counts as
# written since: file times and the state's time come from clocks of
# different grain (see attribution.py).
_TICK = 0.01


class Result:
    def __init__(self, records_, count, baseline):
        self.records = records_
        self.count = count
        self.baseline = baseline


def state_path(settings):
    return os.path.join(settings.root_state_dir, b"growing.state")


def _logs(settings, patterns):
    """``{logical path: b"DEV INO SIZE"}`` of the regular files the
    patterns name now."""
    found = {}
    # The list files' matching: wildcards, and nothing reached through a
    # link that leaves the root.
    named = lists.expand(settings, [lists.Entry(p, 0) for p in patterns], "system", walk=False)
    for logical in named.paths:
        try:
            info = os.lstat(settings.host(logical))
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode):
            found[logical] = b"%d %d %d" % (info.st_dev, info.st_ino, info.st_size)
    return found


def _fields(value):
    dev, ino, size = (int(x) for x in value.split())
    return dev, ino, size


def _content_size(host, info):
    """How many bytes a rotated sibling holds: its size, or for a gzip
    file the uncompressed size its trailer gives (modulo 4 GiB, as gzip
    keeps it)."""
    if not host.endswith(b".gz"):
        return info.st_size
    try:
        fd, opened = open_untrusted(host)
    except (OSError, NotRegular):
        return 0
    try:
        if opened.st_size < 18:
            return 0
        trailer = os.pread(fd, 4, opened.st_size - 4)
    finally:
        os.close(fd)
    return struct.unpack("<I", trailer)[0] if len(trailer) == 4 else 0


def _siblings(host):
    """The rotated copies logrotate leaves beside the log at ``host``."""
    found = []
    for suffix in (b".[0-9]", b".[0-9].gz", b"-[0-9]*"):
        found += glob.glob(glob.escape(host) + suffix)
    return found


def rotated(host, dev, ino, size, since):
    """Whether the log that was at ``host`` (``dev``, ``ino``, ``size``)
    was rotated: a sibling is it, or was written after ``since`` (epoch
    seconds) with at least ``size`` bytes."""
    for sibling in _siblings(host):
        try:
            info = os.lstat(sibling)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode):
            continue
        if (info.st_dev, info.st_ino) == (dev, ino):
            return True
        if (since is not None and info.st_ctime_ns / 1e9 >= since - _TICK
                and _content_size(sibling, info) >= size):
            return True
    return False


def compare(settings, old, new, since):
    """Records for what happened to each log of ``old`` since ``since``."""
    found = []
    for path in sorted(old):
        dev, ino, size = _fields(old[path])
        host = settings.host(path)
        now = new.get(path)
        if now is None:
            change, after = "removed", None
        else:
            dev_now, ino_now, after = _fields(now)
            if (dev_now, ino_now) != (dev, ino):
                change = "replaced"
            elif after < size:
                change = "shrank"
            else:
                continue
        if rotated(host, dev, ino, size, since):
            continue
        fields = {"size_before": size}
        if after is not None:
            fields["size_after"] = after
        found.append(records.make("growing", change, escape(path), **fields))
    return found


def run(settings, config, spool_group=None, now=None):
    """Look at the logs of ``[check] growing``, queue what is not a
    rotation, return a Result."""
    state = state_path(settings)
    mode_directory(settings, "root")
    with runner.Run(settings, state, STATE_FORMAT, command="systraq check --mode root",
                    spool_group=spool_group, now=now) as run:
        _header, old = run.load()
        new = _logs(settings, config.get("check", "growing"))
        if old is None:
            change = "state damaged" if run.damaged else "baseline"
            fields = {"detail": run.damaged} if run.damaged else {}
            found = [records.make("growing", change, None, count=len(new), **fields)]
        else:
            found = compare(settings, old, new, run.since_epoch)
            if not found and new == old:
                run.touch()
                return Result([], len(new), False)
        run.commit({"time": run.stamp}, new, run.stamped(found), source="growing", mode=0o600)
        return Result(found, len(new), old is None)
