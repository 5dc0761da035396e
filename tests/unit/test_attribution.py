# SPDX-License-Identifier: GPL-2.0-or-later
"""attribution: dpkg.log and apt history read into events, on fake roots.

Times are written as UTC (utc_offset=0) unless a test is about the local
time zone, so that expectations do not depend on the machine's zone.
"""

import calendar
import gzip
import lzma
import os
import time

import pytest

from systraq import attribution as attribution_module
from systraq.attribution import Attribution, Event, LogUnreadable, describe, rotated
from systraq.settings import Settings

DPKG = "/var/log/dpkg.log"
HISTORY = "/var/log/apt/history.log"


def epoch(stamp):
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))


def latest(attribution, package, since):
    """The event the Judge names for ``package`` among those since ``since``."""
    return attribution.pick(attribution.events(since), package)


def reader(root, **kwargs):
    kwargs.setdefault("utc_offset", 0)
    kwargs.setdefault("native_arch", "amd64")
    return Attribution(root.settings(), **kwargs)


def gz(text):
    return gzip.compress(text.encode())


UPGRADE_SSH = """\
2025-03-10 10:32:01 startup archives unpack
2025-03-10 10:32:01 upgrade openssh-server:amd64 1:9.2p1-2 1:9.2p1-2+deb12u3
2025-03-10 10:32:01 status half-configured openssh-server:amd64 1:9.2p1-2
2025-03-10 10:32:02 status unpacked openssh-server:amd64 1:9.2p1-2+deb12u3
2025-03-10 10:32:03 startup packages configure
2025-03-10 10:32:03 configure openssh-server:amd64 1:9.2p1-2+deb12u3 <none>
2025-03-10 10:32:03 status half-configured openssh-server:amd64 1:9.2p1-2+deb12u3
2025-03-10 10:32:04 conffile /etc/ssh/sshd_config keep
2025-03-10 10:32:05 status installed openssh-server:amd64 1:9.2p1-2+deb12u3
2025-03-10 10:32:05 trigproc man-db:amd64 2.11.2-2 <none>
"""

HISTORY_SSH = """\

Start-Date: 2025-03-10  10:32:00
Commandline: apt-get install openssh-server
Requested-By: alice (1000)
Upgrade: openssh-server:amd64 (1:9.2p1-2, 1:9.2p1-2+deb12u3)
End-Date: 2025-03-10  10:32:06
"""


# --- dpkg.log lines ----------------------------------------------------------

def test_upgrade_is_matched_to_the_apt_run_that_made_it(root):
    root.write(DPKG, UPGRADE_SSH)
    root.write(HISTORY, HISTORY_SSH)
    events = reader(root).events(0)
    assert [e.action for e in events] == ["upgrade", "configure", "conffile"]
    upgrade = events[0]
    assert upgrade == Event(
        time=epoch("2025-03-10 10:32:01"), action="upgrade", package="openssh-server",
        arch="amd64", old_version="1:9.2p1-2", new_version="1:9.2p1-2+deb12u3",
        tool="apt-get", commandline="apt-get install openssh-server", requested_by="alice")
    conffile = events[2]
    # A conffile line names no package: it belongs to the "configure" before it.
    assert (conffile.package, conffile.path, conffile.decision, conffile.new_version) == (
        "openssh-server", b"/etc/ssh/sshd_config", "keep", "1:9.2p1-2+deb12u3")


def test_describe_gives_the_one_line_label(root):
    root.write(DPKG, UPGRADE_SSH)
    root.write(HISTORY, HISTORY_SSH)
    attribution = reader(root)
    upgrade = attribution.events(0)[0]
    same_day = epoch("2025-03-10 18:00:00")
    assert attribution.describe(upgrade, now=same_day) == (
        "upgraded 10:32 by apt-get for alice: openssh-server 1:9.2p1-2 \u2192 1:9.2p1-2+deb12u3")
    assert attribution.describe(upgrade, now=same_day + 86400, ascii=True) == (
        "upgraded 2025-03-10 10:32 by apt-get for alice: "
        "openssh-server 1:9.2p1-2 -> 1:9.2p1-2+deb12u3")
    conffile = attribution.events(0)[2]
    assert attribution.describe(conffile, now=same_day) == (
        "kept the local conffile /etc/ssh/sshd_config 10:32 by apt-get for alice: "
        "openssh-server 1:9.2p1-2+deb12u3")


def test_describe_escapes_what_the_logs_hold_and_shows_foreign_arch_only():
    event = Event(time=0.0, action="install", package="evil\x1b[2J", arch="i386",
                  new_version="1.0", tool="dpkg")
    label = describe(event, now=0.0, utc_offset=0, native_arch="amd64")
    assert "\x1b" not in label
    assert label == "installed 00:00 by dpkg: evil\\x1b[2J:i386 1.0"
    native = Event(time=0.0, action="remove", package="foo", arch="amd64", old_version="2")
    assert describe(native, now=0.0, utc_offset=0, native_arch="amd64") == (
        "removed 00:00 by dpkg: foo 2")


