# SPDX-License-Identifier: GPL-2.0-or-later
"""State files: a header and many (path, record) pairs, checksummed.

The format shared by every collector that keeps one record per path (the
snapshot's metadata and digests, the digests of package files): one JSON
header line, then the pairs, each preceded by the lengths of its path and
of its record ("<HH"), then the sha256 of everything before it (32
bytes), so that a file cut short or damaged is recognised as such.

Binary because it is read at every run and written at every run that saw
a change: for 76,270 paths the JSON-lines state of the first snapshot
version (17 MB) took 0.48 s to load, this one (12.7 MB) 0.06 s.  It is
written in chunks, so that memory does not grow by the size of the file.
Writing it atomically is the caller's (``fsutil.atomic_write`` takes the
chunks).
"""

import hashlib
import json
import os
import struct

from systraq import spool

_LENGTHS = struct.Struct("<HH")
CHUNK = 4096


class DamagedState(Exception):
    """The state file exists but cannot be read back."""


def encode(header, records):
    """The state file for ``header`` (a dict) and ``records`` ({bytes: bytes}),
    as an iterable of chunks, records sorted by path."""
    checksum = hashlib.sha256()
    first = json.dumps(header, sort_keys=True).encode("ascii") + b"\n"
    checksum.update(first)
    yield first
    pack = _LENGTHS.pack
    paths = sorted(records)
    for start in range(0, len(paths), CHUNK):
        parts = []
        for path in paths[start:start + CHUNK]:
            record = records[path]
            parts.append(pack(len(path), len(record)))
            parts.append(path)
            parts.append(record)
        chunk = b"".join(parts)
        checksum.update(chunk)
        yield chunk
    yield checksum.digest()


def load(path, expected_format):
    """``(header, {path: record})``; ``(None, None)`` when there is no file.

    Raises DamagedState when the file is cut short, altered, or of another
    format than ``expected_format`` (the header's "format").
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None, None
    try:
        size = len(data) - 32
        if size < 0 or hashlib.sha256(memoryview(data)[:size]).digest() != data[size:]:
            raise ValueError("checksum mismatch (cut short or damaged)")
        end = data.index(b"\n")
        header = json.loads(data[:end].decode("ascii"))
        if not isinstance(header, dict) or header.get("format") != expected_format:
            raise ValueError("unknown format")
        records = {}
        unpack = _LENGTHS.unpack_from
        offset = end + 1
        while offset < size:
            path_length, record_length = unpack(data, offset)
            offset += 4
            path = data[offset:offset + path_length]
            offset += path_length
            records[path] = data[offset:offset + record_length]
            offset += record_length
        if offset != size or len(records) != header.get("count"):
            raise ValueError("entry count differs from header")
    except (ValueError, IndexError, TypeError, KeyError, AttributeError, struct.error) as exc:
        raise DamagedState(str(exc)) from None
    return header, records


def recover(state, spool, expected_format, finish=None, undo=None):
    """Finish or undo the commit of a run that was killed.

    A run writes ``STATE.next``, spools its records tagged with the run id
    from the header, then renames ``STATE.next`` over ``STATE``.  Left
    behind, ``STATE.next`` is renamed when the spool holds its run (the
    records went out: the state must follow) and removed otherwise (the
    next run will find the same changes again): a change is spooled once,
    never lost, never twice.

    ``finish`` and ``undo``, when given, are called with the pending
    header first, to complete or take back the work it journals (the
    contents job's backups).
    """
    pending = state + b".next"
    try:
        header, _records = load(pending, expected_format)
    except DamagedState:
        header = None
    if header is None:
        if os.path.lexists(pending):
            os.unlink(pending)
        return
    if spool.has_run(header.get("run")):
        if finish:
            finish(header)
        os.rename(pending, state)
    else:
        if undo:
            undo(header)
        os.unlink(pending)


def last_run(path):
    """When the run that last wrote or touched the state ``path`` ended:
    its mtime as an ISO UTC stamp, or None when there is no state."""
    try:
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    return spool.stamp(mtime)


def load_header(path, expected_format):
    """Only the header of the state file ``path`` (its first line), or None
    when there is no file: for readers that need the time of the last run
    and the findings, not every path's record.  Raises DamagedState when
    the line is not a header of ``expected_format``; the checksum over the
    whole file is left to ``load``.
    """
    try:
        with open(path, "rb") as handle:
            line = handle.readline(1 << 24)
    except FileNotFoundError:
        return None
    try:
        header = json.loads(line.decode("ascii"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedState(f"header unreadable: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != expected_format:
        raise DamagedState("unknown format")
    return header
