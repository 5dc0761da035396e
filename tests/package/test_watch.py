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

from tests.package.conftest import mailbox, set_option
from tests.package.test_report import ADMIN, MBOX, body

UNIT = "/lib/systemd/system/systraq-watch.service"


def test_the_unit_is_shipped_without_no_new_privileges(chroot, deb):
    chroot.copy_in(deb, "/tmp/systraq.deb")
    chroot.apt_install("/tmp/systraq.deb", "exim4-daemon-light")
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
    # Started as the unit does; a user added once it watches; the
    # watcher stopped with SIGTERM once it sent the alert (runuser and
    # timeout pass the signal on; the timeout only bounds a hang).
    script = ("runuser -u debian-systraq -- timeout -s TERM 300 systraq watch "
              "2>/tmp/watch.log & watcher=$!; "
              "until grep -q watching /tmp/watch.log; do sleep 0.05; done; "
              "date +%s.%N >/tmp/changed; useradd -s /bin/sh mallory; "
              "until grep -q 'alert sent' /tmp/watch.log; do "
              "  kill -0 $watcher 2>/dev/null || break; sleep 0.05; done; "
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
              "runuser -u debian-systraq -- timeout -s TERM 300 systraq watch "
              "2>/tmp/watch-dpkg.log & watcher=$!; "
              "until grep -q watching /tmp/watch-dpkg.log; do sleep 0.05; done; "
              "before=$(spooled); dpkg -i /tmp/uuid-runtime_*.deb >/dev/null; "
              "getent passwd uuidd; "
              "until [ $(spooled) -gt $before ]; do "
              "  kill -0 $watcher 2>/dev/null || break; sleep 0.05; done; "
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
    line = next(line for line in text.splitlines() if line.startswith("* /etc/passwd:"))
    assert "changed while dpkg ran: dpkg" in line, text