def test_reinstall_and_downgrade_are_told_apart_from_upgrade(root):
    root.write(DPKG, """\
2025-03-10 09:00:00 upgrade bash:amd64 5.2.15-2+b2 5.2.15-2+b2
2025-03-10 09:01:00 upgrade vim:amd64 2:9.0.1378-2 2:9.0.1000-1
2025-03-10 09:02:00 upgrade tzdata:all 2024a-0+deb12u1 2025b-0+deb12u1
""")
    attribution = reader(root)
    assert [e.action for e in attribution.events(0)] == ["reinstall", "downgrade", "upgrade"]
    bash = latest(attribution, "bash", 0)
    assert attribution.describe(bash, now=bash.time) == (
        "reinstalled 09:00 by dpkg: bash 5.2.15-2+b2")


def test_removal_and_purge(root):
    root.write(DPKG, """\
2025-03-11 08:00:00 startup packages remove
2025-03-11 08:00:00 remove telnet:amd64 0.17+2.4-2 <none>
2025-03-11 08:00:01 status config-files telnet:amd64 0.17+2.4-2
2025-03-11 08:00:02 startup packages purge
2025-03-11 08:00:02 purge telnet:amd64 0.17+2.4-2 <none>
2025-03-11 08:00:02 status not-installed telnet:amd64 <none>
""")
    attribution = reader(root)
    events = attribution.events(0)
    assert [(e.action, e.old_version, e.new_version) for e in events] == [
        ("remove", "0.17+2.4-2", None), ("purge", "0.17+2.4-2", None)]
    assert attribution.describe(events[1], now=events[1].time) == (
        "purged 08:00 by dpkg: telnet 0.17+2.4-2")


def test_fresh_install_and_localised_none(root):
    # dpkg translates "<none>"; any "<...>" is no version.
    root.write(DPKG, "2025-03-10 09:00:00 install curl:amd64 <\u65e0> 7.88.1-10\n")
    (event,) = reader(root).events(0)
    assert (event.action, event.old_version, event.new_version) == ("install", None, "7.88.1-10")


def test_conffile_names_may_hold_spaces(root):
    root.write(DPKG, """\
2025-03-10 09:00:00 configure odd:all 1.0 <none>
2025-03-10 09:00:00 conffile /etc/odd/with space.conf install
""")
    event = reader(root).events(0)[1]
    assert (event.path, event.decision, event.package) == (
        b"/etc/odd/with space.conf", "install", "odd")


# --- bad input ---------------------------------------------------------------

def test_garbage_lines_are_skipped(root):
    root.write(DPKG, """\
2025-03-10 09:00:00 install good:amd64 <none> 1.0
this is not a dpkg line
2025-13-10 09:00:00 install badmonth:amd64 <none> 1.0
2025-03-10 09:00:00 install short:amd64 1.0
2025-03-10 09:00:00 frobnicate thing:amd64 1 2
2025-03-10 09:00:00 conffile relative/path install
\xff\xfe binary junk
2025-03-10 09:00:01 status installed good:amd64 1.0

2025-03-10 09:00:02 remove good:amd64 1.0 <none>
""")
    attribution = reader(root)
    events = attribution.events(0)
    # Six bad lines skipped, and an empty line, which is no entry at all.
    assert [(e.action, e.package) for e in events] == [("install", "good"), ("remove", "good")]


def test_a_truncated_last_line_is_not_trusted(root):
    # The crash cut "1:9.2p1-2+deb12u3" to "1:9.2p1-2": the line looks
    # whole but is not.  Only a line ended by a newline is read.
    root.write(DPKG, UPGRADE_SSH + "2025-03-10 11:00:00 upgrade openssh-server:amd64 "
                                   "1:9.2p1-2+deb12u3 1:9.2p1-2")
    attribution = reader(root)
    found = latest(attribution, "openssh-server", 0)
    assert found.time == epoch("2025-03-10 10:32:01")
    assert attribution.damaged_files == [root.host(DPKG)]


def test_a_truncated_gzip_copy_gives_what_it_holds(root):
    whole = gz("".join(f"2025-01-0{d} 10:00:00 install p{d}:amd64 <none> 1\n"
                       for d in range(1, 10)))
    root.write(DPKG + ".2.gz", whole[:len(whole) - 12])  # crc and tail lost
    root.write(DPKG + ".1", "2025-02-01 10:00:00 install later:amd64 <none> 1\n")
    root.write(DPKG, "")
    attribution = reader(root)
    names = [e.package for e in attribution.events(0)]
    assert names[-1] == "later" and names[0] == "p1"
    assert root.host(DPKG + ".2.gz") in attribution.damaged_files


def test_xz_copies_zero_padding_and_a_corrupt_copy(root):
    root.write(DPKG + ".3.gz", b"this was never gzip data")
    root.write(DPKG + ".2.xz", lzma.compress(b"2025-01-05 10:00:00 install xz:amd64 <none> 1\n"))
    padded = gz("2025-02-01 10:00:00 install padded:amd64 <none> 1\n") + bytes(512)
    root.write(DPKG + ".1.gz", padded)
    attribution = reader(root)
    assert [e.package for e in attribution.events(0)] == ["xz", "padded"]
    assert attribution.damaged_files == [root.host(DPKG + ".3.gz")]


