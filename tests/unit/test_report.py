# SPDX-License-Identifier: GPL-2.0-or-later
"""The report: sections, the package operations the collectors' records
name, formats (pinned by golden files), the mail policy, delivery exactly
once, alerts.  Which operation made a change is the collectors' to say
(attribution.Judge, tested in test_attribution.py)."""

import fcntl
import json
import os
import time

import pytest

from systraq import delivery, report
from systraq.config import load as load_config
from systraq.mail import DeliveryError
from systraq.spool import Spool
from tests.unit.test_packages import FakeDpkg

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
NOW = 1_795_242_600          # 2026-11-21 06:30 UTC
DAY = 86400
HOST = "host.example.org"


# Times in reports are shown in UTC (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("utc")


class Probe:
    """probes.collect's stand-in: fixed sections, warnings and state."""

    def __init__(self, warnings=()):
        self.warnings = list(warnings)
        self.previous = []

    def __call__(self, settings, config, previous, now=None):
        self.previous.append(previous)

        class Result:
            sections = [("Release", ["Debian GNU/Linux 12 (bookworm), 12.8"]),
                        ("Uptime and load", ["up 3 days, 4:05; load 0.10 0.05 0.01"])]
            warnings = self.warnings
            state = {"listening": ["tcp 0.0.0.0:22"]}
            data = {"release": {"pretty_name": "Debian GNU/Linux 12 (bookworm)"}}
        return Result()


class Log:
    def __init__(self):
        self.lines = []

    def __call__(self, priority, line):
        self.lines.append((priority, line))


def conf(root, text=""):
    return load_config(root.write("/etc/systraq/systraq.conf", text))


