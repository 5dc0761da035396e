# SPDX-License-Identifier: GPL-2.0-or-later
"""The upgrade from the release's own old systraq (20201231-1 in bookworm,
20201231-5 in trixie, 20260328-1 in sid), debconf and the dpkg trigger,
in a fresh chroot of the release under test.

The tests run in file order on one chroot: an admin who ran the old
shell-script package as its manual says, upgrades, changes where mail
goes with dpkg-reconfigure, installs and purges other packages, and
finally purges systraq.
"""

import json
import os
import re

from systraq import __version__
from tests.chroot import OLD_PARTS_DIR, OLD_SYSTRAQ, SUITE
from tests.package.conftest import wait_for_first_baseline, wait_for_mail

USER = "debian-systraq"
OLD = OLD_SYSTRAQ[SUITE]
EXAMPLES = "/usr/share/doc/systraq/examples"
STOCK_PARTS = ["ae-release", "ah-uname", "ak-uptime", "bb-free", "cc-df", "ck-mdstat",
               "dd-last", "ee-lastlog", "ff-netstat", "gg-ps", "ii-shellrc", "nn-debsums",
               "rr-localdigest", "ww-signature"]
OBSOLETE = ["/etc/apt/apt.conf.d/20systraq", "/etc/systraq/Makefile",
            "/etc/systraq/filetraq.default",
            "/etc/default/systraq.d/examples/systraq_is_unconfigured"]


def systraq(chroot, command, check=False):
    """systraq as root, in a network namespace of its own (the report's
    listening sockets are then the ones a test starts)."""
    return chroot.run(f"systraq {command}", check=check, net=True)


def conf_value(chroot, key):
    """The uncommented ``key = value`` line of systraq.conf."""
    for line in chroot.read("/etc/systraq/systraq.conf").decode().splitlines():
        if line.startswith(f"{key} = ") or line == f"{key} =":
            return line.partition("=")[2].strip()
    return None


def test_the_old_package_run_as_its_manual_says(chroot):
    chroot.apt_install(f"systraq={OLD}")
    chroot.run("useradd -m -s /bin/bash admin && useradd -m -s /bin/bash carol")
    # Configured as the manual says: the example lists copied, the list
    # of the contents job made, the marker removed.  The admin added a
    # file of their own to filetraq's list, a local report part, and
    # routed the systraq user's mail to themselves.
    chroot.run(f"cp {EXAMPLES}/snapshot_* /etc/systraq/ && rm /etc/systraq/systraq_is_unconfigured")
    chroot.run("echo /srv/app.conf >> /etc/systraq/filetraq.tail.conf"
               " && mkdir -p /srv && echo 'workers = 4' > /srv/app.conf")
    chroot.write("/etc/systraq/systraq.d/AA-local", "#!/bin/sh\necho backups: ok\n", mode=0o755)
    chroot.run(f"echo admin > /var/lib/systraq/.forward && chown {USER}: /var/lib/systraq/.forward")
    chroot.run("make -s -C /etc/systraq", user=USER)
    # The old cron jobs, once: filetraq's backups and both .stat files.
    chroot.run("filetraq /etc/systraq/filetraq.conf /var/lib/systraq/filetraq", user=USER)
    chroot.run("st_snapshot.hourly", user=USER)
    chroot.run("ST_MODE=root st_snapshot.hourly")
    assert chroot.exists("/var/lib/systraq/filetraq/etc/hosts/orig")
    assert chroot.exists("/var/lib/systraq/snapshot_root.stat")
    # A machine where the admin never got round to it keeps the marker,
    # and its hourly job prints it into cron mail.
    chroot.run("cp /etc/default/systraq.d/examples/systraq_is_unconfigured /etc/systraq/")
    assert "RTFM" in chroot.run("st_snapshot.hourly", user=USER).stdout
    for link in STOCK_PARTS:
        target = os.readlink(chroot.host(f"/etc/systraq/systraq.d/{link}"))
        assert target == f"{OLD_PARTS_DIR[OLD]}/{link}"