def test_a_missing_log_gives_no_events_and_no_error(root):
    attribution = reader(root)
    assert attribution.events(0) == []
    assert latest(attribution, "bash", 0) is None
    assert attribution.files_read == []


def test_missing_apt_history_leaves_dpkg_as_the_tool(root):
    root.write(DPKG, UPGRADE_SSH)
    event = latest(reader(root), "openssh-server", 0)
    assert (event.tool, event.commandline, event.requested_by) == ("dpkg", None, None)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_log_is_a_clear_error(root):
    root.write(DPKG, UPGRADE_SSH, mode=0o000)
    with pytest.raises(LogUnreadable) as caught:
        reader(root).events(0)
    assert "dpkg.log: cannot read" in str(caught.value)
    assert caught.value.exit_status == 3


def test_an_unreadable_log_is_a_clear_error_even_as_root(root, monkeypatch):
    # Root reads a 0000 file, so the refusal is simulated where the
    # module opens files.
    root.write(DPKG, UPGRADE_SSH)

    def refuse(path, mode="r", *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(attribution_module, "open", refuse, raising=False)
    with pytest.raises(LogUnreadable, match="dpkg.log: cannot read: Permission denied"):
        reader(root).events(0)


# --- rotation and since ------------------------------------------------------

def test_rotated_copies_are_found_newest_first(root):
    for name in ("dpkg.log", "dpkg.log.1", "dpkg.log.2.gz", "dpkg.log.10.gz",
                 "dpkg.log.3.gz", "dpkg.log.old", "dpkg.log.2.gz.tmp", "dpkg.logx"):
        root.write("/var/log/" + name, "")
    found = [os.path.basename(p) for p in rotated(root.host(DPKG))]
    assert found == [b"dpkg.log", b"dpkg.log.1", b"dpkg.log.2.gz", b"dpkg.log.3.gz",
                     b"dpkg.log.10.gz"]


def test_dateext_copies_are_found_newest_first(root):
    for name in ("dpkg.log", "dpkg.log-20250101.gz", "dpkg.log-20250301", "dpkg.log-20250201.gz"):
        root.write("/var/log/" + name, "")
    found = [os.path.basename(p) for p in rotated(root.host(DPKG))]
    assert found == [b"dpkg.log", b"dpkg.log-20250301", b"dpkg.log-20250201.gz",
                     b"dpkg.log-20250101.gz"]


def _rotated_logs(root):
    root.write(DPKG + ".3.gz", gz("2024-12-01 10:00:00 install ancient:amd64 <none> 1\n"))
    root.write(DPKG + ".2.gz", gz("2025-01-01 10:00:00 install old:amd64 <none> 1\n"
                                  "2025-01-20 10:00:00 upgrade old:amd64 1 2\n"))
    root.write(DPKG + ".1", "2025-02-01 10:00:00 install middle:amd64 <none> 1\n"
                            "2025-02-25 10:00:00 upgrade middle:amd64 1 2\n")
    root.write(DPKG, "2025-03-01 10:00:00 install new:amd64 <none> 1\n")


def test_rotated_logs_are_read_in_chronological_order(root):
    _rotated_logs(root)
    attribution = reader(root)
    events = attribution.events(0)
    assert [e.package for e in events] == ["ancient", "old", "old", "middle", "middle", "new"]
    assert [e.time for e in events] == sorted(e.time for e in events)


def test_events_before_since_are_ignored_and_older_copies_not_opened(root):
    _rotated_logs(root)
    attribution = reader(root)
    since = epoch("2025-02-25 10:00:00")
    events = attribution.events(since)
    assert [(e.package, e.action) for e in events] == [("middle", "upgrade"), ("new", "install")]
    # dpkg.log.1 starts before the cut (since less a day of slack for
    # time zone changes): nothing older can matter.
    assert attribution.files_read == [root.host(DPKG), root.host(DPKG + ".1")]
    assert latest(attribution, "old", since) is None


def test_a_later_since_reuses_the_first_read(root):
    _rotated_logs(root)
    attribution = reader(root)
    assert len(attribution.events(0)) == 6
    root.write(DPKG, "")  # not read again: one object answers for one run
    assert [e.package for e in attribution.events(epoch("2025-02-01 00:00:00"))] == [
        "middle", "middle", "new"]


def test_local_time_is_the_machines_zone(root, monkeypatch):
    root.write(DPKG, "2025-07-01 12:00:00 install tz:amd64 <none> 1\n")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        event = Attribution(root.settings(), native_arch="amd64").events(0)[0]
        # Berlin is UTC+2 in July (daylight saving time).
        assert event.time == epoch("2025-07-01 10:00:00")
        assert describe(event, now=event.time).startswith("installed 12:00 ")
    finally:
        monkeypatch.undo()
        time.tzset()


def test_a_fixed_utc_offset_can_be_given(root):
    root.write(DPKG, "2025-07-01 12:00:00 install tz:amd64 <none> 1\n")
    event = Attribution(root.settings(), utc_offset=-5 * 3600, native_arch="amd64").events(0)[0]
    assert event.time == epoch("2025-07-01 17:00:00")


# --- apt history ---------------------------------------------------------------

HISTORY_MANY = """\

Start-Date: 2025-03-10  09:00:00
Commandline: apt-get install --reinstall bash
Requested-By: bob (1001)
Reinstall: bash:amd64 (5.2.15-2+b2)
End-Date: 2025-03-10  09:00:05

Start-Date: 2025-03-10  10:00:00
Commandline: /usr/bin/unattended-upgrade
Install: libfoo1:amd64 (1.0-1, automatic), foo:amd64 (1.0-1)
Remove: telnet:amd64 (0.17+2.4-2)
Error: Sub-process /usr/bin/dpkg returned an error code (1)
End-Date: 2025-03-10  10:00:30

Start-Date: 2025-03-10  11:00:00
Commandline: apt full-upgrade
Upgrade: tzdata:all (2024a-0+deb12u1, 2025b-0+deb12u1)
"""


def test_apt_blocks_are_parsed(root):
    root.write(HISTORY, HISTORY_MANY)
    runs = reader(root).apt_runs(0)
    assert [run.tool for run in runs] == ["apt-get", "unattended-upgrade", "apt"]
    assert runs[0].requested_by == "bob"
    assert runs[0].changes == (("reinstall", "bash", "amd64", ("5.2.15-2+b2",), False),)
    assert runs[1].changes == (
        ("install", "libfoo1", "amd64", ("1.0-1",), True),
        ("install", "foo", "amd64", ("1.0-1",), False),
        ("remove", "telnet", "amd64", ("0.17+2.4-2",), False))
    assert runs[1].error.startswith("Sub-process")
    assert runs[1].end - runs[1].start == 30
    # The last block has no End-Date: apt was killed, or the log was rotated.
    assert runs[2].end is None


def test_each_dpkg_event_gets_the_run_around_it(root):
    root.write(HISTORY, HISTORY_MANY)
    root.write(DPKG, """\
2025-03-10 09:00:02 upgrade bash:amd64 5.2.15-2+b2 5.2.15-2+b2
2025-03-10 09:30:00 install handmade:amd64 <none> 1.0
2025-03-10 10:00:30 remove telnet:amd64 0.17+2.4-2 <none>
2025-03-10 11:00:01 upgrade tzdata:all 2024a-0+deb12u1 2025b-0+deb12u1
""")
    attribution = reader(root)
    got = [(e.package, e.action, e.tool, e.requested_by) for e in attribution.events(0)]
    assert got == [
        ("bash", "reinstall", "apt-get", "bob"),
        ("handmade", "install", "dpkg", None),      # between two apt runs: dpkg -i
        ("telnet", "remove", "unattended-upgrade", None),  # End-Date is inclusive
        ("tzdata", "upgrade", "apt", None),         # open block lasts till the end
    ]
    bash = latest(attribution, "bash", 0)
    assert attribution.describe(bash, now=bash.time) == (
        "reinstalled 09:00 by apt-get for bob: bash 5.2.15-2+b2")


def test_apt_says_downgrade_where_versions_cannot(root):
    # Not a valid Debian version, so no comparison: apt's Downgrade list
    # decides; without an apt run the change counts as an upgrade.
    root.write(HISTORY, """\
Start-Date: 2025-03-10  09:00:00
Commandline: apt-get install weird=old
Downgrade: weird:amd64 (new version, old version)
End-Date: 2025-03-10  09:00:05
""")
    root.write(DPKG, """\
2025-03-10 09:00:01 upgrade weird:amd64 new_version old_version
2025-03-10 10:00:00 upgrade weird:amd64 old_version new_version
""")
    events = reader(root).events(0)
    assert [(e.action, e.tool) for e in events] == [("downgrade", "apt-get"), ("upgrade", "dpkg")]


def test_a_long_apt_run_that_started_before_the_cut_still_attributes(root):
    # apt waited at a conffile prompt over a weekend.
    root.write(HISTORY, """\
Start-Date: 2025-03-07  17:00:00
Commandline: apt-get dist-upgrade
Upgrade: sudo:amd64 (1.9.13p3-1, 1.9.13p3-1+deb12u1)
End-Date: 2025-03-10  09:00:00
""")
    root.write(DPKG, "2025-03-10 08:59:00 upgrade sudo:amd64 1.9.13p3-1 1.9.13p3-1+deb12u1\n")
    event = latest(reader(root), "sudo", epoch("2025-03-10 08:00:00"))
    assert event.tool == "apt-get"


def test_apt_garbage_and_rotated_gzip_history(root):
    root.write(HISTORY + ".1.gz", gz(HISTORY_SSH))
    root.write(HISTORY, """\
Commandline: orphan line before any Start-Date

Start-Date: not a date
Commandline: apt-get moo
End-Date: 2025-03-11  10:00:00
""")
    root.write(DPKG, UPGRADE_SSH)
    attribution = reader(root)
    assert latest(attribution, "openssh-server", 0).requested_by == "alice"
    # The blocks without a start or with a bad date are no runs.
    assert [run.commandline for run in attribution.apt_runs(0)] == [
        "apt-get install openssh-server"]


# --- explain and architectures -------------------------------------------------

MULTIARCH = """\
2025-03-10 09:00:00 upgrade libc6:amd64 2.36-9+deb12u9 2.36-9+deb12u10
2025-03-10 09:00:01 upgrade libc6:i386 2.36-9+deb12u9 2.36-9+deb12u10
2025-03-10 09:00:02 configure libc6:amd64 2.36-9+deb12u10 <none>
2025-03-10 09:00:03 upgrade python3-six:all 1.16.0-4 1.16.0-5
2025-03-10 09:00:04 upgrade jq:amd64 1.6-2 1.6-3
2025-03-10 09:00:05 upgrade zsh:i386 5.9-4 5.9-5
"""


@pytest.mark.parametrize("query, expected", [
    ("libc6:amd64", ("libc6", "amd64", "upgrade")),   # upgrade wins over a later configure
    ("libc6:i386", ("libc6", "i386", "upgrade")),
    ("libc6", ("libc6", "i386", "upgrade")),           # no arch: any instance, the latest
    ("python3-six", ("python3-six", "all", "upgrade")),
    ("python3-six:amd64", ("python3-six", "all", "upgrade")),  # all is the native slot
    ("jq:all", ("jq", "amd64", "upgrade")),
    ("zsh:all", None),                                  # all is not a foreign arch
    ("python3-six:i386", None),
    ("libc6:arm64", None),
    ("absent", None),
])
def test_pick_matches_architectures_as_dpkg_does(root, query, expected):
    root.write(DPKG, MULTIARCH)
    event = latest(reader(root), query, 0)
    got = None if event is None else (event.package, event.arch, event.action)
    assert got == expected


def test_without_a_native_arch_all_matches_any(root):
    root.write(DPKG, MULTIARCH)
    attribution = Attribution(root.settings(), utc_offset=0)  # fake root: not asked
    assert attribution.native_arch is None
    assert latest(attribution, "zsh:all", 0).arch == "i386"
    assert latest(attribution, "libc6:arm64", 0) is None


def test_pre_multiarch_names_match_any_arch(root):
    root.write(DPKG, "2011-02-15 02:26:03 upgrade man-db 2.5.9-3 2.5.9-4\n")
    event = latest(reader(root), "man-db:amd64", 0)
    assert (event.package, event.arch, event.new_version) == ("man-db", None, "2.5.9-4")


def test_pick_falls_back_to_configure_when_no_unpack_is_in_range(root):
    root.write(DPKG, """\
2025-03-09 09:00:00 upgrade foo:amd64 1 2
2025-03-10 09:00:00 configure foo:amd64 2 <none>
""")
    attribution = reader(root)
    assert latest(attribution, "foo", 0).action == "upgrade"
    late = latest(attribution, "foo", epoch("2025-03-10 00:00:00"))
    assert (late.action, late.new_version) == ("configure", "2")


def test_settings_name_both_logs_below_the_root(tmp_path):
    settings = Settings(root=tmp_path)
    assert settings.dpkg_log == os.fsencode(tmp_path) + b"/var/log/dpkg.log"
    assert settings.apt_history == os.fsencode(tmp_path) + b"/var/log/apt/history.log"


# --- the Judge: which run made a change a collector saw --------------------------

class Timeline:
    """A fake root with a small dpkg database, where dpkg.log lines are
    written at given times around a file's real change time (``made``)."""

    def __init__(self, root, path, content):
        from tests.unit.test_packages import FakeDpkg
        self.root = root
        self.dpkg = FakeDpkg(root)
        self.dpkg.install("openssh-server", "1:9.2p1-2", {
            "/usr/sbin/sshd": "sshd\n", "/etc/ssh/sshd_config": "Port 22\n"},
            conffiles=("/etc/ssh/sshd_config",))
        root.mkdir("/var/log")
        root.write(path, content)
        self.path = path
        self.made = os.lstat(root.host(path)).st_ctime_ns / 1e9

    def log(self, offset, words):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(self.made) + offset))
        self.dpkg.log(f"{when} {words}")
        # The log's own modification time stays in the past, as when the
        # last line was written, unless a test writes one after the change.
        latest = int(self.made) + offset + 0.5
        os.utime(self.root.host(DPKG), (latest, latest))

    def judge(self, change="content", since=None, critical=("/etc/passwd",), path=None):
        from systraq import records
        judge = attribution_module.Judge(self.root.settings(),
                                         self.made - 600 if since is None else since, critical)
        return judge.judge(records.make("snapshot", change, path or self.path, mode="pub"))


