# SPDX-License-Identifier: GPL-2.0-or-later
"""The realtime watcher, with real inotify in temporary trees."""

import ctypes
import errno
import fcntl
import os
import signal
import threading
import time

import pytest

from systraq import config, contents, delivery, inotify, report, snapshot, watch
from systraq.cli import main
from systraq.spool import Spool, stamp

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown)")
# No wait below is longer than this; most end within milliseconds.
BOUND = 5.0

CONF = """\
[check]
critical =
    /etc/passwd
    /etc/cron.d/*
[watch]
enabled = yes
quiet_window = 0
"""


class Mails:
    """A sendmail that keeps the messages it is given."""

    def __init__(self, tmp_path):
        self.out = tmp_path / "mails"
        self.out.mkdir()
        self.script = tmp_path / "sendmail"
        self.script.write_text(f"#!/bin/sh\nn=$(ls {self.out} | wc -l)\n"
                               f"cat > {self.out}/$n.eml\n")
        self.script.chmod(0o755)

    def all(self):
        return [open(self.out / n, "rb").read().decode() for n in sorted(os.listdir(self.out))]


class Clock:
    def __init__(self, start):
        self.now = start

    def __call__(self):
        return self.now


@pytest.fixture
def system(root, tmp_path):
    root.write("/etc/systraq/snapshot_pub.list", "/etc/passwd\n/etc/cron.d\n")
    for name in ("snapshot_root.list", "snapshot_pub.homelist", "snapshot_root.homelist"):
        root.write(f"/etc/systraq/{name}", "")
    root.write("/etc/cron.d/job", "17 * * * * root true\n")
    root.write("/etc/hostname", "box\n")
    root.mails = Mails(tmp_path)
    root.tmp = tmp_path
    return root


def configure(root, extra=""):
    return config.load(root.write("/etc/systraq/systraq.conf", CONF + extra))


def make_watcher(root, extra="", **kwargs):
    conf = configure(root, extra)
    settings = root.settings()
    lines = []

    def alert(current):
        return delivery.alert(settings, current, host="box", sendmail=str(root.mails.script),
                            log=lambda *_: None)

    kwargs.setdefault("dpkg", lambda _settings: False)
    watcher = watch.Watcher(settings, conf, alert, log=lines.append, **kwargs)
    watcher.lines = lines
    return watcher


def records(root):
    """The change records queued, first runs' baseline notes left out."""
    spool = Spool(root.settings())
    return [r for b in spool.pending() for r in spool.records(b) if r["change"] != "baseline"]


def kinds(root, path):
    return sorted((r["source"], r["change"]) for r in records(root) if r.get("path") == path)


def step_until(watcher, condition, bound=BOUND):
    deadline = time.monotonic() + bound
    while not condition():
        assert time.monotonic() < deadline, watcher.lines
        watcher.step(limit=0.05)


def settle(watcher, bound=BOUND):
    """Step until nothing is pending: events read, looked at, alerted."""
    step_until(watcher, lambda: False if watcher.notify.ready(0) else
               not (watcher.dirty or watcher.resync_needed or watcher.alert_pending), bound)


@pytest.fixture
def started(system):
    """A watcher after its first start (the baseline), with no change yet."""
    watcher = make_watcher(system)
    watcher.start()
    assert records(system) == []      # a baseline is a note, not a change
    yield watcher
    watcher.close()


def burst(started, root):
    before = len(records(root))
    settle(started)
    return records(root)[before:]


# --- every kind of change, recorded once -------------------------------------

def test_an_in_place_write_is_recorded_once(started, system):
    with open(system.host("/etc/cron.d/job"), "a") as handle:
        handle.write("18 * * * * root false\n")
    new = burst(started, system)
    assert sorted((r["source"], r["change"]) for r in new) == [
        ("contents", "content"), ("snapshot", "content")]
    assert "+18 * * * * root false" in [r for r in new if r["source"] == "contents"][0]["diff"]
    assert len(system.mails.all()) == 1


def test_an_atomic_replace_is_recorded_once_and_the_file_watch_follows(started, system):
    passwd = system.host("/etc/passwd")
    assert started.notify.is_watched(passwd)
    old_inode = os.stat(passwd).st_ino
    temp = system.host("/etc/passwd+")
    with open(passwd, "rb") as handle:
        data = handle.read()
    with open(temp, "wb") as handle:
        handle.write(data + b"eve:x:1003:1003::/home/eve:/bin/sh\n")
    os.chmod(temp, 0o644)
    os.rename(temp, passwd)
    new = burst(started, system)
    assert sorted((r["source"], r["change"]) for r in new) == [
        ("contents", "content"), ("snapshot", "content")]
    assert os.stat(passwd).st_ino != old_inode
    # The watch is on the new file now: a chmod of it is seen.
    assert started.notify.is_watched(passwd)
    os.chmod(passwd, 0o600)
    new = burst(started, system)
    assert ("snapshot", "mode") in [(r["source"], r["change"]) for r in new]


