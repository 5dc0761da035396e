# SPDX-License-Identifier: GPL-2.0-or-later
"""The state's filesystem full.

The state directory of a fake system is a small tmpfs, filled up to the
last byte.  Every job then exits 3 with one clear line, leaves every
state and spool file as it was (byte for byte: nothing half-written),
and once space returns the next runs report every pending change, once.
Needs root (mount); the tmpfs is always unmounted.
"""

import os
import shutil
import subprocess

import pytest

from tests.hardening.faultkit import JOBS, System, count_in, one_line

COLLECTORS = ("snapshot-root", "snapshot-pub", "contents", "packages", "audit")


def fill(directory):
    """Fill the filesystem of ``directory`` to the last byte."""
    path = os.path.join(directory, "filler")
    with open(path, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    with open(os.path.join(directory, "filler-small"), "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0")
        except OSError:
            pass
    return path


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_state_filesystem_loses_and_repeats_nothing(tmp_path, record, scale):
    files = scale(100, 1000)
    system = System(tmp_path / "sys", files=files)
    system.baseline()
    saved = str(tmp_path / "saved")
    shutil.copytree(system.state, saved, symlinks=True)
    shutil.rmtree(system.state)
    os.mkdir(system.state, 0o750)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0750", "tmpfs", system.state],
                   check=True)
    try:
        subprocess.run(["cp", "-a", saved + "/.", system.state], check=True)
        tags = system.change()
        # Pending changes: what a report would mail, and the check alert.
        for job in COLLECTORS:
            system.run_ok(job)
        tags += system.change()
        fill(system.state)
        before = system.state_files()
        mailed = system.mail_files()
        runs = 0
        for job in sorted(JOBS):
            status, _out, err = system.run(job)
            runs += 1
            line = one_line(err, f"{job} on a full disk")
            assert status == 3, f"{job} on a full disk: exit {status}: {line}"
            assert system.mail_files() == mailed, f"{job} mailed with a full state disk"
            after = system.state_files()
            changed = sorted(k for k in set(before) | set(after)
                             if before.get(k) != after.get(k))
            assert changed == [], f"{job} on a full disk changed {changed}"
            system.check_loads()
        os.unlink(os.path.join(system.state, "filler"))
        os.unlink(os.path.join(system.state, "filler-small"))
        for job in COLLECTORS + ("check", "report"):
            system.run_ok(job)
        system.check_loads()
        reports, alerts = system.mails("report"), system.mails("alert")
        for tag in tags:
            assert count_in(reports, tag) == 1, f"{tag} reported {count_in(reports, tag)} times"
            assert count_in(alerts, tag) <= 1, f"{tag} alerted twice"
    finally:
        subprocess.run(["umount", system.state], check=False)
    shutil.rmtree(system.top)
    record(runs=runs, files=files, state_files=len(before))
