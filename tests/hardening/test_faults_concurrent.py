# SPDX-License-Identifier: GPL-2.0-or-later
"""Two copies of each job started at once.

One runs; the other waits for it or gives up with one line (status 3).
Nothing interleaves: the states and the spool load, and each change is
reported once (and alerted at most once).
"""

import shutil
import subprocess

import pytest

from tests.hardening.conftest import scaled
from tests.hardening.faultkit import JOBS, System, assert_clean, copy_of, count_in, one_line

FILES = scaled(300, 3000)
COLLECTORS = ("snapshot-root", "snapshot-pub", "contents", "packages", "audit")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    system = System(tmp_path_factory.mktemp("concurrent-template"), files=FILES)
    system.baseline()
    return system


@pytest.mark.parametrize("job", sorted(JOBS))
def test_two_copies_at_once(template, tmp_path, job, scale, record):
    system = copy_of(template, tmp_path)
    rounds = scale(1, 5)
    tags = []
    waited = gave_up = 0
    for _ in range(rounds):
        tags += system.change()
        if job == "report":
            for collector in COLLECTORS:
                system.run_ok(collector)
        procs = [system.start(job, ready=True) for _ in range(2)]
        results = []
        for proc in procs:
            try:
                out, err = proc.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            results.append((proc.returncode, err.decode("utf-8", "replace")))
        for status, err in results:
            if status == 3:
                one_line(err, f"{job}, the copy that gave up")
                gave_up += 1
            else:
                assert status in (0, 1), f"{job}: exit {status}: {err}"
                assert_clean(err, job)
                waited += 1
        assert any(status in (0, 1) for status, _err in results), f"{job}: neither ran"
        system.check_loads()
    for collector in COLLECTORS:
        system.run_ok(collector)
    system.run_ok("report")
    reports, alerts = system.mails("report"), system.mails("alert")
    for tag in tags:
        if tag.startswith("/usr/local/bin/") and job not in ("audit", "report"):
            continue   # the audit runs only at the end: reported once all the same
        assert count_in(reports, tag) == 1, f"{job}: {tag} reported {count_in(reports, tag)} times"
        assert count_in(alerts, tag) <= 1, f"{job}: {tag} alerted twice"
    shutil.rmtree(system.top)
    record(runs=2 * rounds, files=FILES, ran_both=waited, gave_up=gave_up)