def test_a_delete_is_recorded_once(started, system):
    os.unlink(system.host("/etc/cron.d/job"))
    assert sorted((r["source"], r["change"]) for r in burst(started, system)) == [
        ("contents", "removed"), ("snapshot", "removed")]


def test_a_rename_into_place_is_recorded_once(started, system):
    staged = system.write("/var/tmp/evil", "* * * * * root nc -e /bin/sh\n")
    os.rename(staged, system.host("/etc/cron.d/evil"))
    new = burst(started, system)
    assert sorted((r["source"], r["change"]) for r in new) == [
        ("contents", "created"), ("snapshot", "added")]
    assert all(r["path"] == "/etc/cron.d/evil" for r in new)


def test_a_chmod_is_recorded_once(started, system):
    os.chmod(system.host("/etc/cron.d/job"), 0o666)
    new = burst(started, system)
    assert [(r["source"], r["change"]) for r in new] == [("snapshot", "mode")]
    assert new[0]["flags"] == ["world-writable gained"]


@AS_ROOT
def test_a_chown_is_recorded_once(started, system):
    os.chown(system.host("/etc/cron.d/job"), 1000, -1)
    new = burst(started, system)
    assert [(r["source"], r["change"], r["after"]) for r in new] == [
        ("snapshot", "owner", "alice")]


def test_a_new_directory_gets_watched_and_what_it_holds_is_seen(started, system):
    os.mkdir(system.host("/etc/cron.d/sub"))
    system.write("/etc/cron.d/sub/inner", "x\n")
    settle(started)
    assert started.notify.is_watched(system.host("/etc/cron.d/sub"))
    before = len(records(system))
    system.write("/etc/cron.d/sub/inner", "y\n")
    new = burst(started, system)
    assert len(records(system)) > before
    assert ("snapshot", "content") in [(r["source"], r["change"]) for r in new]


def test_changes_elsewhere_are_not_looked_at(started, system):
    looks = started.looks
    system.write("/etc/hostname", "other\n")
    system.write("/etc/passwd-", "backup\n")
    settle(started)
    assert started.looks == looks
    assert records(system) == []


def test_records_are_those_of_the_scheduled_jobs(started, system):
    """What the watcher queued, a full run finds nothing more to say about."""
    with open(system.host("/etc/cron.d/job"), "a") as handle:
        handle.write("# edited\n")
    os.chmod(system.host("/etc/passwd"), 0o640)
    burst(started, system)
    conf = started.config
    assert contents.run(system.settings(), conf, "pub").records == []
    assert snapshot.run(system.settings(), conf, "pub").records == []


# --- start, overflow, exhaustion -----------------------------------------------

def test_changes_made_while_stopped_are_reported_at_start(system):
    first = make_watcher(system)
    first.start()
    first.close()
    system.write("/etc/cron.d/job", "changed while nobody watched\n")
    second = make_watcher(system)
    try:
        second.start()
        assert kinds(system, "/etc/cron.d/job") == [("contents", "content"),
                                                    ("snapshot", "content")]
        mails = system.mails.all()
        assert len(mails) == 1 and "/etc/cron.d/job" in mails[0]
    finally:
        second.close()


def test_an_overflow_leads_to_a_rescan_that_finds_the_change(started, system):
    with open("/proc/sys/fs/inotify/max_queued_events") as handle:
        limit = int(handle.read())
    if limit > 200000:
        pytest.skip(f"max_queued_events is {limit}: too many events to make")
    # Fill the queue with events of /etc (watched as /etc/passwd's
    # parent) that nobody reads; two files taking turns, since the kernel
    # merges an event with an identical one just before it.
    pair = [system.write("/etc/spam-a"), system.write("/etc/spam-b")]
    for number in range(limit + 10):
        os.chmod(pair[number % 2], 0o600 | (number & 0o44))
    # This change's event is lost: only the rescan can find it.
    system.write("/etc/cron.d/job", "after the overflow\n")
    new = burst(started, system)
    assert any("overflowed" in line for line in started.lines)
    assert sorted((r["source"], r["change"]) for r in new
                  if r["path"] == "/etc/cron.d/job") == [("contents", "content"),
                                                          ("snapshot", "content")]


