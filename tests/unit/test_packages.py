# SPDX-License-Identifier: GPL-2.0-or-later
"""systraq packages on a fake root with a small dpkg database."""

import contextlib
import hashlib
import json
import os
import re
import time

import pytest

from systraq import packages
from systraq.cli import main
from systraq.config import load as load_config
from systraq.spool import Spool


# 2026-11-20 06:25 local time: the day of the first run in several tests.
DAY1 = time.mktime((2026, 11, 20, 6, 25, 0, 0, 0, -1))


def md5(data):
    return hashlib.md5(data).hexdigest()


class FakeDpkg:
    """Packages installed in a FakeRoot: files, .list, .md5sums, status."""

    def __init__(self, root):
        self.root = root
        self.stanzas = []
        root.write("/var/lib/dpkg/info/format", "1\n")
        root.write("/var/lib/dpkg/diversions", "")
        root.mkdir("/etc/dpkg/dpkg.cfg.d")

    def install(self, name, version, files, conffiles=(), sums=True, arch="amd64"):
        """``files``: {path: content}; ``conffiles``: paths among them."""
        listed = set()
        for path, data in files.items():
            self.root.write(path, data)
            parts = path.split("/")
            for n in range(2, len(parts)):
                listed.add("/".join(parts[:n]))
            listed.add(path)
        info = f"/var/lib/dpkg/info/{name}"
        self.root.write(info + ".list", "".join(p + "\n" for p in ["/."] + sorted(listed)))
        if sums:
            self.root.write(info + ".md5sums", "".join(
                f"{md5(data.encode())}  {path[1:]}\n"
                for path, data in sorted(files.items()) if path not in conffiles))
        stanza = [f"Package: {name}", "Status: install ok installed",
                  f"Architecture: {arch}", f"Version: {version}"]
        if conffiles:
            stanza.append("Conffiles:")
            stanza += [f" {p} {md5(files[p].encode())}" for p in conffiles]
        self.stanzas = [s for s in self.stanzas if not s.startswith(f"Package: {name}\n")]
        self.stanzas.append("\n".join(stanza) + "\n")
        self.root.write("/var/lib/dpkg/status", "\n".join(self.stanzas))

    def forge(self, package, path, data):
        """Change ``path`` and its line in ``package``'s md5sums together,
        as an intruder who knows about debsums would; the sums file's text
        from before is returned."""
        old = open(self.root.host(path), "rb").read()
        self.root.write(path, data)
        sums = self.root.host(f"/var/lib/dpkg/info/{package}.md5sums")
        original = open(sums).read()
        with open(sums, "w") as handle:
            handle.write(original.replace(md5(old), md5(data.encode())))
        return original

    def log(self, line):
        with open(self.root.host("/var/log/dpkg.log"), "a") as handle:
            handle.write(line + "\n")

    @contextlib.contextmanager
    def operation(self, *actions):
        """A dpkg run now, as dpkg logs it: its startup line, ``actions``
        (what follows the time in dpkg.log, "upgrade coreutils:amd64 9.1-1
        9.1-1"), what the block changes, and a last "status installed"
        line per package, each stamped with the clock as dpkg stamps it:
        the change times of what the block writes lie inside the run."""
        def now():
            return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        self.log(f"{now()} startup archives unpack")
        for action in actions:
            self.log(f"{now()} {action}")
        yield
        for action in actions:
            verb, package, _old, new = action.split(" ")
            if verb in ("install", "upgrade"):
                self.log(f"{now()} status installed {package} {new}")


@pytest.fixture
def dpkg(root):
    fake = FakeDpkg(root)
    fake.install("coreutils", "9.1-1", {"/usr/bin/ls": "ls\n", "/usr/bin/cat": "cat\n",
                                        "/usr/share/doc/coreutils/README": "read me\n"})
    fake.install("openssh-server", "1:9.2p1-2", {
        "/usr/sbin/sshd": "sshd\n", "/etc/ssh/sshd_config": "Port 22\n",
        "/etc/default/ssh": "SSHD_OPTS=\n"},
        conffiles=("/etc/ssh/sshd_config", "/etc/default/ssh"))
    fake.install("nosums", "1.0", {"/usr/bin/nosums": "x\n"}, sums=False)
    root.mkdir("/var/log")
    return fake