def stamp(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def log_at(dpkg, epoch, line):
    """A dpkg.log line at time ``epoch`` (UTC, as the tests' TZ)."""
    dpkg.log(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + " " + line)


def queue(root, source, *records, now=NOW - 3600, group=None):
    for record in records:
        record.setdefault("source", source.split("_")[0])
        record.setdefault("time", stamp(now))
    return Spool(root.settings()).add(source, list(records), now=now, group=group)


def build(root, text="", probe=None, audit=False, packages_state=False, now=NOW, **kwargs):
    """The report, with the standing findings the audit and the package
    check would have left: ``audit`` as audit.current gives them,
    ``packages_state`` as packages.state's header holds them."""
    settings = root.settings()
    if audit:
        from systraq import audit as auditing
        auditing.save_current(settings, audit["time"], audit.get("findings", []),
                              audit.get("counts", {}), skipped=audit.get("skipped", ()))
    if packages_state:
        from systraq import packages
        packages.save_current(settings, packages_state["time"], packages_state["findings"])
    # As the report command does: a delivery a killed run left half done
    # is finished first.
    delivery.finish_journal(settings)
    return report.gather(settings, conf(root, text), now=now, host=HOST,
                         probe=probe or Probe(), **kwargs)


def sendmail(root, tmp_path, status=0):
    """A sendmail that keeps each message it is given, or fails."""
    out = tmp_path / f"mails-{status}"
    out.mkdir(exist_ok=True)
    script = tmp_path / f"sendmail-{status}"
    script.write_text(f"#!/bin/sh\nn=$(ls {out} | wc -l)\ncat > {out}/$n.eml\n"
                      + (f"echo 'mail queue full' >&2\nexit {status}\n" if status else ""))
    script.chmod(0o755)
    return str(script), out


def mails(out):
    return [open(out / name, "rb").read().decode() for name in sorted(os.listdir(out))]


@pytest.fixture
def dpkg(root):
    fake = FakeDpkg(root)
    fake.install("openssh-server", "1:9.2p1-2", {
        "/usr/sbin/sshd": "sshd\n", "/etc/ssh/sshd_config": "Port 22\n"},
        conffiles=("/etc/ssh/sshd_config",))
    root.mkdir("/var/log")
    return fake


def test_a_clean_system_says_no_warnings_in_one_line(root):
    built = build(root)
    text = report.render_text(built)
    assert built.warnings == [] and built.subject == f"[systraq] {HOST}: no warnings"
    assert "1. Warnings\n-----------\nNo warnings.\n\n2. Changes made" in text


def test_a_report_made_while_the_first_baseline_runs_says_so(root):
    """The postinst makes /var/lib/systraq/first-baseline and starts the
    baseline outside dpkg; it holds a lock on the file while it runs and
    removes it at the end."""
    marker = root.write("/var/lib/systraq/first-baseline", "")
    os.utime(marker, (NOW - 120, NOW - 120))
    read, write = os.pipe()
    holder = os.fork()
    if holder == 0:     # the baseline: holds the lock until told
        try:
            fd = os.open(marker, os.O_WRONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.read(read, 1)
        finally:
            os._exit(0)
    try:
        while True:     # until the child holds it
            probe = os.open(marker, os.O_RDONLY)
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                break
            finally:
                os.close(probe)
            time.sleep(0.01)
        built = build(root)
        note = "the first baseline is still being recorded (since 06:28)"
        assert built.notes[0].startswith(note)
        text = report.render_text(built)
        assert text.splitlines()[2].startswith("Note: " + note)
        assert json.loads(report.render_json(built))["notes"][0].startswith(note)
    finally:
        os.write(write, b"x")
        os.waitpid(holder, 0)
    # Left behind and nobody at work on it (killed, or never started).
    assert build(root).notes[0].startswith(
        "the first baseline has not finished (started 06:28) and is not running")
    os.unlink(marker)
    built = build(root)
    assert built.first_baseline is None and "Note:" not in report.render_text(built)


def test_warnings_come_first_most_serious_first_and_one_entry_per_path(root):
    queue(root, "contents", {"path": "/etc/motd", "change": "content",
                             "diff": "--- /etc/motd\n+++ /etc/motd\n@@ -1 +1 @@\n-a\n+b\n"})
    queue(root, "snapshot_pub",
          {"mode": "pub", "path": "/etc/motd", "change": "content"},
          {"mode": "pub", "path": "/etc/passwd", "change": "content"},
          {"mode": "pub", "path": "/usr/local/bin/x", "change": "mode", "before": "0755",
           "after": "4755", "flags": ["setuid gained"]})
    built = build(root)
    assert [(w.path, w.rank, w.critical) for w in built.warnings] == [
        ("/etc/passwd", report.CRITICAL, True), ("/usr/local/bin/x", report.SERIOUS, False),
        ("/etc/motd", report.CHANGE, False)]
    motd = built.warnings[-1]
    assert motd.text == "/etc/motd: content changed"
    assert motd.detail[-2:] == ["-a", "+b"]
    assert built.warnings[0].text == "/etc/passwd: content changed [critical]"
    assert built.warnings[1].text == ("/usr/local/bin/x: mode 0755 -> 4755 [setuid gained]")


def test_a_change_a_package_operation_made_is_its_not_a_warning(dpkg):
    """What a collector found a dpkg run made (attribution.Judge, the
    record's "explained") is counted with its operation; the rest of the
    same window stays a warning."""
    root = dpkg.root
    op = NOW - 5000
    log_at(dpkg, op, "upgrade openssh-server:amd64 1:9.2p1-2 1:9.2p1-2+deb12u3")
    root.write("/var/log/apt/history.log",
               "\nStart-Date: " + time.strftime("%Y-%m-%d  %H:%M:%S", time.gmtime(op - 5))
               + "\nCommandline: apt-get upgrade\nRequested-By: alice (1000)\n"
               "Upgrade: openssh-server:amd64 (1:9.2p1-2, 1:9.2p1-2+deb12u3)\n"
               "End-Date: " + time.strftime("%Y-%m-%d  %H:%M:%S", time.gmtime(op + 5)) + "\n")
    since = stamp(NOW - 7200)
    queue(root, "contents", {"path": "/etc/ssh/sshd_config", "change": "content",
                             "since": since, "diff": "-Port 22\n+Port 2222\n",
                             "explained": {"start": op, "end": op, "tool": "apt-get",
                                           "package": "openssh-server"}},
          {"path": "/etc/passwd", "change": "content", "since": since,
           "diff": "+sshd:x:100:65534::/run/sshd:/usr/sbin/nologin\n"})
    built = build(root, packages_state={"format": 1, "time": NOW - 600, "findings": {}})
    # The account the passwd diff adds is the one warning; the file's own
    # entry below it.
    assert [w.text for w in built.warnings] == ["account sshd added: passwd [critical]"]
    assert built.warnings[0].detail[0] == "/etc/passwd: content changed [critical]"
    (operation,) = built.operations
    assert operation.text(NOW) == ("apt-get upgrade at 05:06 for alice: 1 package, "
                                   "1 watched file - all match their packages")


def test_an_operation_the_logs_no_longer_hold_is_named_from_the_record(root):
    queue(root, "snapshot_pub", {"mode": "pub", "path": "/etc/x", "change": "content",
                                 "explained": {"start": NOW - 4000, "end": NOW - 3990,
                                               "tool": "apt-get", "requested_by": "bob",
                                               "commandline": "apt-get install x"}})
    built = build(root)
    assert built.warnings == []
    assert [o.text(NOW) for o in built.operations] == [
        "apt-get install x at 05:23 for bob: 1 package, 1 watched file - "
        "not yet checked against dpkg's sums"]


def test_an_operation_not_yet_checked_or_with_findings_says_so(dpkg):
    root = dpkg.root
    log_at(dpkg, NOW - 5000, "install openssh-server:amd64 <none> 1:9.2p1-2")
    built = build(root, packages_state={"format": 1, "time": NOW - 9000, "findings": {}})
    assert built.operations[0].text(NOW).endswith("not yet checked against dpkg's sums")
    state = {"format": 1, "time": NOW - 60, "findings": {
        "/usr/sbin/sshd": {"kind": "changed", "package": "openssh-server",
                           "first_seen": "2026-11-21"}}}
    built = build(root, packages_state=state)
    assert built.operations[0].verified is False
    assert [w.text for w in built.warnings] == [
        "/usr/sbin/sshd: differs from its package's sums (openssh-server) [since 2026-11-21]"]


def test_persistent_audit_and_probe_findings_are_warnings(root):
    audit = {"time": NOW - 3600, "counts": {"setuid": 21, "world_writable": 0},
             "findings": [{"source": "audit", "change": "uid 0", "account": "toor",
                           "text": "account toor has uid 0"}]}
    probe = Probe([{"source": "probes", "change": "new listening socket",
                    "text": "tcp 0.0.0.0:8123 is listening (it was not at the last report)"}])
    built = build(root, audit=audit, probe=probe)
    assert [w.text for w in built.warnings] == [
        "account toor has uid 0",
        "tcp 0.0.0.0:8123 is listening (it was not at the last report)"]
    assert "root audit 05:30: 21 setuid, 0 world-writable" in built.notes
    late = dict(audit, time=NOW - 3 * DAY)
    assert "the root audit (systraq audit) has not run since 2026-11-18 06:30" in [
        w.text for w in build(root, audit=late).warnings]


def golden_spool(root):
    queue(root, "snapshot_pub", {"mode": "pub", "change": "baseline", "count": 812,
                                 "path": "/var/lib/systraq/snapshot_pub.state"},
          now=NOW - 2 * DAY)
    queue(root, "contents", {"mode": "pub", "path": "/etc/cron.d/backup", "change": "created",
                             "diff": "--- /dev/null\n+++ /etc/cron.d/backup\n@@ -0,0 +1 @@\n"
                                     "+0 3 * * * root /usr/local/sbin/backup\n"})
    queue(root, "snapshot_root", {"mode": "root", "path": "/etc/shadow", "change": "content"},
          {"path": "/home/carol/.ssh/authorized_keys", "change": "added",
           "kind": "f", "mode": "0600", "owner": "carol", "group": "carol", "flags": []})
    queue(root, "packages", {"change": "changed", "path": "/usr/bin/ls", "package": "coreutils",
                             "first_seen": "2026-11-21", "warning": True})
    queue(root, "audit", {"change": "setuid added", "path": "/tmp/.x", "mode": "4755",
                          "owner": "root", "group": "root"})


def test_golden_text_and_json(root):
    golden_spool(root)
    probe = Probe([{"source": "probes", "change": "filesystem full", "path": "/var",
                    "text": "/var is 93% full (fill_warning 90%)"}])
    built = build(root, probe=probe, explain=False)
    for name, text in (("report.txt", report.render_text(built)),
                       ("report.json", report.render_json(built))):
        path = os.path.join(GOLDEN, name)
        if os.environ.get("SYSTRAQ_REGEN_GOLDEN"):
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
        with open(path, encoding="utf-8") as handle:
            assert text == handle.read(), name
    data = json.loads(report.render_json(built))
    assert sorted(data) == ["baselines", "format", "generated", "host", "notes",
                            "package_operations", "pending", "probes", "since", "subject",
                            "system", "warnings"]
    assert data["subject"] == f"[systraq] {HOST}: 6 warnings"


def test_delivery_marks_batches_only_after_sendmail_succeeded(root, tmp_path):
    queue(root, "snapshot_pub", {"mode": "pub", "path": "/etc/hosts", "change": "content"})
    settings, config = root.settings(), conf(root)
    failing, _ = sendmail(root, tmp_path, status=75)
    log = Log()
    built = build(root)
    with pytest.raises(DeliveryError) as info:
        delivery.deliver(settings, config, built, sendmail=failing, log=log)
    assert "exited with status 75: mail queue full" in str(info.value)
    assert "stay queued" in str(info.value)
    (kept,) = os.listdir(delivery.reports_dir(settings))
    assert kept.startswith(b"undelivered-") and len(Spool(settings).pending()) == 1
    assert any("delivery failed" in line for _, line in log.lines)

    working, out = sendmail(root, tmp_path)
    built = build(root, now=NOW + DAY)
    delivery.deliver(settings, config, built, sendmail=working, log=log)
    (message,) = mails(out)
    assert "Subject: [systraq] host.example.org: 1 warning" in message
    assert "/etc/hosts: content" in message and "Auto-Submitted: auto-generated" in message
    assert Spool(settings).pending() == [] and len(Spool(settings).delivered()) == 1
    assert os.listdir(delivery.reports_dir(settings)) == []
    # Nothing pending: the next report has no warnings and is not due.
    again = build(root, now=NOW + DAY + 3600)
    assert again.warnings == [] and not delivery.due(again, config)


def test_a_run_killed_after_sending_does_not_send_again(root, tmp_path):
    queue(root, "snapshot_pub", {"mode": "pub", "path": "/etc/hosts", "change": "content"})
    settings = root.settings()
    built = build(root)
    # The journal is written right after sendmail exited 0; the run dies.
    delivery._save_json(delivery.journal_path(settings),
                      {"batches": [os.fsdecode(b.name) for b in built.batches],
                       "state": {"last_mailed": NOW}})
    after = build(root, now=NOW + 60)
    assert after.warnings == [] and not os.path.exists(delivery.journal_path(settings))
    assert report.load_state(settings)["last_mailed"] == NOW


def test_policy_mails_warnings_daily_and_a_full_report_weekly(root):
    config = conf(root)
    quiet = build(root)
    assert delivery.due(quiet, config)                      # never mailed: the first one goes
    quiet.last_mailed = NOW - 6 * DAY
    assert not delivery.due(quiet, config)
    quiet.last_mailed = NOW - 7 * DAY
    assert delivery.due(quiet, config)
    quiet.last_mailed = NOW - 3600
    assert delivery.due(quiet, conf(root, "[report]\nmail_when = always\n"))
    assert not delivery.due(quiet, conf(root, "[report]\nfull_report_days = 0\n"))
    assert delivery.due(quiet, config, forced=True)
    queue(root, "snapshot_pub", {"mode": "pub", "path": "/etc/hosts", "change": "content"})
    noisy = build(root)
    noisy.last_mailed = NOW - 3600
    assert delivery.due(noisy, config)


def test_a_report_not_mailed_keeps_its_changes_queued(root, tmp_path):
    queue(root, "snapshot_pub", {"mode": "pub", "change": "baseline", "count": 3,
                                 "path": "/var/lib/systraq/snapshot_pub.state"})
    settings = root.settings()
    built = build(root)
    delivery.deliver(settings, conf(root), built, log=Log(), mailed=False)
    assert len(Spool(settings).pending()) == 1 and report.load_state(settings) == {}


def test_mail_off_keeps_the_report_as_a_file_and_counts_as_delivered(root):
    queue(root, "snapshot_pub", {"mode": "pub", "path": "/etc/hosts", "change": "content"})
    settings = root.settings()
    built = build(root, "[report]\nmailto =\n")
    kept = delivery.deliver(settings, conf(root, "[report]\nmailto =\n"), built, log=Log())
    assert b"/etc/hosts: content" in open(kept, "rb").read()
    assert os.stat(kept).st_mode & 0o777 == 0o640
    assert Spool(settings).pending() == []
    for day in range(1, delivery.KEEP_REPORTS + 5):
        delivery.deliver(settings, conf(root, "[report]\nmailto =\n"),
                       build(root, "[report]\nmailto =\n", now=NOW + day * DAY), log=Log())
    names = sorted(os.listdir(delivery.reports_dir(settings)))
    assert len(names) == delivery.KEEP_REPORTS and names[0] == b"report-20261126T063000.txt"


def test_the_probes_state_is_kept_only_with_a_delivered_report(root, tmp_path):
    settings, config = root.settings(), conf(root)
    working, _ = sendmail(root, tmp_path)
    probe = Probe()
    delivery.deliver(settings, config, build(root, probe=probe), sendmail=working, log=Log())
    build(root, probe=probe, now=NOW + DAY)
    assert probe.previous == [{}, {"listening": ["tcp 0.0.0.0:22"]}]


def test_each_warning_is_one_key_value_syslog_line(root):
    queue(root, "snapshot_pub", {"mode": "pub", "path": "/etc/my file", "change": "content"})
    log = Log()
    delivery.log_warnings(build(root), log)
    assert log.lines == [(4, 'warning=content source=snapshot rank=2 path="/etc/my file" '
                             'text="/etc/my file: content changed"')]


def test_the_textfile_says_warnings_last_success_and_pending(root, tmp_path):
    target = tmp_path / "systraq.prom"
    text = f"[report]\nmailto =\ntextfile = {target}\n"
    queue(root, "snapshot_pub", {"mode": "pub", "path": "/etc/hosts", "change": "content"})
    delivery.deliver(root.settings(), conf(root, text), build(root, text), log=Log())
    lines = [line for line in target.read_text().splitlines() if not line.startswith("#")]
    assert lines == ["systraq_warnings 1", f"systraq_last_success_timestamp_seconds {NOW}",
                     "systraq_pending_records 0"]


def test_a_critical_change_is_alerted_once_and_listed_in_the_report(root, tmp_path):
    queue(root, "snapshot_pub", {"mode": "pub", "path": "/etc/passwd", "change": "content"},
          {"mode": "pub", "path": "/etc/motd", "change": "content"})
    settings, config = root.settings(), conf(root)
    working, out = sendmail(root, tmp_path)
    alerted = delivery.alert(settings, config, now=NOW, host=HOST, sendmail=working, log=Log())
    assert [i.path for i in alerted] == ["/etc/passwd"]
    assert delivery.alert(settings, config, now=NOW + 3600, host=HOST, sendmail=working,
                        log=Log()) == []
    (message,) = mails(out)
    assert "Subject: [systraq] host.example.org: alert: /etc/passwd changed" in message
    assert "/etc/motd" not in message
    built = build(root)
    assert built.warnings[0].text == "/etc/passwd: content changed [critical; alert sent 06:30]"
    delivery.deliver(settings, config, built, sendmail=working, log=Log())
    assert json.load(open(report.alerts_path(settings))) == {"batches": {}}


def test_a_critical_path_changed_again_is_alerted_again(root, tmp_path):
    settings, config = root.settings(), conf(root)
    working, out = sendmail(root, tmp_path)
    queue(root, "snapshot_pub", {"mode": "pub", "path": "/etc/passwd", "change": "content"})
    assert len(delivery.alert(settings, config, now=NOW, host=HOST, sendmail=working,
                            log=Log())) == 1
    # A second new account the same day, before the daily report.
    queue(root, "snapshot_pub", {"mode": "pub", "path": "/etc/passwd", "change": "content"},
          now=NOW + 600)
    assert [i.path for i in delivery.alert(settings, config, now=NOW + 3600, host=HOST,
                                         sendmail=working, log=Log())] == ["/etc/passwd"]
    assert delivery.alert(settings, config, now=NOW + 7200, host=HOST, sendmail=working,
                        log=Log()) == []
    assert len(mails(out)) == 2


def test_a_failed_alert_is_kept_and_tried_again(root, tmp_path):
    queue(root, "contents", {"mode": "pub", "path": "/etc/sudoers.d/x", "change": "created"})
    settings, config = root.settings(), conf(root)
    failing, _ = sendmail(root, tmp_path, status=1)
    with pytest.raises(DeliveryError):
        delivery.alert(settings, config, now=NOW, host=HOST, sendmail=failing, log=Log())
    working, out = sendmail(root, tmp_path)
    assert len(delivery.alert(settings, config, now=NOW + 3600, host=HOST, sendmail=working,
                            log=Log())) == 1
    assert len(mails(out)) == 1


def test_standing_findings_of_any_collector_are_read_the_same_way(root):
    """The report knows no collector: a source it has never heard of
    shows its standing findings and notes, and a damaged file is said."""
    from systraq import standing
    settings = root.settings()
    standing.save(settings, "future", [{"source": "future", "change": "odd", "path": "/etc/x",
                                        "text": "/etc/x is odd"}], time=NOW - 600,
                  notes=["future check {time}: all else fine"],
                  late={"after": 300, "text": "the future check has not run since {time}"})
    built = build(root)
    texts = [w.text for w in built.warnings]
    assert "/etc/x is odd" in texts
    assert "the future check has not run since 06:20" in texts
    assert "future check 06:20: all else fine" in built.notes
    with open(standing.path_of(settings, "future"), "wb") as handle:
        handle.write(b"{cut short")
    texts = [w.text for w in build(root).warnings]
    assert any(t.startswith(os.fsdecode(standing.path_of(settings, "future")) + " is damaged")
               for t in texts), texts


def test_content_changes_of_one_file_are_one_fact(root):
    queue(root, "snapshot_pub", {"mode": "pub", "path": "/etc/passwd", "change": "content",
                                 "size_before": 923, "size_after": 964}, now=NOW - 7200)
    queue(root, "snapshot_pub", {"mode": "pub", "path": "/etc/passwd", "change": "content",
                                 "size_before": 964, "size_after": 990},
          {"mode": "pub", "path": "/etc/passwd", "change": "mode", "before": "0644",
           "after": "0664", "flags": []})
    queue(root, "contents", {"mode": "pub", "path": "/etc/passwd", "change": "content",
                             "diff": "+x\n"})
    (item,) = build(root).warnings
    assert item.head == "/etc/passwd: content changed (923 -> 990 bytes); mode 0644 -> 0664"
    assert item.detail == ["+x"]



def test_a_critical_file_changed_while_dpkg_ran_is_listed_not_alerted(dpkg, tmp_path):
    # adduser, run by a maintainer script, rewrites /etc/passwd: the
    # collector found it changed while dpkg ran ("during"), with no
    # package of the run owning it.  The report lists it with the
    # operation, the alert stays silent.
    root = dpkg.root
    made = NOW - 600
    log_at(dpkg, made - 9, "install systemd:amd64 <none> 252.31-1~deb12u1")
    log_at(dpkg, made + 2, "status installed systemd:amd64 252.31-1~deb12u1")
    queue(root, "snapshot_pub", {"mode": "pub", "path": "/etc/passwd", "change": "content",
                                 "since": stamp(made - 600),
                                 "during": {"start": made - 9, "end": made + 2,
                                            "tool": "dpkg"}}, now=made + 60)
    settings, config = root.settings(), conf(root)
    working, out = sendmail(root, tmp_path)
    assert delivery.alert(settings, config, now=made + 90, host=HOST, sendmail=working,
                        log=Log()) == []
    assert mails(out) == []
    (item,) = build(root, now=made + 120).warnings
    assert item.critical and item.during
    assert item.text.startswith("/etc/passwd: content changed [critical; changed while dpkg ran: ")


def useradd(root, name="alice", group_diff="+alice:x:1001:\n"):
    """The records one "useradd -m NAME" leaves, from every collector."""
    queue(root, "contents", {"mode": "pub", "path": "/etc/passwd", "change": "content",
                             "diff": f"--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1,2 @@\n"
                                     f" root:x:0:0:root:/root:/bin/bash\n"
                                     f"+{name}:x:1001:1001::/home/{name}:/bin/bash\n"},
          {"mode": "pub", "path": "/etc/group", "change": "content", "diff": group_diff},
          {"mode": "pub", "path": "/etc/subuid", "change": "content",
           "diff": f"+{name}:100000:65536\n"},
          {"mode": "pub", "path": "/etc/passwd-", "change": "content", "diff": "+x\n"})
    queue(root, "snapshot_root", {"mode": "root", "path": "/etc/shadow", "change": "content"},
          {"mode": "root", "path": "/etc/gshadow", "change": "content"})
    queue(root, "snapshot_pub",
          {"path": f"/home/{name}", "change": "added", "kind": "d", "mode": "0700",
           "owner": name, "group": name},
          {"path": f"/home/{name}/.bashrc", "change": "added", "kind": "f", "mode": "0644",
           "owner": name, "group": name},
          {"mode": "pub", "path": "/etc/motd", "change": "content"})


def test_an_account_added_is_one_warning_with_each_file_below_it(root):
    useradd(root)
    found = build(root).warnings
    heads = [item.text for item in found]
    assert heads[0].startswith("account alice added: passwd, group, shadow, gshadow, subuid; "
                               "home /home/alice created"), heads
    # What else changed stays an entry of its own.
    assert [h for h in heads[1:]] == ["/etc/motd: content changed"], heads
    detail = "\n".join(found[0].detail)
    for path in ("/etc/passwd:", "/etc/passwd-:", "/etc/shadow:", "/home/alice/.bashrc:"):
        assert path in detail
    assert "+alice:x:1001:1001::/home/alice:/bin/bash" in detail
    # No fact twice on a line.
    assert all(item.head.count("new file") <= 1 for item in found)


def test_a_changed_or_removed_account_is_told_file_by_file(root):
    useradd(root)
    queue(root, "contents", {"mode": "pub", "path": "/etc/passwd", "change": "content",
                             "diff": "-bob:x:1002:1002::/home/bob:/bin/bash\n"
                                     "+bob:x:0:0::/home/bob:/bin/bash\n"})
    heads = [item.text for item in build(root).warnings]
    assert not any(h.startswith("account") for h in heads), heads
    assert any(h.startswith("/etc/passwd:") for h in heads)


def test_a_fact_two_collectors_word_differently_is_said_once(root):
    queue(root, "contents", {"mode": "pub", "path": "/etc/cron.d/job", "change": "created",
                             "diff": "+* * * * * root true\n"},
          {"mode": "pub", "path": "/etc/cron.d/old", "change": "removed"})
    # An added path's "mode" is its permission bits (records.FileChange).
    queue(root, "snapshot_pub", {"path": "/etc/cron.d/job", "change": "added",
                                 "kind": "f", "mode": "0644", "owner": "root",
                                 "group": "root"},
          {"mode": "pub", "path": "/etc/cron.d/old", "change": "removed", "kind": "f"})
    heads = sorted(item.head for item in build(root).warnings)
    assert heads == ["/etc/cron.d/job: new file, mode 0644, root:root",
                     "/etc/cron.d/old: file removed"]


def test_an_account_added_is_alerted_once_by_name(root, tmp_path):
    useradd(root)
    settings, config = root.settings(), conf(root)
    working, out = sendmail(root, tmp_path)
    assert len(delivery.alert(settings, config, now=NOW, host=HOST, sendmail=working,
                              log=Log())) == 1
    # Its files that are not critical (the backups, the home) were in
    # that alert: nothing is alerted again.
    assert delivery.alert(settings, config, now=NOW + 3600, host=HOST, sendmail=working,
                          log=Log()) == []
    (message,) = mails(out)
    assert "Subject: [systraq] host.example.org: alert: account alice added" in message


def test_an_account_given_an_existing_home_folds_nothing_of_it_and_hides_no_finding(root):
    queue(root, "contents", {"mode": "pub", "path": "/etc/passwd", "change": "content",
                             "diff": "+toor:x:0:0:spare root:/root:/bin/sh\n"})
    queue(root, "audit", {"path": "/etc/passwd", "change": "uid 0", "account": "toor",
                          "text": "account toor has uid 0, as root (/etc/passwd line 25)"})
    queue(root, "snapshot_root", {"mode": "root", "path": "/root/.profile",
                                  "change": "content"})
    heads = [item.head for item in build(root).warnings]
    assert heads[0] == ("account toor added: passwd; "
                        "account toor has uid 0, as root (/etc/passwd line 25)"), heads
    assert "/root/.profile: content changed" in heads


def test_an_account_added_into_an_existing_group_says_so_in_its_head(root):
    useradd(root, group_diff="-sudo:x:27:admin\n+sudo:x:27:admin,alice\n+alice:x:1001:\n")
    (head,) = [item.head for item in build(root).warnings if item.head.startswith("account")]
    assert head.endswith("; /etc/group: existing lines changed too"), head
