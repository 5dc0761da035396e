# SPDX-License-Identifier: GPL-2.0-or-later
"""Standing findings: what a collector found that stays true until fixed.

The spool carries what *changed*; some findings are a state instead: a
package file that differs from its package, an account with uid 0, a
local file that no longer matches its digest.  They are warnings in every
report until they are gone, whether or not a change about them is
pending.  This module owns the file each such collector leaves for the
report, ``/var/lib/systraq/SOURCE.current`` (readable by the systraq
group), so that the report reads them all the same way without knowing
any collector:

- ``findings``: change records (records.py) of what stands now, each with
  its ``first_seen`` day when the collector keeps one;
- ``notes``: lines for the report's notes, where ``{time}`` stands for
  the time of the run as the report shows times ("06:25" today);
- ``late``: ``{"after": seconds, "text": "... {time}"}``: the warning the
  report gives when the file is older than that (the collector stopped
  running);
- ``time``: when the run ended (epoch seconds); and whatever else the
  collector keeps beside them for its own command's output.

The file is written atomically after the run's commit (runner.py): it is
derived from the state, and a run killed before it leaves the previous
one, which the next run replaces.  No finding in it holds content or a
digest: the records say what, never what a secret holds.
"""

import json
import os

from systraq import records
from systraq.errors import RunError
from systraq.fsutil import atomic_write

FORMAT = 1
SUFFIX = b".current"


def path_of(settings, source):
    return os.path.join(settings.state_dir, source.encode("ascii") + SUFFIX)


class Standing:
    """One collector's standing findings, as read back."""

    def __init__(self, source, data):
        self.source = source
        self.data = data
        self.time = data["time"]
        self.findings = [records.load(f, source) for f in data["findings"]]
        self.notes = [str(n) for n in data.get("notes", ())]
        late = data.get("late") or {}
        self.late_after = late.get("after")
        self.late_text = late.get("text")


def save(settings, source, findings, *, time, notes=(), late=None, group=None, **extra):
    """Write ``source``'s standing findings (records) and notes."""
    document = {"format": FORMAT, "source": source, "time": time,
                "findings": [records.load(f, source).to_dict() for f in findings],
                "notes": list(notes), **extra}
    if late is not None:
        document["late"] = late
    atomic_write(path_of(settings, source),
                 json.dumps(document, sort_keys=True, indent=1).encode("ascii") + b"\n",
                 mode=0o640, group=group)


def load(settings, source):
    """``source``'s Standing, None when it never ran.  RunError, one line
    naming the file, when the file is damaged (a failing disk, or
    tampering; the collector's next run writes it again)."""
    path = path_of(settings, source)
    name = os.fsdecode(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RunError(f"cannot read {name}: {exc.strerror}") from None
    try:
        value = json.loads(data.decode("utf-8"))
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise ValueError("unknown format")
        if not isinstance(value.get("time"), (int, float)):
            raise ValueError("no time")
        if (not isinstance(value.get("findings"), list)
                or not all(isinstance(f, dict) for f in value["findings"])):
            raise ValueError("no list of findings")
        return Standing(source, value)
    except (ValueError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RunError(f"{name} is damaged ({reason}: a failing disk, or tampering); "
                       f"the next 'systraq {source}' writes it again") from None


def sources(settings):
    """The collectors that left standing findings, sorted."""
    try:
        names = os.listdir(settings.state_dir)
    except FileNotFoundError:
        return []
    return sorted(name[:-len(SUFFIX)].decode("ascii", "replace") for name in names
                  if name.endswith(SUFFIX) and name[:-len(SUFFIX)].isalnum())