def test_judge_a_file_of_a_package_changed_while_its_run_went_on_is_explained(root, utc):
    line = Timeline(root, "/etc/ssh/sshd_config", "Port 2222\n")
    line.log(-2, "startup archives unpack")
    line.log(-2, "upgrade openssh-server:amd64 1:9.2p1-2 1:9.2p1-2+deb12u3")
    line.log(+1, "status installed openssh-server:amd64 1:9.2p1-2+deb12u3")
    found = line.judge()
    assert found.explained["package"] == "openssh-server"
    assert found.explained["label"].startswith("upgraded ")
    assert found.during is None and found.is_note
    # A run before the collector's previous run explains nothing.
    assert line.judge(since=line.made + 10).explained is None


def test_judge_no_slack_a_change_after_the_last_line_is_not_the_runs(root, utc):
    """The hole of a fixed window: an upgrade of the package, then a hand
    edit of its file moments after dpkg's last line, is a warning."""
    line = Timeline(root, "/etc/ssh/sshd_config", "Port 2222\nPermitRootLogin yes\n")
    line.log(-3, "startup archives unpack")
    line.log(-3, "upgrade openssh-server:amd64 1:9.2p1-2 1:9.2p1-2+deb12u3")
    line.log(-2, "status installed openssh-server:amd64 1:9.2p1-2+deb12u3")
    found = line.judge()
    assert found.explained is None and found.during is None