def check(root, names=None, text="", now=None, workers=1, **kwargs):
    path = root.write("/etc/systraq/systraq.conf", text)
    return packages.run(root.settings(), load_config(path), names, workers=workers,
                        now=now, **kwargs)


def kinds(report):
    return sorted((f.kind, f.path.decode() if f.path else f.package) for f in report.findings)


def test_an_intact_system_has_only_the_package_without_sums_to_say(dpkg):
    report = check(dpkg.root)
    assert kinds(report) == [("without sums", "nosums")]
    assert report.packages == 3
    assert report.files == 6     # 4 from md5sums, 2 conffiles, none for nosums


def test_changed_missing_and_edited_conffiles_are_told_apart(dpkg):
    dpkg.root.write("/usr/bin/ls", "trojan\n")
    os.unlink(dpkg.root.host("/usr/share/doc/coreutils/README"))
    dpkg.root.write("/etc/ssh/sshd_config", "Port 2222\n")
    report = check(dpkg.root, workers=2)
    assert kinds(report) == [
        ("changed", "/usr/bin/ls"),
        ("conffile", "/etc/ssh/sshd_config"),
        ("missing", "/usr/share/doc/coreutils/README"),
        ("without sums", "nosums")]
    warnings = sorted(f.kind for f in report.warnings)
    assert warnings == ["changed", "missing", "without sums"]


def test_a_critical_conffile_edit_is_a_warning(dpkg):
    dpkg.root.write("/etc/ssh/sshd_config", "PermitRootLogin yes\n")
    report = check(dpkg.root, text="[packages]\ncritical = /etc/ssh/*\n")
    assert ("critical conffile", "/etc/ssh/sshd_config") in kinds(report)
    assert any(f.kind == "critical conffile" for f in report.warnings)


def test_a_file_replaced_by_a_symlink_is_changed(dpkg):
    os.unlink(dpkg.root.host("/usr/bin/cat"))
    dpkg.root.symlink("/usr/bin/ls", "/usr/bin/cat")
    (finding,) = [f for f in check(dpkg.root).findings if f.kind == "changed"]
    assert finding.path == b"/usr/bin/cat"
    assert finding.detail == "a symbolic link to /usr/bin/ls"


def test_a_mismatch_keeps_the_day_it_was_first_seen_until_fixed(dpkg):
    dpkg.root.write("/usr/bin/ls", "trojan\n")
    (first,) = [f for f in check(dpkg.root, now=DAY1).findings if f.kind == "changed"]
    assert first.first_seen == "2026-11-20"
    (again,) = [f for f in check(dpkg.root, now=DAY1 + 86400).findings if f.kind == "changed"]
    assert again.first_seen == "2026-11-20"
    with dpkg.operation("upgrade coreutils:amd64 9.1-1 9.1-1"):
        dpkg.root.write("/usr/bin/ls", "ls\n")
    report = check(dpkg.root, now=DAY1 + 2 * 86400)
    assert ("fixed", "/usr/bin/ls") in kinds(report)
    assert not [f for f in report.warnings if f.path == b"/usr/bin/ls"]


