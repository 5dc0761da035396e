# SPDX-License-Identifier: GPL-2.0-or-later
"""sendmail absent, failing or hanging: nothing is lost, nothing sent twice.

For each job that mails (report, check's alert, the watcher's alert):
with no sendmail, one that exits 75 (EX_TEMPFAIL) or 1, or one that
hangs (ended by the time limit of systraq/mail.py), the job exits 3 with
one line, keeps the message in /var/lib/systraq/reports/ and leaves its
changes queued; once sendmail works, the next run mails them, once.  A
hung sendmail leaves no process behind.
"""

import glob
import os
import shutil

import pytest

from systraq import mail
from tests.hardening.faultkit import System, copy_of, count_in, one_line, wait_gone

FAILURES = ("absent", "75", "1", "hang")


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    system = System(tmp_path_factory.mktemp("mail-template"), files=50)
    system.baseline()
    return system


@pytest.mark.parametrize("job", ("report", "check", "watch"))
@pytest.mark.parametrize("failure", FAILURES)
def test_a_failed_delivery_is_kept_and_sent_once_later(template, tmp_path, job, failure,
                                                       scale, record):
    system = copy_of(template, tmp_path)
    tags = system.change()
    if job == "report":
        for collector in ("snapshot-root", "snapshot-pub", "contents", "audit"):
            system.run_ok(collector)
    system.mail_mode(failure)
    # The report's hang waits out mail.py's own limit in the full run.
    limit = scale(3, mail.TIMEOUT if job == "report" else 3) if failure == "hang" else None
    status, _out, err = system.run(job, mail_timeout=limit)
    line = one_line(err, f"{job} with sendmail {failure}")
    assert status == 3, f"{job} with sendmail {failure}: exit {status}: {err}"
    assert "sendmail" in line, line
    kept = glob.glob(os.path.join(system.state, "reports", "undelivered-*.eml"))
    assert kept, f"{job}: the undelivered message was not kept"
    assert system.mails() == []
    if failure == "hang":
        pids = [int(p) for line in open(os.path.join(system.mail_dir, "sendmail.hung"))
                for p in line.split()]
        assert wait_gone(pids) == [], f"{job}: the hung sendmail is still running"
    system.check_loads()

    system.mail_mode("ok")
    status, _out, err = system.run(job)
    assert status in (0, 1), f"{job} after sendmail works again: exit {status}: {err}"
    kind = "report" if job == "report" else "alert"
    critical = [t for t in tags if t.startswith("/etc/cron.d/")]
    for tag in (tags if kind == "report" else critical):
        assert count_in(system.mails(kind), tag) == 1, f"{job}: {tag} not mailed once"
    # Once more: nothing new is mailed again.
    system.run(job)
    system.run_ok("report")
    for tag in (tags if kind == "report" else critical):
        assert count_in(system.mails(kind), tag) == 1, f"{job}: {tag} mailed twice"
    assert all(count_in(system.mails("report"), tag) == 1 for tag in critical)
    shutil.rmtree(system.top)
    record(runs=4, seconds_limit=limit or 0)
