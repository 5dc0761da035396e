# SPDX-License-Identifier: GPL-2.0-or-later
"""Damaged state files: every job says so in the report and starts again.

Each state file a job reads is cut short, has bytes flipped, is emptied
or replaced by garbage; the job that reads it must not crash (no
traceback, status 0 or 1), must take a fresh baseline, and the next
report must carry a warning that the state was damaged, since nothing
but tampering or a failing disk damages a file written atomically.

"Flipped" is the high bit of a few bytes: in the binary state files the
checksum catches any flip; in the JSON ones (report, alerts, watch) a
flipped digit would still be a number, which no reader can tell from a
real one, while a byte that is no longer ASCII is always seen.
"""

import os
import random
import shutil

import pytest

from tests.hardening.faultkit import System, assert_clean, copy_of, count_in

DAMAGES = ("cut", "flip", "empty", "garbage")

# (job that reads it, state file below /var/lib/systraq, job that writes
# it anew).  Not here: the .stat files (written for the old package's
# tools, read only at a first run), lists.state (a cache: the lists are
# written again from scratch when it is unreadable) and the contents
# job's backups (copies, whose damage shows as a diff).
STATES = [
    ("snapshot-pub", "snapshot_pub.state", "snapshot-pub"),
    ("snapshot-root", "root/snapshot_root.state", "snapshot-root"),
    ("contents", "contents_pub.state", "contents"),
    ("packages", "packages.state", "packages"),
    ("audit", "root/audit.state", "audit"),
    ("report", "audit.current", "audit"),
    ("report", "report.state", "report"),
    ("report", "alerts.state", "report"),
    ("check", "alerts.state", "report"),
    ("watch", "alerts.state", "report"),
    ("watch", "watch.state", "watch"),
]


def damage(path, how, rng):
    with open(path, "rb") as handle:
        data = handle.read()
    if how == "cut":
        data = data[:rng.randrange(1, max(2, len(data) - 1))]
    elif how == "flip":
        data = bytearray(data)
        for _ in range(3):
            data[rng.randrange(len(data))] ^= 0x80
        data = bytes(data)
    elif how == "empty":
        data = b""
    else:
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(16, 4096)))
    with open(path, "wb") as handle:
        handle.write(data)
    return data


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A system with every job's state written, alerts and the watcher's
    mail count included."""
    top = tmp_path_factory.mktemp("state-template")
    system = System(top, files=50)
    system.baseline()
    system.change()
    for job in ("check", "report"):
        system.run_ok(job)
    system.change()
    system.run_ok("watch")   # an alert: watch.state counts its mail
    system.run_ok("check")
    assert os.path.exists(os.path.join(system.state, "watch.state"))
    assert os.path.exists(os.path.join(system.state, "alerts.state"))
    return system


@pytest.mark.parametrize("job,name,writer", STATES, ids=[f"{j}:{n}" for j, n, _w in STATES])
def test_a_damaged_state_is_a_warning_and_a_fresh_start(template, tmp_path, job, name, writer,
                                                         record, scale):
    rng = random.Random(f"{job}:{name}")
    runs = 0
    # Reduced: two of the four damages, a different pair for each file.
    first = STATES.index((job, name, writer)) % 2
    damages = scale(DAMAGES[first::2], DAMAGES)
    for how in damages:
        system = copy_of(template, tmp_path / how)
        path = os.path.join(system.state, name)
        damage(path, how, rng)
        tags = system.change()
        if job == "report":
            system.run_ok("contents")
        status, _out, err = system.run(job)
        runs += 1
        assert_clean(err, f"{job} with {name} {how}")
        assert status in (0, 1), f"{job} with {name} {how}: exit {status}: {err}"
        if job != "report":
            status, _out, err = system.run("report")
            runs += 1
            assert_clean(err, f"report after {name} {how}")
            assert status in (0, 1), f"report after {name} {how}: exit {status}: {err}"
        reports = system.mails("report")
        assert reports, f"{name} {how}: no report mailed"
        text = reports[-1]
        assert "damaged" in text and "tampering" in text, \
            f"{name} {how}: the report does not say the state was damaged:\n{text}"
        # The job started again: the next runs are clean, the state loads.
        for again in dict.fromkeys((writer, job, "report")):
            status, _out, err = system.run(again)
            runs += 1
            assert_clean(err, f"{again} after {name} {how}")
            assert status in (0, 1), f"{again} after {name} {how}: exit {status}: {err}"
        system.check_loads()
        later = system.mails("report")[-1]
        assert "damaged" not in later, f"{name} {how}: still damaged in the next report"
        # What another job saw is not lost with the damaged state.
        if job in ("report", "watch"):
            assert count_in(system.mails("report"), tags[0]) == 1, \
                f"{name} {how}: {tags[0]} not reported once"
        shutil.rmtree(system.top)
    record(runs=runs, files=1, damages=len(damages))