def test_the_upgrade_keeps_what_the_admin_had_and_drops_what_is_obsolete(chroot, deb):
    uid = chroot.run(f"id -u {USER}").stdout
    lists = {name: chroot.read(f"/etc/systraq/{name}")
             for name in ("snapshot_pub.list", "snapshot_root.list",
                          "snapshot_pub.homelist", "snapshot_root.homelist",
                          "filetraq.tail.conf")}
    backups = chroot.run("find /var/lib/systraq/filetraq -type f | sort").stdout
    chroot.copy_in(deb, "/tmp/systraq.deb")
    # Where mail goes, preseeded as for a new installation: the old
    # package had no setting, so nothing in force overrides it.
    chroot.run("echo 'systraq systraq/mailto string admin' | debconf-set-selections")
    # The admin edited filetraq.tail.conf, a conffile the new version
    # changes: dpkg would ask; unattended, the admin's version is kept.
    result = chroot.apt_install("/tmp/systraq.deb", options="-o Dpkg::Options::=--force-confdef"
                                " -o Dpkg::Options::=--force-confold")
    # The first baseline compares with the old package's state, outside dpkg.
    wait_for_first_baseline(chroot)
    assert "systraq: warning" not in result.stdout + result.stderr
    assert chroot.exists("/etc/systraq/filetraq.tail.conf.dpkg-dist")

    assert chroot.run(f"id -u {USER}").stdout == uid
    for name, text in lists.items():
        assert chroot.read(f"/etc/systraq/{name}") == text, name
    assert chroot.read("/var/lib/systraq/.forward") == b"admin\n"
    # The backups filetraq made are still there (and taken over).
    # (a removed file's backup is kept under a dated name).
    kept = chroot.run("find /var/lib/systraq/filetraq -type f | sort").stdout.split()
    assert {os.path.dirname(p) for p in backups.split()} <= {os.path.dirname(p) for p in kept}
    # The old root snapshot, with digests of root-only files, is closed now.
    assert not chroot.exists("/var/lib/systraq/snapshot_root.stat")
    moved = "/var/lib/systraq/root/snapshot_root.stat"
    assert chroot.run(f"stat -c '%U %a' {moved}").stdout.strip() == "root 600"
    # Local parts stay; the old package's stock links go.
    assert chroot.exists("/etc/systraq/systraq.d/AA-local")
    for link in STOCK_PARTS:
        assert not chroot.exists(f"/etc/systraq/systraq.d/{link}"), link
    # Obsolete conffiles are gone, and dpkg no longer lists them.
    conffiles = chroot.run("dpkg-query -W -f '${Conffiles}' systraq").stdout
    for path in OBSOLETE:
        assert not chroot.exists(path), path
        assert path not in conffiles, path
    assert not chroot.exists("/etc/default/systraq.d")
    # The marker is gone: no job prints it any more.
    assert not chroot.exists("/etc/systraq/systraq_is_unconfigured")
    assert conf_value(chroot, "mailto") == "admin"
    assert conf_value(chroot, "enabled") == "no"


def test_the_first_report_after_the_upgrade_has_no_spurious_warnings(chroot):
    for command in ("check", "audit", "packages"):
        assert systraq(chroot, command).returncode == 0, command
    data = json.loads(systraq(chroot, "report --stdout --format json").stdout)
    # The fill level of the filesystems is the host's, which the test
    # cannot choose; any other warning would be a spurious change.
    assert [w["text"] for w in data["warnings"] if w["change"] != "filesystem full"] == []
    assert "backups: ok" in systraq(chroot, "report --stdout").stdout  # the admin's part
    # A change now is shown against the backup the old filetraq made.
    chroot.run("echo '192.0.2.7 intranet' >> /etc/hosts")
    systraq(chroot, "check")
    shown = systraq(chroot, "report --stdout").stdout
    assert "* /etc/hosts: content changed" in shown and "+192.0.2.7 intranet" in shown


