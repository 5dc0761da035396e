# SPDX-License-Identifier: GPL-2.0-or-later
"""SIGKILL at random points of every job, again and again.

Before each run a change the job sees is made; the job is started, and
once systraq is imported (the job itself begins) it is killed, with
whatever it started (workers, sendmail), at a random point of its own
progress: at the Nth audit event (every open, rename, unlink, fork,
subprocess...) of its main process, N drawn below the count of a whole
run with a change to find.  Where the kill lands does not depend on how
fast or busy the machine is.  After each kill the states and the spool
load.  At the end, after clean runs, every change made is in a report
(none lost) and in one only, and alerted at most once.

One window is left, as in every program that hands mail to an MTA: a
kill after sendmail took the message and before systraq heard it exit 0
and wrote its journal.  The mail went out, systraq cannot know it, and
the next run sends its changes again (at least once, never lost).  Such
a mail is "unconfirmed": a change may be in one of those and in one
other mail, never in two others.  The test counts these kills.
"""

import random
import shutil
import signal
import os
import time

import pytest

from tests.hardening.conftest import scaled
from tests.hardening.faultkit import JOBS, System, copy_of, count_in

FILES = scaled(1000, 5000)
COLLECTORS = ("snapshot-root", "snapshot-pub", "contents", "packages", "audit")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    system = System(tmp_path_factory.mktemp("kill-template"), files=FILES)
    system.baseline()
    return system


def counted(system, job, tmp_path):
    """Seconds from the start of the job itself to its end, and the audit
    events its main process raised meanwhile."""
    count = os.path.join(tmp_path, "events")
    proc = system.start(job, ready=True, count_events=count)
    start = time.monotonic()
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode in (0, 1), f"{job}: {err}"
    with open(count) as handle:
        return time.monotonic() - start, int(handle.read())


@pytest.mark.parametrize("job", sorted(JOBS))
def test_sigkill_at_random_points(template, tmp_path, job, scale, record):
    system = copy_of(template, tmp_path)
    rng = random.Random(job)
    kills = scale(5, 50)
    # As the killed runs will be: with a change to find (the first run
    # after the baseline may do more, as the check's first alert).
    system.change(None if job in ("report", "check", "watch") else job)
    counted(system, job, tmp_path)
    system.change(None if job in ("report", "check", "watch") else job)
    duration, events = counted(system, job, tmp_path)
    tags = []
    inside = 0
    unconfirmed = set()
    for _ in range(kills):
        tags += system.change(None if job in ("report", "check", "watch") else job)
        if job == "report":
            for collector in COLLECTORS:
                system.run_ok(collector)
        before = set(system.mail_files())
        # Below the whole run's count: how many events one run raises
        # varies a little (how its workers' batches arrive).
        proc = system.start(job, ready=True, kill_at_event=rng.randint(1, events * 9 // 10))
        proc.communicate(timeout=600)
        killed = proc.returncode == -signal.SIGKILL
        if killed:
            inside += 1
            # sendmail runs in a session of its own: let it finish.
            system.wait_for_strays()
            unconfirmed |= set(system.mail_files()) - before
        system.check_loads()
    # Clean runs: the job, every collector, the report.
    system.run_ok(job)
    for collector in COLLECTORS:
        system.run_ok(collector)
    system.run_ok("report")
    system.check_loads()
    reports = system.mails("report")
    confirmed = (system.mails("report", exclude=unconfirmed),
                 system.mails("alert", exclude=unconfirmed))
    lost, twice = [], []
    for tag in tags:
        if count_in(reports, tag) == 0:
            lost.append(tag)
        if count_in(confirmed[0], tag) > 1:
            twice.append(tag)
        if count_in(confirmed[1], tag) > 1:
            twice.append(f"{tag} (alert)")
    assert not lost, f"{job}: changes never reported: {lost}"
    assert not twice, f"{job}: changes mailed twice: {twice}"
    assert inside == kills, f"{job}: only {inside} of {kills} kills landed inside the job"
    shutil.rmtree(system.top)
    record(runs=kills, files=FILES, kills_inside=inside, job_seconds=round(duration, 2),
           job_events=events,
           unconfirmed_mails=len(unconfirmed))