def test_the_wrapper_turns_enospc_into_exhausted(tmp_path, monkeypatch):
    notify = inotify.Inotify()
    try:
        def no_watch_left(*_args, **_kwargs):
            ctypes.set_errno(errno.ENOSPC)
            raise inotify.pyinotify.WatchManagerError("no space", {})
        monkeypatch.setattr(notify._manager, "add_watch", no_watch_left)
        with pytest.raises(inotify.Exhausted):
            notify.add(os.fsencode(tmp_path))
        def no_such_file(*_args, **_kwargs):
            ctypes.set_errno(errno.ENOENT)
            raise inotify.pyinotify.WatchManagerError("gone", {})
        monkeypatch.setattr(notify._manager, "add_watch", no_such_file)
        assert notify.add(os.fsencode(tmp_path)) is False
    finally:
        notify.close()


def test_watch_exhaustion_falls_back_to_polling_and_still_finds_a_change(system):
    class Scarce(inotify.Inotify):
        """As if fs.inotify.max_user_watches allowed two watches."""

        def add(self, path, directory=True):
            if len(self.watched()) >= 2 and not self.is_watched(path):
                raise inotify.Exhausted(path)
            return super().add(path, directory)

    clock = Clock(1000.0)
    watcher = make_watcher(system, "poll_interval = 30\n", notify=Scarce, clock=clock)
    try:
        watcher.start()
        assert system.host("/etc/cron.d") not in watcher.notify.watched()
        assert "/etc/cron.d" in [os.fsdecode(p) for p in watcher.polled]
        assert sum("watches exhausted" in line for line in watcher.lines) == 1
        system.write("/etc/cron.d/job", "seen by polling\n")
        watcher.step(limit=0)
        assert kinds(system, "/etc/cron.d/job") == []     # not yet: no event, no poll
        clock.now += 30
        watcher.step(limit=0)
        assert kinds(system, "/etc/cron.d/job") == [("contents", "content"),
                                                    ("snapshot", "content")]
    finally:
        watcher.close()


# --- alerts: rate limit, dpkg ------------------------------------------------------

def test_the_rate_limit_holds_and_the_next_mail_sums_up(system):
    wall = Clock(1_790_000_000.0)
    clock = Clock(5000.0)
    watcher = make_watcher(system, "mails_per_hour = 2\n", wall=wall, clock=clock)
    try:
        watcher.start()
        for number in range(4):
            system.write(f"/etc/cron.d/job{number}", f"{number}\n")
            watcher.step(limit=0.2)
            step_until(watcher, lambda: watcher.dirty == set() and not watcher.notify.ready(0))
            wall.now += 60
            clock.now += 60
        mails = system.mails.all()
        assert len(mails) == 2
        assert sum("[watch] mails_per_hour = 2" in line for line in watcher.lines) == 1
        assert watcher.alert_pending
        # An hour after the first mail, one more sums up the two held back.
        wall.now += 3600
        clock.now += 3600
        watcher.step(limit=0)
        mails = system.mails.all()
        assert len(mails) == 3
        assert "/etc/cron.d/job2" in mails[2] and "/etc/cron.d/job3" in mails[2]
        assert not watcher.alert_pending
    finally:
        watcher.close()


def test_the_hourly_count_survives_a_restart(system):
    wall = Clock(1_790_000_000.0)
    first = make_watcher(system, "mails_per_hour = 1\n", wall=wall)
    first.start()
    system.write("/etc/cron.d/job", "one\n")
    settle(first)
    first.close()
    assert len(system.mails.all()) == 1
    system.write("/etc/cron.d/job", "two\n")
    second = make_watcher(system, "mails_per_hour = 1\n", wall=wall)
    try:
        second.start()
        assert len(system.mails.all()) == 1 and second.alert_pending
    finally:
        second.close()


def test_changes_during_a_dpkg_run_wait_for_its_end(system):
    lock = system.write("/var/lib/dpkg/lock", "", mode=0o640)
    watcher = make_watcher(system, dpkg=watch.dpkg_running)
    watcher.start()
    try:
        with open(lock, "w") as handle:
            fcntl.lockf(handle, fcntl.LOCK_EX)
            assert watch.dpkg_running(system.settings())
            system.write("/etc/cron.d/job", "written by a postinst\n")
            step_until(watcher, lambda: watcher.dpkg_said)
            watcher.step(limit=0.1)
            assert kinds(system, "/etc/cron.d/job") == []
            assert any("dpkg is running" in line for line in watcher.lines)
        assert not watch.dpkg_running(system.settings())
        step_until(watcher, lambda: kinds(system, "/etc/cron.d/job"))
        assert kinds(system, "/etc/cron.d/job") == [("contents", "content"),
                                                    ("snapshot", "content")]
    finally:
        watcher.close()