def test_judge_the_last_second_of_the_log_is_decided_by_its_modification_time(root, utc):
    line = Timeline(root, "/etc/ssh/sshd_config", "Port 2222\n")
    line.log(-1, "startup archives unpack")
    line.log(-1, "upgrade openssh-server:amd64 1:9.2p1-2 1:9.2p1-2+deb12u3")
    line.log(0, "status installed openssh-server:amd64 1:9.2p1-2+deb12u3")
    # The last line was written after the change, in its second: the run's.
    os.utime(root.host(DPKG), ns=(int(line.made * 1e9) + 1000, int(line.made * 1e9) + 1000))
    assert line.judge().explained is not None
    # The last line was written before the change, in the same second:
    # the change came after the run.
    os.utime(root.host(DPKG), ns=(int(line.made * 1e9) - 1000, int(line.made * 1e9) - 1000))
    assert line.judge().explained is None


def test_judge_what_dpkg_ucf_and_systraqs_own_upgrade_leave_is_the_runs(root, utc):
    line = Timeline(root, "/etc/ssh/sshd_config.dpkg-dist", "Port 22\n")
    root.write("/var/lib/ucf/registry", "systraq /etc/systraq/snapshot_pub.list\n"
               "systraq /etc/systraq/systraq.conf\n")
    root.write("/usr/share/systraq/obsolete-files", "# comment\n/etc/systraq/Makefile\n")
    for path in ("/etc/systraq/snapshot_pub.list.ucf-dist", "/etc/systraq/systraq.conf",
                 "/etc/systraq/notes.dpkg-dist", "/etc/ssh/sshd_config.orig"):
        root.write(path, "x\n")
    line.log(-2, "startup archives unpack")
    line.log(-2, "upgrade openssh-server:amd64 1:9.2p1-2 1:9.2p1-2+deb12u3")
    line.log(-2, "upgrade systraq:all 20201231-1 20261121")
    line.log(+2, "status installed systraq:all 20261121")
    explained = {path: line.judge("created", path=path).explained is not None
                 for path in ("/etc/ssh/sshd_config.dpkg-dist",
                              "/etc/systraq/snapshot_pub.list.ucf-dist",
                              "/etc/systraq/systraq.conf")}
    assert explained == dict.fromkeys(explained, True)
    # The old package's conffile the upgrade removed: its directory
    # changed in the run, and the old package's files are systraq's.
    removed = line.judge("removed", path="/etc/systraq/Makefile")
    assert removed.explained["package"] == "systraq"
    # Written in the run, owned by nobody and not critical: the run's
    # maintainer scripts'.
    assert line.judge("created", path="/etc/ssh/sshd_config.orig").explained is not None