def test_dpkg_reconfigure_with_a_preseeded_recipient_changes_where_mail_goes(chroot):
    systraq(chroot, "report --full", check=False)
    first = wait_for_mail(chroot, 1, "admin")[-1]
    assert first["To"].addresses[0].username == "admin"
    chroot.run("echo 'systraq systraq/mailto string carol' | debconf-set-selections"
               " && dpkg-reconfigure -fnoninteractive systraq")
    assert conf_value(chroot, "mailto") == "carol"
    systraq(chroot, "report --full", check=False)
    assert wait_for_mail(chroot, 1, "carol")[-1]["To"].addresses[0].username == "carol"
    assert len(wait_for_mail(chroot, 1, "admin")) == 1


def test_a_hand_edit_is_what_dpkg_reconfigure_shows_and_an_upgrade_keeps(chroot):
    conf = chroot.read("/etc/systraq/systraq.conf").decode()
    chroot.write("/etc/systraq/systraq.conf",
                 conf.replace("\nmailto = carol\n", "\nmailto = carol, admin\n"))
    chroot.run("dpkg-reconfigure -fnoninteractive systraq")
    shown = chroot.run("debconf-show systraq").stdout
    assert "systraq/mailto: carol, admin" in shown, shown
    assert conf_value(chroot, "mailto") == "carol, admin"
    chroot.run("apt-get install -y -q --reinstall /tmp/systraq.deb")
    assert conf_value(chroot, "mailto") == "carol, admin"


def test_the_trigger_stamps_and_the_next_contents_run_follows(chroot):
    listed = chroot.read("/etc/systraq/filetraq.conf").decode()
    assert "/etc/nanorc\n" not in listed
    chroot.run("rm -f /var/lib/systraq/package-operation")
    chroot.apt_install("nano")
    assert chroot.exists("/var/lib/systraq/package-operation")
    log = chroot.read("/var/log/dpkg.log").decode()
    assert re.search(r" trigproc systraq:\S+ ", log)
    # The trigger only stamps: the list is written again by the next
    # contents run (the timer's, or the hourly check's).
    assert chroot.read("/etc/systraq/filetraq.conf").decode() == listed
    chroot.run("systraq contents", check=False)
    assert "/etc/nanorc\n" in chroot.read("/etc/systraq/filetraq.conf").decode()
    # Removed, its conffile stays; purged, it leaves the list.
    chroot.run("apt-get purge -y -q nano")
    chroot.run("systraq contents", check=False)
    assert "/etc/nanorc\n" not in chroot.read("/etc/systraq/filetraq.conf").decode()
    # The trigger says nothing in an apt run (the old apt hook printed
    # into every one), and runs neither systraq nor py3compile.
    chroot.run("printf '#!/bin/sh\\necho \"$0\" >> /tmp/ran\\n' > /usr/local/bin/py3compile"
               " && chmod 755 /usr/local/bin/py3compile && rm -f /tmp/ran")
    try:
        result = chroot.apt_install("nano")
    finally:
        chroot.run("rm /usr/local/bin/py3compile")
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "systraq" in line]
    assert lines == [f"Processing triggers for systraq ({__version__}) ..."]
    assert not chroot.exists("/tmp/ran")


def test_purge_leaves_the_user_and_nothing_else(chroot):
    chroot.run("apt-get purge -y -q systraq")
    for path in ("/etc/systraq", "/var/lib/systraq", "/etc/cron.d/systraq",
                 "/var/lib/ucf/cache/:etc:systraq:systraq.conf"):
        assert not chroot.exists(path), path
    assert "systraq" not in chroot.read("/var/lib/ucf/registry").decode()
    assert chroot.run("debconf-show systraq").stdout == ""
    chroot.run(f"getent passwd {USER}")
