# SPDX-License-Identifier: GPL-2.0-or-later
"""The realtime watcher installed in a chroot of the release under test, with exim4
delivering its alert to a mailbox.

The chroot has no systemd: the watcher is started as its unit starts it
(the unit's condition first, then ``systraq watch`` as debian-systraq,
whose alert goes through exim's setuid sendmail), in the background of
one chroot command; the unit under systemd is for a test that boots one.
"""

import os
import time

import pytest

from tests.package.conftest import after_dpkg, mailbox, set_option, wait_for_first_baseline
from tests.package.test_report import ADMIN, MBOX, body

UNIT = "/lib/systemd/system/systraq-watch.service"
# The systraq user, as the unit runs the watcher: setpriv changes the ids
# and execs, so $! is the watcher itself (runuser would stay its parent,
# and exit 143 on SIGTERM).
AS_USER = ("setpriv --reuid debian-systraq --regid debian-systraq --init-groups"
           " env HOME=/var/lib/systraq USER=debian-systraq LOGNAME=debian-systraq")
# A shell function: wait until the condition holds, for as long as the
# watcher ($watcher) runs; 300 s at most, only against a hang.
WAITFOR = ("waitfor() { n=0; until eval \"$1\"; do kill -0 $watcher 2>/dev/null || return 1;"
           " n=$((n + 1)); [ $n -lt 6000 ] || return 1; sleep 0.05; done; };")


def test_the_unit_is_shipped_without_no_new_privileges(chroot, deb):
    chroot.copy_in(deb, "/tmp/systraq.deb")
    chroot.apt_install("/tmp/systraq.deb", "exim4-daemon-light")
    wait_for_first_baseline(chroot)
    if not chroot.exists(UNIT):
        pytest.skip("debian/rules does not install systraq-watch.service yet "
                    "(dh_installsystemd --name=systraq-watch)")
    text = chroot.read(UNIT).decode()
    assert "User=debian-systraq" in text
    assert "ExecCondition=/usr/sbin/systraq watch --condition" in text
    settings = [line.split("=", 1)[0] for line in text.splitlines()
                if "=" in line and not line.startswith("#")]
    assert "NoNewPrivileges" not in settings


def test_the_watcher_mails_a_new_account_within_10_seconds(chroot):
    chroot.run(f"useradd -m -s /bin/bash {ADMIN}")
    conf = chroot.read("/etc/systraq/systraq.conf").decode()
    conf = set_option(conf, "report", "mailto", ADMIN)
    chroot.write("/etc/systraq/systraq.conf", conf)
    # Disabled by default: the unit's condition says no, quietly.
    assert chroot.run("systraq watch --condition", check=False).returncode == 1
    refused = chroot.run("runuser -u debian-systraq -- systraq watch", check=False)
    assert refused.returncode == 2 and "[watch] enabled = no" in refused.stderr
    chroot.write("/etc/systraq/systraq.conf", set_option(conf, "watch", "enabled", "yes"))
    assert chroot.run("systraq watch --condition", check=False).returncode == 0
    # The baselines, as the hourly check makes them.
    chroot.run("systraq check", check=False)
    # Started as the unit does; a user added once it watches (and in a
    # later second than apt's run: dpkg.log has whole seconds, and a
    # change in the second of its last line is taken for the run's); the
    # watcher stopped with SIGTERM once it sent the alert.
    after_dpkg(chroot)
    script = (f"{WAITFOR} {AS_USER} systraq watch 2>/tmp/watch.log & watcher=$!; "
              "waitfor 'grep -qs watching /tmp/watch.log'; "
              "date +%s.%N >/tmp/changed; useradd -s /bin/sh mallory; "
              "waitfor \"grep -qs 'alert sent' /tmp/watch.log\"; "
              "kill -TERM $watcher; wait $watcher")
    started = time.monotonic()
    result = chroot.run(script, check=False)
    log = chroot.read("/tmp/watch.log").decode()
    assert result.returncode == 0, log + result.stderr
    assert "alert sent" in log, log
    assert log.rstrip().endswith("stopped"), log
    deadline = started + 40
    found = []
    while time.monotonic() < deadline and not found:
        chroot.run("exim4 -qff", check=False)
        found = [m for m in mailbox(chroot) if "alert:" in m["Subject"]]
        time.sleep(0.5)
    assert found, log
    assert "/etc/passwd" in body(found[0])
    # Delivered within 10 s of the change (exim delivers at once, in a
    # process of its own; the chroot shares the host's clock).
    changed = float(chroot.read("/tmp/changed"))
    delivered = os.stat(chroot.host(MBOX)).st_mtime
    assert delivered - changed < 10, (delivered - changed, log)


def test_accounts_a_package_adds_are_the_operations_not_an_alert(chroot):
    # uuid-runtime's postinst adds the uuidd account with adduser while
    # the watcher runs: /etc/passwd changes during the dpkg run, so the
    # report lists it with the operation and no alert is mailed.
    chroot.apt_install("adduser", "libsmartcols1")
    chroot.run("cd /tmp && apt-get download -q uuid-runtime")
    before = len([m for m in mailbox(chroot) if "alert:" in m["Subject"]])
    # Stopped once what dpkg changed is queued: the watcher decides on
    # the alert in the same turn, which SIGTERM lets it finish.
    script = ("spooled() { ls /var/lib/systraq/spool | wc -l; }; "
              f"{WAITFOR} {AS_USER} systraq watch 2>/tmp/watch-dpkg.log & watcher=$!; "
              "waitfor 'grep -qs watching /tmp/watch-dpkg.log'; "
              "before=$(spooled); dpkg -i /tmp/uuid-runtime_*.deb >/dev/null; "
              "getent passwd uuidd; "
              "waitfor '[ $(spooled) -gt $before ]'; "
              "kill -TERM $watcher; wait $watcher")
    result = chroot.run(script, check=False)
    log = chroot.read("/tmp/watch-dpkg.log").decode()
    assert result.returncode == 0 and "uuidd" in result.stdout, log + result.stderr
    assert "alert sent" not in log, log
    chroot.run("exim4 -qff", check=False)
    assert len([m for m in mailbox(chroot) if "alert:" in m["Subject"]]) == before
    chroot.run("systraq report", check=False)
    chroot.run("exim4 -qff", check=False)
    reports = [m for m in mailbox(chroot) if "alert:" not in m["Subject"]]
    assert reports, log
    text = body(reports[-1])
    # The account is one warning (passwd, group, shadow... below it),
    # labelled with the dpkg run that made it.
    line = next((line for line in text.splitlines()
                 if line.startswith("* account uuidd added: passwd")), text)
    assert "changed while dpkg ran: dpkg" in line, text