def test_judge_an_unowned_file_written_while_dpkg_ran_is_the_runs_unless_critical(root, utc):
    line = Timeline(root, "/etc/inputrc", "set bell none\n")
    root.write("/etc/cron.d/inputrc", "set bell none\n")
    line.log(-2, "startup archives unpack")
    line.log(-2, "install readline-common:all <none> 8.2-1.3")
    line.log(+2, "status installed readline-common:all 8.2-1.3")
    assert line.judge("created").explained is not None
    critical = line.judge("created", path="/etc/cron.d/inputrc", critical=("/etc/cron.d/*",))
    assert critical.explained is None and critical.during["start"] == int(line.made) - 2


def test_judge_a_critical_file_changed_while_dpkg_ran_is_during_not_explained(root, utc):
    # adduser, run by a maintainer script, rewrites /etc/passwd.
    line = Timeline(root, "/etc/passwd", "root:x:0:0::/root:/bin/sh\n"
                                         "systemd-network:x:998:998::/:/bin/false\n")
    line.log(-9, "startup archives unpack")
    line.log(-9, "install systemd:amd64 <none> 252.31-1~deb12u1")
    line.log(-8, "status unpacked systemd:amd64 252.31-1~deb12u1")
    line.log(-3, "startup packages configure")
    line.log(-3, "configure systemd:amd64 252.31-1~deb12u1 <none>")
    # The postinst ran adduser here: the status line dpkg writes when it
    # is done says the run went on until then.
    line.log(+2, "status installed systemd:amd64 252.31-1~deb12u1")
    found = line.judge()
    assert found.explained is None and found.during is not None


