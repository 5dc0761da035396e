# SPDX-License-Identifier: GPL-2.0-or-later
"""A package operation explains only what it made while it ran, in a fresh
chroot of the release under test.

The hole the fixed five-minute window left: a reinstall of a package,
then, a minute later, a hand edit of one of its files together with its
line in dpkg's sums, and of its conffile.  Both are warnings in the next
report; the reinstall itself is still labelled with what it changed.
"""

import json

from tests.chroot import mirror
from tests.package.conftest import wait_for_first_baseline

PACKAGE = "nano"
BINARY = "/usr/bin/nano"
CONFFILE = "/etc/nanorc"


def systraq(chroot, command):
    result = chroot.run(f"systraq {command}", check=False, net=True)
    assert result.returncode in (0, 1), (command, result.stderr)
    return result


def test_installed_and_quiet(chroot, deb):
    chroot.copy_in(deb, "/tmp/systraq.deb")
    chroot.run("echo 'systraq systraq/mailto string' | debconf-set-selections")
    chroot.apt_install("/tmp/systraq.deb", PACKAGE)
    wait_for_first_baseline(chroot)
    for command in ("check", "packages", "report"):
        systraq(chroot, command)
    warnings = json.loads(systraq(chroot, "report --stdout --format json").stdout)["warnings"]
    assert [w["text"] for w in warnings if w["change"] != "filesystem full"] == []


def test_installing_packages_whose_scripts_enable_units_warns_about_nothing(chroot):
    # rsyslog's postinst enables its unit and the syslog.service alias
    # with deb-systemd-helper: links on a critical path
    # (/etc/systemd/system/*), made while dpkg ran, that the helper
    # recorded in rsyslog.service.dsh-also.
    chroot.apt_install("rsyslog", "tree")
    assert chroot.exists("/var/lib/systemd/deb-systemd-helper-enabled/rsyslog.service.dsh-also")
    assert chroot.run("readlink /etc/systemd/system/syslog.service").stdout.strip()
    for command in ("check", "packages"):
        systraq(chroot, command)
    data = json.loads(systraq(chroot, "report --stdout --format json").stdout)
    assert [w["text"] for w in data["warnings"] if w["change"] != "filesystem full"] == []
    (operation,) = [o for o in data["package_operations"] if "rsyslog" in o["packages"]]
    assert operation["verified"], operation
    # The links' records carry the helper's label into the spool.
    spooled = chroot.run("cat /var/lib/systraq/spool/*.jsonl").stdout
    assert spooled.count("enabled by deb-systemd-helper for rsyslog.service") >= 2, spooled


def test_an_upgrade_of_a_stale_system_warns_about_nothing(chroot):
    # The chroot holds the release as debootstrap took it: its updates
    # and security archives bring what a server's first "apt-get upgrade"
    # brings.  A newer "tree" from a local repository makes sure at least
    # one package is upgraded, whatever the archive holds today.
    chroot.run("mkdir -p /srv/repo && cd /srv/repo && apt-get download -q tree"
               " && dpkg-deb -R tree_*.deb x && rm tree_*.deb"
               " && sed -i 's/^Version: .*/&+systraq1/' x/DEBIAN/control"
               " && dpkg-deb -b x tree_new.deb >/dev/null && rm -rf x"
               " && { dpkg-deb -f tree_new.deb; echo 'Filename: ./tree_new.deb';"
               "      echo \"Size: $(stat -c %s tree_new.deb)\";"
               "      echo \"SHA256: $(sha256sum tree_new.deb | cut -d' ' -f1)\"; echo; }"
               " > Packages")
    suite = chroot.release
    archive = mirror()
    lines = ["deb [trusted=yes] file:/srv/repo ./"]
    if suite != "sid":     # sid has neither
        lines.append(f"deb {archive} {suite}-updates main")
        if archive.rstrip("/").endswith("/debian"):
            lines.append(f"deb {archive.rstrip('/')}-security {suite}-security main")
    chroot.write("/etc/apt/sources.list.d/stale.list", "\n".join(lines) + "\n")
    if chroot.run("apt-get update -q", check=False).returncode != 0:
        # A mirror without a security archive beside it.
        chroot.write("/etc/apt/sources.list.d/stale.list", "\n".join(lines[:2]) + "\n")
        chroot.run("apt-get update -q")
    # The new apt source is the admin's change, a critical one: told, and
    # delivered (mail is off here: the report is kept as a file), before
    # the upgrade.
    systraq(chroot, "check")
    systraq(chroot, "report")
    upgraded = chroot.run("apt-get upgrade -y -q").stdout
    assert "+systraq1" in chroot.run("dpkg-query -W -f '${Version}' tree").stdout, upgraded
    for command in ("check", "packages", "audit"):
        systraq(chroot, command)
    data = json.loads(systraq(chroot, "report --stdout --format json").stdout)
    assert [w["text"] for w in data["warnings"] if w["change"] != "filesystem full"] == [], \
        upgraded


def test_a_hand_edit_a_minute_after_a_reinstall_is_a_warning(chroot):
    chroot.run(f"apt-get install -y -q --reinstall {PACKAGE}")
    # A minute after dpkg's last line, by the chroot's clock.
    chroot.run('last=$(date -d "$(tail -n 1 /var/log/dpkg.log | cut -c 1-19)" +%s)'
               ' && until [ "$(date +%s)" -gt $((last + 60)) ]; do sleep 0.2; done')
    # The binary and its line in dpkg's sums together, as an intruder who
    # knows debsums would; and the conffile.
    chroot.run(f"old=$(md5sum < {BINARY} | cut -d' ' -f1)"
               f" && printf 'x' | dd of={BINARY} bs=1 seek=300 conv=notrunc status=none"
               f" && new=$(md5sum < {BINARY} | cut -d' ' -f1)"
               f" && sed -i \"s/^$old /$new /\" /var/lib/dpkg/info/{PACKAGE}.md5sums"
               f" && echo 'set mouse' >> {CONFFILE}")
    assert chroot.run(f"dpkg --verify {PACKAGE}", check=False).stdout.split() == [
        "??5??????", "c", CONFFILE]
    for command in ("check", "packages"):
        systraq(chroot, command)
    data = json.loads(systraq(chroot, "report --stdout --format json").stdout)
    warned = {w.get("path"): w["text"] for w in data["warnings"]}
    assert BINARY in warned and "no package operation to explain it" in warned[BINARY], warned
    assert CONFFILE in warned and "content changed" in warned[CONFFILE], warned
    # The reinstall is still told, labelled, among the package operations.
    (operation,) = [o for o in data["package_operations"] if "--reinstall" in o["label"]]
    assert operation["packages"] == [PACKAGE], operation
    assert operation["label"].startswith(f"apt-get install -y -q --reinstall {PACKAGE} at ")