def test_an_alert_waits_for_the_report_lock_and_retries(system, monkeypatch):
    clock = Clock(100.0)
    watcher = make_watcher(system, clock=clock)
    calls = []

    def busy(_config):
        calls.append(1)
        raise report.RunError("another systraq report or check is delivering")
    watcher.alert = busy
    try:
        watcher.start()
        system.write("/etc/cron.d/job", "x\n")
        step_until(watcher, lambda: len(calls) == 2)
        assert watcher.alert_pending and watcher.alert_at == clock.now + watch.ALERT_RETRY
        assert any("another systraq report" in line for line in watcher.lines)
    finally:
        watcher.close()


# --- what is watched -----------------------------------------------------------------

def test_targets_watch_parents_and_only_directories_that_can_hold_a_match(root):
    root.mkdir("/etc/ssh/sshd_config.d")
    root.mkdir("/etc/apt/apt.conf.d")
    root.mkdir("/home/alice/.ssh")
    root.write("/etc/sudoers", "root ALL=(ALL) ALL\n")
    targets = watch.Targets(root.settings(), [b"/etc/sudoers", b"/etc/ssh/*",
                                              b"/etc/sudoers.d/*", b"*/.ssh/authorized_keys*",
                                              b"/etc/apt/sources*"])
    directories, files = targets.walk()
    assert files == [b"/etc/sudoers"]
    assert {b"/etc", b"/etc/ssh", b"/etc/ssh/sshd_config.d", b"/home/alice/.ssh",
            b"/home/alice", b"/etc/apt"} <= set(directories)
    # Not there: watched through /etc until it appears; no reason to
    # watch apt.conf.d for sources*.
    assert b"/etc/sudoers.d" not in directories
    assert b"/etc/apt/apt.conf.d" not in directories
    assert targets.interesting(b"/etc/sudoers.d")
    assert targets.interesting(b"/etc/ssh/sshd_config.d/x.conf")
    assert targets.interesting(b"/home/alice/.ssh/authorized_keys2")
    assert not targets.interesting(b"/etc/hostname")
    assert not targets.interesting(b"/etc/apt/apt.conf.d/99local")


def test_shadow_is_seen_through_etc_but_left_to_the_root_job(started, system):
    system.write("/etc/shadow", "root:*:1::::::\n", mode=0o640)
    # /etc/shadow is in no pub list: the look finds nothing to say, and
    # the root job's hourly run tells.
    started.configure(config.load(system.write(
        "/etc/systraq/systraq.conf", CONF.replace("    /etc/passwd\n",
                                                  "    /etc/passwd\n    /etc/shadow\n"))))
    started.resync()
    looks = started.looks
    system.write("/etc/shadow", "root:$y$changed:1::::::\n", mode=0o640)
    settle(started)
    assert started.looks == looks + 1
    assert kinds(system, "/etc/shadow") == []


# --- signals and the command line -------------------------------------------------------

def test_sighup_reloads_and_sigterm_stops(system):
    watcher = make_watcher(system)
    results = []

    def poke():
        deadline = time.monotonic() + BOUND
        while not any(line.startswith("watching") for line in watcher.lines):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        system.write("/etc/systraq/systraq.conf",
                     CONF.replace("quiet_window = 0", "quiet_window = 3"))
        os.kill(os.getpid(), signal.SIGHUP)
        while not any("reloaded" in line for line in watcher.lines):
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    worker = threading.Thread(target=poke)
    worker.start()
    results.append(watcher.run())
    worker.join(BOUND)
    assert results == [0]
    assert watcher.quiet == 3
    assert watcher.lines[-1] == "stopped"
    assert watcher.notify is None