def test_a_change_dpkg_explains_is_labelled_not_a_warning(dpkg):
    check(dpkg.root, now=DAY1)
    # An upgrade: new content, new sums, and dpkg says so in its log.
    with dpkg.operation("upgrade openssh-server:amd64 1:9.2p1-2 1:9.2p1-2+deb12u3"):
        dpkg.install("openssh-server", "1:9.2p1-2+deb12u3", {
            "/usr/sbin/sshd": "sshd fixed\n", "/etc/ssh/sshd_config": "Port 22\n",
            "/etc/default/ssh": "SSHD_OPTS=\n"},
            conffiles=("/etc/ssh/sshd_config", "/etc/default/ssh"))
    report = check(dpkg.root, now=DAY1 + 86400)
    (explained,) = [f for f in report.findings if f.kind == "explained"]
    assert explained.package == "openssh-server"
    assert re.match(r"upgraded \d\d:\d\d by dpkg: openssh-server", explained.label)
    assert explained.label.endswith(" 1:9.2p1-2 -> 1:9.2p1-2+deb12u3")
    assert explained.detail == "1 file changed"
    assert not explained.warning
    assert [f.kind for f in report.warnings] == ["without sums"]


def test_a_change_after_an_operation_on_the_same_package_is_unexplained(dpkg):
    """The hole an attacker would use: an upgrade of the package, then a
    hand edit of one of its files with its sums line, moments later.  The
    upgrade explains its own changes only: the edit's change time lies
    after dpkg's last line (dpkg.log's own modification time says when
    that was, to the nanosecond)."""
    check(dpkg.root, now=DAY1)
    with dpkg.operation("upgrade coreutils:amd64 9.1-1 9.1-2"):
        dpkg.install("coreutils", "9.1-2", {"/usr/bin/ls": "ls 2\n", "/usr/bin/cat": "cat\n",
                                            "/usr/share/doc/coreutils/README": "read me\n"})
    dpkg.forge("coreutils", "/usr/bin/cat", "trojan\n")
    report = check(dpkg.root, now=DAY1 + 86400)
    assert ("unexplained", "/usr/bin/cat") in kinds(report)
    (explained,) = [f for f in report.findings if f.kind == "explained"]
    assert explained.package == "coreutils" and explained.detail == "1 file changed"


def test_a_file_changed_with_its_sums_line_and_no_dpkg_operation_is_unexplained(dpkg):
    check(dpkg.root, now=DAY1)
    # What dpkg --verify and debsums cannot see: the file and its sums
    # line changed together, and nothing in dpkg's log.
    dpkg.forge("coreutils", "/usr/bin/ls", "trojan\n")
    report = check(dpkg.root, now=DAY1 + 86400)
    (finding,) = [f for f in report.findings if f.kind == "unexplained"]
    assert finding.path == b"/usr/bin/ls" and finding.warning


def test_accept_silences_a_finding_until_the_file_changes_again(dpkg, capsys):
    dpkg.root.write("/usr/bin/ls", "local build\n")
    check(dpkg.root)
    assert packages.accept(dpkg.root.settings(), [b"/usr/bin/ls"]) == [b"/usr/bin/ls"]
    report = check(dpkg.root)
    assert not [f for f in report.findings if f.path == b"/usr/bin/ls"]
    assert report.accepted == 1
    dpkg.root.write("/usr/bin/ls", "another build\n")
    assert ("changed", "/usr/bin/ls") in kinds(check(dpkg.root))


def test_accept_refuses_a_path_that_is_not_a_finding(dpkg, capsys):
    check(dpkg.root)
    code = main(["--root", os.fsdecode(dpkg.root.path), "accept", "/usr/bin/cat"])
    assert code == 2
    assert "not a current finding" in capsys.readouterr().err


def test_naming_packages_checks_only_them_and_keeps_the_state(dpkg):
    dpkg.root.write("/usr/bin/ls", "trojan\n")
    report = check(dpkg.root, names=["openssh-server"])
    assert kinds(report) == []
    assert not os.path.exists(packages.state_path(dpkg.root.settings()))