@pytest.mark.parametrize("lines", [
    # dpkg ran in the same hour, but was done well before the change.
    [(-1800, "startup archives unpack"), (-1800, "install systemd:amd64 <none> 252"),
     (-1795, "configure systemd:amd64 252 <none>")],
    # Between two apt runs a minute apart: dpkg was not at work then.
    [(-30, "startup archives unpack"), (-30, "install systraq:all <none> 20261121"),
     (-20, "status installed systraq:all 20261121"), (+30, "startup archives unpack"),
     (+30, "install exim4:all <none> 4.96-15")],
])
def test_judge_a_critical_file_changed_outside_any_run_is_a_warning(root, utc, lines):
    line = Timeline(root, "/etc/passwd", "root:x:0:0::/root:/bin/sh\nmallory:x:0:0::/:/bin/sh\n")
    for offset, words in lines:
        line.log(offset, words)
    found = line.judge(since=line.made - 3600)
    assert found.explained is None and found.during is None


def test_judge_of_several_runs_in_one_second_the_one_of_the_package_explains(root, utc):
    """apt runs dpkg several times in a row, often within one second of
    the log: each run that holds the change time is asked."""
    line = Timeline(root, "/etc/ssh/sshd_config", "Port 2222\n")
    line.log(0, "startup archives unpack")
    line.log(0, "upgrade openssh-server:amd64 1:9.2p1-2 1:9.2p1-2+deb12u3")
    line.log(0, "startup packages configure")
    line.log(0, "configure openssh-server:amd64 1:9.2p1-2+deb12u3 <none>")
    line.log(0, "startup archives unpack")
    line.log(0, "upgrade sed:amd64 4.9-2 4.9-2")
    line.log(0, "status installed sed:amd64 4.9-2")
    os.utime(root.host(DPKG), ns=(int(line.made * 1e9) + 1000, int(line.made * 1e9) + 1000))
    found = line.judge()
    assert found.explained["package"] == "openssh-server"


def test_judge_the_run_that_unpacked_names_the_change_not_the_one_that_configured(root, utc):
    """apt unpacks an Essential package in one dpkg run and configures it
    in the next, within one second of the log: both hold the change; the
    unpack changed the files and labels it.  (Its "upgrade" line is a
    second older than the configure run, which holds none of it.)"""
    line = Timeline(root, "/usr/sbin/sshd", "sshd, rebuilt\n")
    line.log(-1, "startup archives unpack")
    line.log(-1, "upgrade openssh-server:amd64 1:9.2p1-2 1:9.2p1-2")
    line.log(0, "status unpacked openssh-server:amd64 1:9.2p1-2")
    line.log(0, "startup packages configure")
    line.log(0, "configure openssh-server:amd64 1:9.2p1-2 <none>")
    line.log(0, "status installed openssh-server:amd64 1:9.2p1-2")
    os.utime(root.host(DPKG), ns=(int(line.made * 1e9) + 1000, int(line.made * 1e9) + 1000))
    found = line.judge()
    assert found.explained["package"] == "openssh-server"
    assert found.explained["label"].startswith("reinstalled "), found.explained


HELPER = "/var/lib/systemd/deb-systemd-helper-enabled"


def rsyslog_enabled(root, alias, record=True):
    """rsyslog installed (its unit in /usr/lib/systemd/system), and the
    alias link its postinst's deb-systemd-helper makes, recorded by it in
    rsyslog.service.dsh-also when ``record``."""
    from tests.unit.test_packages import FakeDpkg
    FakeDpkg(root).install("rsyslog", "8.2302.0-1", {
        "/usr/lib/systemd/system/rsyslog.service": "[Service]\n"})
    root.symlink("/usr/lib/systemd/system/rsyslog.service", alias)
    if record:
        root.write(f"{HELPER}/rsyslog.service.dsh-also",
                   f"/etc/systemd/system/multi-user.target.wants/rsyslog.service\n{alias}\n")


@pytest.mark.parametrize("unit_dir", ["/usr/lib/systemd/system", "/lib/systemd/system"])
def test_judge_a_link_deb_systemd_helper_recorded_in_the_run_is_the_packages(root, utc,
                                                                           unit_dir):
    # apt-get install rsyslog: the postinst enables the unit, and its
    # alias /etc/systemd/system/syslog.service is a new link on a
    # critical path.
    alias = "/etc/systemd/system/syslog.service"
    line = Timeline(root, "/etc/motd", "x\n")
    rsyslog_enabled(root, alias)
    if unit_dir == "/lib/systemd/system":     # a system without merged /usr
        root.write("/var/lib/dpkg/info/rsyslog.list",
                   "/lib/systemd/system\n/lib/systemd/system/rsyslog.service\n")
    line.made = os.lstat(root.host(alias)).st_ctime_ns / 1e9
    line.log(-2, "startup archives unpack")
    line.log(-2, "install rsyslog:amd64 <none> 8.2302.0-1")
    line.log(+2, "status installed rsyslog:amd64 8.2302.0-1")
    found = line.judge("created", path=alias, critical=("/etc/systemd/system/*",))
    assert found.during is None and found.explained["package"] == "rsyslog"
    assert found.explained["label"] == "enabled by deb-systemd-helper for rsyslog.service"


