# SPDX-License-Identifier: GPL-2.0-or-later
"""Baseline digests: which state each run compared against, and which it left.

Every collector that keeps a state (the snapshot and the contents job of
both modes, the package check, the root audit) compares what it sees
with the state the previous run left.  Whoever can rewrite that state
between two runs can make a change invisible: put the new digest of
/etc/shadow into ``snapshot_root.state`` and the next snapshot finds
nothing.  This module makes such a rewrite show, in the mails:

- A state's *digest* is a short keyed digest of the state file (below).
- Each state has a *ledger*, ``STATE_DIR/NAME.baseline`` (NAME:
  ``snapshot_pub``, ``contents_root``, ``packages``, ``audit``...), that
  the collector updates under its own lock: one *link* per run that wrote
  the state (``against``: the digest of the state it loaded and compared
  with, ``left``: the digest of the state it wrote), and one per run
  that found a state no run left (the link's ``against`` differs from the
  ``left`` before it: a *break*).  A run that finds the state it expects
  and changes nothing writes nothing.
- Each mail (the report and the check's alert) carries, per ledger, one
  line "NAME: against X, left Y": X what the first run since the
  previous mail compared against, Y the state now.  In a mailbox kept
  off the host, the X of a mail must be the Y of the mail before it; any
  other value is a state that changed with no run of systraq to explain
  it.  The report also warns about every break it finds in the ledger.

Why a keyed digest (HMAC-SHA256 with a random 32-byte key kept in the
state's own directory), not a plain one: a root-mode state holds the
digests of files only root may read, and a plain digest of that state is
a function of theirs, which anyone reading the mail could use to test a
guess of their content (everything else in the state, owners, sizes and
times, is visible to any user).  The key of the root states lives in
``/var/lib/systraq/root`` (0700, the file 0600): without it the digest
says nothing about the state but whether it changed.  The pub states'
key is the systraq user's, who reads those states anyway.

What is keyed is the state file's own trailer (statefile.py: the sha256
of everything before it) and its size, so that taking the digest costs
one small read whatever the size of the state; a state altered without
fixing its trailer is "damaged", which its collector reports itself.

A run killed between renaming its new state into place and writing its
link leaves a state the ledger does not know; the state's header names
the digest it was compared against (``against``), so the next run tells
that case (the header's ``against`` is the ledger's ``left``) from a
rewrite and writes the missing link instead of a break.
"""

import hashlib
import hmac
import json
import os
import time

from systraq.fsutil import atomic_write

FORMAT = 1
KEY_NAME = b"baseline.key"
KEY_BYTES = 32
# Hex digits shown: 64 bits, enough that a forged state cannot hit the
# same digest by chance, short enough to compare by eye.
DIGEST_HEX = 16
# Links kept in a ledger: more than a week of hourly snapshots that each
# wrote their state (a report is mailed at least weekly).
KEEP_LINKS = 500
NONE = "none"    # the digest of a state that is not there


def name_of(state):
    """The ledger name of the state file ``state`` (bytes path)."""
    base = os.path.basename(state)
    return (base[:-len(b".state")] if base.endswith(b".state") else base).decode(
        "ascii", "replace")


def ledger_path(settings, name):
    return os.path.join(settings.state_dir, name.encode("ascii") + b".baseline")


def _key(directory):
    """The key of the states in ``directory``; made at first need.

    Made under a temporary name and linked into place, so that two runs
    making it at once (two pub jobs) end up with the same key: link()
    fails for the second, which then reads the first one's.
    """
    path = os.path.join(directory, KEY_NAME)
    try:
        with open(path, "rb") as handle:
            key = handle.read()
        if len(key) == KEY_BYTES:
            return key
    except FileNotFoundError:
        pass
    temp = path + b".new-" + os.urandom(6).hex().encode()
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, os.urandom(KEY_BYTES))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if os.path.lexists(path):
            # Short or damaged: a new key.  The next digests differ from
            # the ledger's, which the report shows as a break: right, as
            # nothing systraq does changes its key.
            os.replace(temp, path)
        else:
            os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    with open(path, "rb") as handle:
        return handle.read()


def digest(state):
    """The digest of the state file ``state``: NONE when it is absent."""
    try:
        with open(state, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - 32))
            trailer = handle.read(32)
    except FileNotFoundError:
        return NONE
    key = _key(os.path.dirname(state))
    mac = hmac.new(key, size.to_bytes(8, "little") + trailer, hashlib.sha256)
    return mac.hexdigest()[:DIGEST_HEX]


def _load(path):
    """A ledger, or None when there is none or it cannot be read back (it
    is then started again, with a break, as any other rewrite)."""
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read().decode("ascii"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError):
        return _new("unreadable")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return _new("unreadable")
    return data


def _new(left):
    """A ledger started now.  Its random id tells a mail that it is not
    the ledger the previous mail showed, whose link numbers it reuses."""
    return {"format": FORMAT, "id": os.urandom(4).hex(), "seq": 0, "left": left,
            "links": []}