def test_cli_refuses_when_disabled_and_says_so_for_execcondition(system, capsys):
    system.write("/etc/systraq/systraq.conf", "[watch]\nenabled = no\n")
    top = os.fsdecode(system.path)
    assert main(["--root", top, "watch", "--condition"]) == 1
    assert main(["--root", top, "watch", "--once"]) == 2
    err = capsys.readouterr().err
    assert "[watch] enabled = no" in err and "--force" in err
    assert err.count("\n") == 1
    system.write("/etc/systraq/systraq.conf", "[watch]\nenabled = yes\n[report]\nmailto =\n")
    assert main(["--root", top, "watch", "--condition"]) == 0
    assert main(["--root", top, "watch", "--once"]) == 0      # the baseline
    system.write("/etc/cron.d/job", "changed\n")
    assert main(["--root", top, "watch", "--once"]) == 1
    assert os.listdir(os.path.join(top, "var/lib/systraq/reports"))


# --- restricted runs of the collectors ---------------------------------------------------

def test_a_restricted_snapshot_updates_only_its_paths_and_keeps_the_states_time(system):
    settings = system.settings()
    conf = configure(system)
    snapshot.run(settings, conf, "pub", now=1_790_000_000)
    state = snapshot.state_path(settings, "pub")
    os.utime(state, (1_790_000_000, 1_790_000_000))
    system.write("/etc/cron.d/job", "one\n")
    with open(system.host("/etc/passwd"), "a") as handle:
        handle.write("eve:x:1003:1003::/nonexistent:/bin/sh\n")
    result = snapshot.run(settings, conf, "pub", only=[b"/etc/cron.d"])
    assert [(r["path"], r["change"], r["since"]) for r in result.records] == [
        ("/etc/cron.d/job", "content", stamp(1_790_000_000))]
    assert os.stat(state).st_mtime == 1_790_000_000
    # /etc/passwd was left alone: the full run still has it to say.
    full = snapshot.run(settings, conf, "pub")
    assert [(r["path"], r["change"]) for r in full.records] == [("/etc/passwd", "content")]


def test_a_restricted_run_without_a_state_is_a_full_one(system):
    settings = system.settings()
    conf = configure(system)
    assert snapshot.run(settings, conf, "pub", only=[b"/etc/passwd"]).baseline
    assert contents.run(settings, conf, "pub", only=[b"/etc/passwd"]).baseline


def test_a_restricted_contents_run_sees_a_new_file_and_keeps_the_rest(system):
    settings = system.settings()
    conf = configure(system)
    contents.run(settings, conf, "pub")
    system.write("/etc/cron.d/new", "new\n")
    system.write("/etc/hostname", "renamed\n")
    result = contents.run(settings, conf, "pub", only=[b"/etc/cron.d/new"])
    assert [(r["path"], r["change"]) for r in result.records] == [("/etc/cron.d/new", "created")]
    full = contents.run(settings, conf, "pub")
    assert [(r["path"], r["change"]) for r in full.records] == [("/etc/hostname", "content")]


def test_a_directory_replaced_by_a_rename_is_seen_and_watched_again(started, system):
    system.write("/etc/cron.new/job", "replaced with its directory\n")
    os.rename(system.host("/etc/cron.d"), system.host("/etc/cron.old"))
    os.rename(system.host("/etc/cron.new"), system.host("/etc/cron.d"))
    new = burst(started, system)
    assert sorted((r["source"], r["change"]) for r in new
                  if r["path"] == "/etc/cron.d/job") == [("contents", "content"),
                                                          ("snapshot", "content")]
    # The watch is on the new directory: a file created in it is seen.
    assert started.notify.is_watched(system.host("/etc/cron.d"))
    system.write("/etc/cron.d/more", "more\n")
    assert ("snapshot", "added") in [(r["source"], r["change"]) for r in burst(started, system)]


def test_the_unit_runs_as_the_systraq_user_on_its_condition_without_no_new_privileges():
    top = os.path.join(os.path.dirname(__file__), "..", "..")
    with open(os.path.join(top, "debian", "systraq.systraq-watch.service")) as handle:
        lines = [line.strip() for line in handle if not line.startswith("#")]
    assert "User=debian-systraq" in lines
    assert "ExecCondition=/usr/sbin/systraq watch --condition" in lines
    assert "ExecStart=/usr/sbin/systraq watch" in lines
    # NoNewPrivileges itself, and the options systemd carries out with
    # seccomp filters, which imply it in a unit with User=: a setuid or
    # setgid sendmail would then fail to deliver the alert.
    implying = ("NoNewPrivileges", "SystemCallFilter", "SystemCallArchitectures",
                "PrivateDevices", "ProtectKernelModules",
                "ProtectKernelLogs", "ProtectClock", "ProtectHostname", "MemoryDenyWriteExecute",
                "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
                "LockPersonality", "DynamicUser", "RestrictAddressFamilies")
    assert not [line for line in lines if line.split("=")[0] in implying]