def test_judge_a_link_without_the_helpers_record_or_outside_its_run_stays_a_warning(root, utc):
    alias = "/etc/systemd/system/syslog.service"
    critical = ("/etc/systemd/system/*",)
    line = Timeline(root, "/etc/motd", "x\n")
    rsyslog_enabled(root, alias, record=False)
    line.made = os.lstat(root.host(alias)).st_ctime_ns / 1e9
    line.log(-2, "startup archives unpack")
    line.log(-2, "install rsyslog:amd64 <none> 8.2302.0-1")
    line.log(+2, "status installed rsyslog:amd64 8.2302.0-1")
    # Made while dpkg ran, but deb-systemd-helper recorded no such link.
    found = line.judge("created", path=alias, critical=critical)
    assert found.explained is None and found.during is not None


def test_judge_a_helper_record_made_in_a_run_of_another_package_does_not_vouch(root, utc):
    # The link and the record were both written while "apt-get install
    # tree" ran, which did not touch rsyslog, whose unit it is.
    alias = "/etc/systemd/system/syslog.service"
    rsyslog_enabled(root, alias)
    line = Timeline(root, "/etc/motd", "x\n")
    line.made = os.lstat(root.host(alias)).st_ctime_ns / 1e9
    line.log(-2, "startup archives unpack")
    line.log(-2, "install tree:amd64 <none> 2.1.0-1")
    line.log(+2, "status installed tree:amd64 2.1.0-1")
    found = line.judge("created", path=alias, critical=("/etc/systemd/system/*",))
    assert found.explained is None and found.during is not None


@pytest.mark.parametrize("target, package, explained", [
    ("../init.d/rsyslog", "rsyslog", True),
    # The run worked on another package: no evidence it made the link.
    ("../init.d/rsyslog", "tree", False),
    # A boot link to anything but the script of its name is nobody's.
    ("/tmp/.x", "rsyslog", False),
])
def test_judge_a_boot_link_update_rc_d_makes_is_the_packages(root, utc, target, package,
                                                              explained):
    from tests.unit.test_packages import FakeDpkg
    line = Timeline(root, "/etc/motd", "x\n")
    FakeDpkg(root).install("rsyslog", "8.2302.0-1", {"/etc/init.d/rsyslog": "#!/bin/sh\n"})
    link = "/etc/rc2.d/S01rsyslog"
    root.symlink(target, link)
    line.made = os.lstat(root.host(link)).st_ctime_ns / 1e9
    line.log(-2, "startup archives unpack")
    line.log(-2, f"install {package}:amd64 <none> 1")
    line.log(+2, f"status installed {package}:amd64 1")
    found = line.judge("created", path=link, critical=("/etc/rc?.d/*",))
    if explained:
        assert found.explained["label"] == "enabled by update-rc.d for rsyslog"
    else:
        assert found.explained is None and found.during is not None


def test_judge_a_helper_record_older_than_the_run_does_not_vouch_for_a_link(root, utc):
    # An earlier install recorded the link; this run (of rsyslog again)
    # held a new link's change but deb-systemd-helper wrote nothing in it.
    alias = "/etc/systemd/system/syslog.service"
    rsyslog_enabled(root, alias)
    record = os.lstat(root.host(f"{HELPER}/rsyslog.service.dsh-also")).st_ctime_ns / 1e9
    # The link made again until its change time is in a later second than
    # the record's (the file clock, not time.time(), decides).
    made = record
    while int(made) <= int(record):
        time.sleep(0.01)
        os.unlink(root.host(alias))
        root.symlink("/usr/lib/systemd/system/rsyslog.service", alias)
        made = os.lstat(root.host(alias)).st_ctime_ns / 1e9
    line = Timeline(root, "/etc/motd", "x\n")
    line.made = made
    line.log(0, "startup archives unpack")
    line.log(0, "upgrade rsyslog:amd64 8.2302.0-1 8.2302.0-1")
    line.log(+1, "status installed rsyslog:amd64 8.2302.0-1")
    found = line.judge("created", path=alias, critical=("/etc/systemd/system/*",))
    assert found.explained is None and found.during is not None


def test_judge_the_last_line_written_just_into_the_next_second_still_ends_the_run(root, utc):
    # dpkg took the time at the end of a second and its write reached
    # the log a moment into the next, after the change it followed.  The
    # change is made again until it lies in the first 50 ms of a second.
    line = Timeline(root, "/etc/ssh/sshd_config", "Port 2222\n")
    while int(line.made * 1e9) % 10**9 >= 50_000_000:
        time.sleep(0.005)
        root.write("/etc/ssh/sshd_config", "Port 2222\n")
        line.made = os.lstat(root.host("/etc/ssh/sshd_config")).st_ctime_ns / 1e9
    line.log(-1, "startup archives unpack")
    line.log(-1, "upgrade openssh-server:amd64 1:9.2p1-2 1:9.2p1-2+deb12u3")
    line.log(-1, "status installed openssh-server:amd64 1:9.2p1-2+deb12u3")
    written = int(line.made * 1e9) + 1000                # 1 us after the change
    os.utime(root.host(DPKG), ns=(written, written))
    assert line.judge().explained is not None
    # A log written long after its last line's second does not stretch
    # the run to that time.
    late = int(line.made) * 10**9 + 500_000_000
    os.utime(root.host(DPKG), ns=(late, late))
    assert line.judge().explained is None