def test_cli_json_and_exit_status(dpkg, capsys):
    top = os.fsdecode(dpkg.root.path)
    assert main(["--root", top, "packages", "coreutils"]) == 0
    capsys.readouterr()
    dpkg.root.write("/usr/bin/cat", "changed\n")
    assert main(["--root", top, "packages", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert {"kind": "changed", "package": "coreutils", "path": "/usr/bin/cat",
            "warning": True, "version": "9.1-1"}.items() <= [
                f for f in data["findings"] if f["kind"] == "changed"][0].items()


def test_an_unknown_package_name_is_a_usage_error(dpkg, capsys):
    assert main(["--root", os.fsdecode(dpkg.root.path), "packages", "no-such-package"]) == 2
    assert "no-such-package" in capsys.readouterr().err


def test_a_diverted_file_is_looked_for_where_it_was_diverted_to(dpkg):
    # dpkg-divert --rename /usr/bin/cat to /usr/bin/cat.distrib, as a local
    # admin does before putting their own cat in place.
    os.rename(dpkg.root.host("/usr/bin/cat"), dpkg.root.host("/usr/bin/cat.distrib"))
    dpkg.root.write("/usr/bin/cat", "the admin's cat\n")
    dpkg.root.write("/var/lib/dpkg/diversions", "/usr/bin/cat\n/usr/bin/cat.distrib\n:\n")
    assert kinds(check(dpkg.root)) == [("without sums", "nosums")]
    os.unlink(dpkg.root.host("/usr/bin/cat.distrib"))
    assert ("missing", "/usr/bin/cat.distrib") in kinds(check(dpkg.root))


def test_an_unexplained_change_stays_until_undone_or_accepted(dpkg):
    check(dpkg.root, now=DAY1)
    dpkg.forge("coreutils", "/usr/bin/ls", "trojan\n")
    check(dpkg.root, now=DAY1 + 3600)
    # Nothing changed since: it is still unexplained, from the first day.
    (again,) = [f for f in check(dpkg.root, now=DAY1 + 86400).findings
                if f.path == b"/usr/bin/ls"]
    assert (again.kind, again.first_seen) == ("unexplained", "2026-11-20")
    # Queued for the report once, on the day it was found.
    spool = Spool(dpkg.root.settings())
    queued = [r for b in spool.pending() for r in spool.records(b)]
    assert [r["path"] for r in queued if r["change"] == "unexplained"] == ["/usr/bin/ls"]
    packages.accept(dpkg.root.settings(), [b"/usr/bin/ls"])
    report = check(dpkg.root, now=DAY1 + 2 * 86400)
    assert not [f for f in report.findings if f.path == b"/usr/bin/ls"]
    assert report.accepted == 1


def test_an_unexplained_change_undone_is_fixed(dpkg):
    check(dpkg.root, now=DAY1)
    original = dpkg.forge("coreutils", "/usr/bin/ls", "trojan\n")
    sums = dpkg.root.host("/var/lib/dpkg/info/coreutils.md5sums")
    assert ("unexplained", "/usr/bin/ls") in kinds(check(dpkg.root, now=DAY1 + 3600))
    dpkg.root.write("/usr/bin/ls", "ls\n")
    open(sums, "w").write(original)
    assert ("fixed", "/usr/bin/ls") in kinds(check(dpkg.root, now=DAY1 + 7200))


def test_quick_reads_only_files_whose_metadata_changed(dpkg):
    full = check(dpkg.root)
    assert full.read == 4 + 2       # every file with sums, conffiles included
    assert check(dpkg.root, quick=True).read == 0
    # An edit changes the file's times: read again, and found.
    dpkg.root.write("/usr/bin/ls", "trojan\n")
    report = check(dpkg.root, quick=True)
    assert report.read == 1
    assert ("changed", "/usr/bin/ls") in kinds(report)
    # Even with the modification time set back, the change time moved.
    info = os.stat(dpkg.root.host("/usr/bin/cat"))
    dpkg.root.write("/usr/bin/cat", "kitten\n")
    os.utime(dpkg.root.host("/usr/bin/cat"), ns=(info.st_atime_ns, info.st_mtime_ns))
    report = check(dpkg.root, quick=True)
    assert ("changed", "/usr/bin/cat") in kinds(report)