def load(settings, name):
    """The ledger ``name`` as it is, for the report; None when absent."""
    return _load(ledger_path(settings, name))


def _save(path, ledger, group):
    ledger["links"] = ledger["links"][-KEEP_LINKS:]
    atomic_write(path, json.dumps(ledger, sort_keys=True).encode("ascii") + b"\n",
                 mode=0o640, group=group)


def _link(ledger, against, left, now, kind):
    ledger["seq"] += 1
    ledger["links"].append({"seq": ledger["seq"], "time": int(now), "against": against,
                            "left": left, "kind": kind})
    ledger["left"] = left


def _header_against(state):
    """The ``against`` a state's header names, or None."""
    try:
        with open(state, "rb") as handle:
            header = json.loads(handle.readline(1 << 24).decode("ascii"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return header.get("against") if isinstance(header, dict) else None


def observe(settings, state, group=None, now=None):
    """Before a run compares with ``state``: its digest (what the run
    compares against, to be put in the new state's header as
    ``against``), and a break in the ledger when it is not the state the
    last run left.  Call with the state's lock held, after
    ``statefile.recover``.  ``group``: the gid that may read the ledger
    (the root jobs give the systraq group, for the report)."""
    now = time.time() if now is None else now
    path = ledger_path(settings, name_of(state))
    found = digest(state)
    ledger = _load(path)
    if ledger is None:
        # The first run that keeps a ledger (a new installation, or an
        # upgrade from a version without): the chain starts here.
        _save(path, _new(found), group)
        return found
    if ledger.get("left") == found:
        return found
    if found != NONE and _header_against(state) == ledger.get("left"):
        # Written by a run that was killed before it could add its link.
        _link(ledger, ledger["left"], found, now, "run")
    else:
        _link(ledger, found, found, now, "found")
    _save(path, ledger, group)
    return found


def commit(settings, state, against, group=None, now=None):
    """After a run renamed its new ``state`` into place: its link."""
    now = time.time() if now is None else now
    path = ledger_path(settings, name_of(state))
    ledger = _load(path) or _new(against)
    _link(ledger, against, digest(state), now, "run")
    _save(path, ledger, group)


# -- what a mail says ----------------------------------------------------------

NAMES = ("snapshot_pub", "snapshot_root", "contents_pub", "contents_root", "trees", "packages",
         "audit")


class Line:
    """One ledger as a mail shows it."""

    def __init__(self, name, against, left, runs, breaks, seq, ledger_id):
        self.name = name
        self.ledger_id = ledger_id
        self.against = against
        self.left = left
        self.runs = runs          # links since the previous mail
        self.breaks = breaks      # [(time, expected, found)]
        self.seq = seq            # the ledger's last link, for the next mail

    @property
    def text(self):
        what = (f"{self.runs} run{'s' if self.runs != 1 else ''} wrote it"
                if self.runs else "unchanged")
        if self.breaks:
            what += f", {len(self.breaks)} change{'s' if len(self.breaks) != 1 else ''} " \
                    "outside systraq"
        return f"{self.name}: against {self.against}, left {self.left} ({what})"

    def as_dict(self):
        return {"name": self.name, "against": self.against, "left": self.left,
                "runs": self.runs,
                "breaks": [{"time": t, "expected": e, "found": f} for t, e, f in self.breaks]}


def lines(settings, mailed):
    """A Line per ledger there is; ``mailed``: what the previous mail
    said, {name: {"id", "seq", "left"}} (report.state's "baselines")."""
    result = []
    for name in NAMES:
        ledger = load(settings, name)
        if ledger is None:
            continue
        previous = (mailed or {}).get(name) or {}
        after = previous.get("seq")
        left = ledger.get("left", NONE)
        seq = ledger.get("seq", 0)
        links = ledger.get("links", [])
        expected = previous.get("left")
        if after is None:
            # No mail showed this ledger yet: the chain starts at this mail.
            since, against = [], left
        else:
            if previous.get("id") != ledger.get("id"):
                # The ledger was started again (removed, or unreadable):
                # every link it has came after the previous mail.
                after = 0
            since = [link for link in links if link["seq"] > after]
            if since and since[0]["seq"] != after + 1:
                # More runs since the last mail than the ledger keeps.
                against = "?"
            else:
                against = since[0]["against"] if since else left
        breaks = []
        for link in since:
            if expected is not None and link["against"] != expected and against != "?":
                breaks.append((link["time"], expected, link["against"]))
            expected = link["left"]
        if expected is not None and expected != left:
            # The ledger does not follow from itself: it was rewritten.
            breaks.append((None, expected, left))
        result.append(Line(name, against, left,
                           sum(1 for link in since if link["kind"] == "run"), breaks, seq,
                           ledger.get("id")))
    return result


def marks(result):
    """What the next mail compares with: {name: {"id", "seq", "left"}}."""
    return {line.name: {"id": line.ledger_id, "seq": line.seq, "left": line.left}
            for line in result}
