# SPDX-License-Identifier: GPL-2.0-or-later
"""Package tests: the built .deb installed, run and purged in a chroot of
the Debian release under test ($SYSTRAQ_TEST_SUITE, trixie by default)."""

import email
import email.policy
import glob
import mailbox as mbox
import os
import re
import tempfile
import time

import pytest

from tests.chroot import SUITE, Chroot

# The .deb built for the release under test (tools/release build).
BUILD = os.environ.get("SYSTRAQ_BUILD",
                       os.path.join(os.path.dirname(__file__), "..", "..", "build", SUITE))


# No daemon a package test installs may start in the chroot; systraq's
# first baseline, a job that ends by itself, starts as on a real system
# (debian/systraq.postinst asks policy-rc.d as deb-systemd-invoke does).
POLICY_RC_D = """#!/bin/sh
case "$1" in
systraq-baseline.service) exit 0 ;;
esac
exit 101
"""
FIRST_BASELINE = "/var/lib/systraq/first-baseline"


@pytest.fixture(scope="session")
def deb():
    debs = sorted(glob.glob(os.path.join(BUILD, "systraq_*_*.deb")))
    if not debs:
        pytest.fail(f"no systraq_*_*.deb in {BUILD}: run 'make deb RELEASES={SUITE}' first")
    return debs[-1]


@pytest.fixture(scope="module")
def chroot():
    if os.geteuid() != 0:
        pytest.fail("package tests need root (debootstrap, chroot, mount namespaces)")
    with tempfile.TemporaryDirectory(prefix="systraq-chroot-") as parent:
        box = Chroot(parent)
        box.write("/usr/sbin/policy-rc.d", POLICY_RC_D, mode=0o755)
        try:
            yield box
        finally:
            box.destroy()


def set_option(text, section, key, value):
    """systraq.conf ``text`` with ``key = value`` in ``[section]``: the
    uncommented line of the key gets the value (postinst writes mailto and
    enabled so), or a line is added below the section's header."""
    header = f"\n[{section}]\n"
    assert header in text, section
    start = text.index(header) + len(header)
    end = text.find("\n[", start)
    end = len(text) if end < 0 else end + 1
    body = text[start:end]
    line = re.compile(rf"^[ \t]*{re.escape(key)}[ \t]*=.*$", re.M)
    if line.search(body):
        body = line.sub(f"{key} = {value}", body, count=1)
    else:
        body = f"{key} = {value}\n" + body
    return text[:start] + body + text[end:]


def mailbox(chroot, user="admin"):
    """The messages in ``user``'s mailbox (/var/mail/USER), oldest first."""
    path = f"/var/mail/{user}"
    if not chroot.exists(path):
        return []
    box = mbox.mbox(chroot.host(path), factory=None, create=False)
    found = [email.message_from_bytes(m.as_bytes(), policy=email.policy.default)
             for m in box]
    box.close()
    return found


def exim_queue(chroot):
    """How many messages exim holds, not yet delivered (None: no exim)."""
    result = chroot.run("exim4 -bpc", check=False)
    return int(result.stdout) if result.returncode == 0 and result.stdout.strip().isdigit() \
        else None


def wait_for_mail(chroot, count, user="admin", flush=True, timeout=60, diagnose=None):
    """``user``'s mailbox once it holds ``count`` messages and exim holds
    none still to deliver (exim delivers in a process of its own, after
    sendmail returned): a message that should not come would have come by
    then, whatever the machine's speed.  ``flush``: make exim run its
    queue each round (outside a booted system no daemon does; under
    systemd the unit must let the delivery finish by itself).
    ``diagnose``: a callable whose text is shown on failure."""
    deadline = time.monotonic() + timeout
    while True:
        if flush:
            chroot.run("exim4 -qff", check=False)
        settled = exim_queue(chroot) in (0, None)
        found = mailbox(chroot, user)
        if (settled and len(found) >= count) or time.monotonic() > deadline:
            if len(found) != count or not settled:
                raise AssertionError(f"{count} messages expected, found: "
                                     f"{[m['Subject'] for m in found]}"
                                     f"{'' if settled else ' (exim still holds some)'}\n"
                                     + (diagnose() if diagnose else ""))
            return found
        time.sleep(0.5)


def after_dpkg(chroot):
    """Once the clock is past the second of dpkg.log's last line: dpkg.log
    has whole seconds, and a change in the second of a run's last line is
    taken for the run's (systraq(8), CAVEATS).  An admin's change made
    after apt returned lies in a later second."""
    # In the chroot: its clock, its time zone, as dpkg wrote the line.
    chroot.run('last=$(date -d "$(tail -n 1 /var/log/dpkg.log | cut -c 1-19)" +%s)'
               ' && until [ "$(date +%s)" -gt "$last" ]; do sleep 0.05; done')


def wait_for_first_baseline(chroot, timeout=900):
    """Once the first baseline the postinst started in the background is
    done: it removes its marker when every job has run."""
    deadline = time.monotonic() + timeout
    while chroot.exists(FIRST_BASELINE):
        if time.monotonic() > deadline:
            # flock -n succeeds only when no baseline holds the lock.
            idle = chroot.run(f"flock -n -s {FIRST_BASELINE} true", check=False).returncode == 0
            raise AssertionError("the first baseline did not finish"
                                 + (" and is not running" if idle else ""))
        time.sleep(0.2)
