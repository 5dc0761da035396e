# SPDX-License-Identifier: GPL-2.0-or-later
"""Install, run and purge the built package in a fresh chroot of the release under test.

The tests run in file order on one chroot: each is a step of an admin's
life with the package.
"""

import json
import os
import stat

from systraq import __version__
from tests.package.conftest import FIRST_BASELINE, wait_for_first_baseline

USER = "debian-systraq"
# Installed through ucf from /usr/share/systraq/conf; filetraq.tail.conf
# is a conffile, as in the old package.
CONF = ["systraq.conf", "snapshot_pub.list", "snapshot_root.list",
        "snapshot_pub.homelist", "snapshot_root.homelist"]
# Public keys made with ssh-keygen -t ed25519, and their fingerprints as
# ssh-keygen -l prints them (the chroot has no ssh-keygen).
CAROL_LAPTOP = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILguhnN4Z8TTnQ4eGCBlrCqImA746EB+uyv6A1wbW32u"
                " carol@laptop")
CAROL_PHONE = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKQDdU3LHwJJ7oiftOCPVSqR2qPJ0eO7WIOpvRDTbben"
               " carol@phone")
PHONE_PRINT = "SHA256:0mS1tm1z81/7v2TGjgMGG4OCDquew7K2BV2WwBFwHpU"


def owner_mode(chroot, path):
    result = chroot.run(f"stat -c '%U:%G %a' {path}")
    return result.stdout.strip()


# Until this file exists, each systraq command the first baseline runs
# waits (a wrapper put in place of /usr/sbin/systraq with dpkg-divert).
GATE = "/tmp/baseline-may-go"
WRAPPER = f"""#!/bin/sh
while [ ! -e {GATE} ]; do sleep 0.1; done
exec /usr/sbin/systraq.real "$@"
"""


def test_install_resolves_dependencies_from_the_archive(chroot, deb):
    chroot.copy_in(deb, "/tmp/systraq.deb")
    # Not installed in a minbase system: apt must bring them from the archive.
    assert not chroot.exists("/usr/bin/python3")
    # The first baseline's jobs wait for the test (below).
    chroot.run("dpkg-divert --local --rename --divert /usr/sbin/systraq.real"
               " --add /usr/sbin/systraq")
    chroot.write("/usr/sbin/systraq", WRAPPER, mode=0o755)
    result = chroot.apt_install("/tmp/systraq.deb")
    status = chroot.run("dpkg-query -W -f '${Status} ${Version}' systraq").stdout
    assert status == f"install ok installed {__version__}"
    for module in ("apt", "debian", "pyinotify"):
        chroot.run(f"python3 -c 'import {module}'")
    assert "systraq: recording the first baseline in the background" in result.stdout


def test_apt_returns_before_the_first_baseline_and_the_report_says_so(chroot):
    # apt has returned; the baseline waits for the gate, holding its lock.
    assert chroot.exists(FIRST_BASELINE)
    busy = chroot.run(f"flock -n -s {FIRST_BASELINE} true", check=False)
    assert busy.returncode == 1, "the first baseline holds its lock while it runs"
    shown = chroot.run("systraq.real report --stdout", user=USER, check=False).stdout
    assert "\nNote: the first baseline is still being recorded (since " in shown, shown
    chroot.run(f"touch {GATE}")
    wait_for_first_baseline(chroot)
    chroot.run("rm /usr/sbin/systraq && dpkg-divert --local --rename --remove /usr/sbin/systraq")
    shown = chroot.run("systraq report --stdout", user=USER, check=False).stdout
    assert "first baseline" not in shown and "first run" in shown, shown


def test_user_and_directories(chroot):
    entry = chroot.run(f"getent passwd {USER}").stdout.strip().split(":")
    assert entry[5] == "/var/lib/systraq"
    assert entry[6] == "/usr/sbin/nologin"
    assert int(entry[2]) < 1000, "a system user"
    chroot.run(f"getent group {USER}")
    assert owner_mode(chroot, "/var/lib/systraq") == f"{USER}:{USER} 750"
    assert owner_mode(chroot, "/usr/sbin/systraq") == "root:root 755"
    assert owner_mode(chroot, "/etc/systraq") == "root:root 755"
    for name in CONF:
        assert owner_mode(chroot, f"/etc/systraq/{name}") == "root:root 644"
        # systraq.conf carries the debconf answers: the defaults here,
        # which are the shipped values.
        assert (chroot.read(f"/etc/systraq/{name}")
                == chroot.read(f"/usr/share/systraq/conf/{name}"))
    conffiles = chroot.run("dpkg-query -W -f '${Conffiles}' systraq").stdout
    assert "/etc/systraq/filetraq.tail.conf" in conffiles
    # Mail for the systraq user itself goes to root.
    assert owner_mode(chroot, "/var/lib/systraq/.forward") == f"{USER}:{USER} 644"
    assert chroot.read("/var/lib/systraq/.forward") == b"root\n"
    # The generated lists are the systraq user's to rewrite (as with the
    # old package); the directory stays root's.
    for name in ("filetraq.main.conf", "filetraq.conf"):
        assert owner_mode(chroot, f"/etc/systraq/{name}") == f"{USER}:{USER} 644"
    assert owner_mode(chroot, "/var/lib/systraq/filetraq") == f"{USER}:{USER} 750"
    # The user's home is not readable by others.
    info = os.stat(chroot.host("/var/lib/systraq"))
    assert not info.st_mode & stat.S_IRWXO


def test_version_and_status_as_the_systraq_user(chroot):
    # A private-key directory as the ssl-cert package makes it.
    chroot.run("install -d -m 0710 /etc/ssl/private"
               " && install -m 0600 /dev/null /etc/ssl/private/host.key")
    result = chroot.run("systraq --version", user=USER)
    assert result.stdout == f"systraq {__version__}\n"
    result = chroot.run("systraq status", user=USER)
    assert result.stderr == ""
    assert f"as seen by {USER}" in result.stdout
    assert "/etc/systraq/snapshot_pub.list" in result.stdout
    # The first baselines the installation made (snapshot and contents of
    # both modes, logs that may only grow, the trees walked hourly, audit)
    # wait for the first report.
    assert "Queued, not yet delivered: 7 records in 7 batches" in result.stdout
    data = json.loads(chroot.run("systraq status --json", user=USER).stdout)
    rows = {row["name"]: row for row in data["lists"]}
    assert rows["snapshot_pub.list"]["state"] == "ok"
    # The same count as find(1) over the entries of the shipped list, its
    # wildcards expanded by the shell.
    expected = chroot.run(
        "grep -v '^#' /etc/systraq/snapshot_pub.list | while read -r p; do for q in $p; do"
        " if [ -e \"$q\" ] || [ -L \"$q\" ]; then find \"$q\"; fi; done; done"
        " | sort -u | wc -l",
        user=USER).stdout
    assert rows["snapshot_pub.list"]["paths"] == int(expected) > 50
    assert rows["filetraq.conf"]["state"] == "ok"    # empty until generated
    # Root-only places are named once, not one error per file.
    assert rows["snapshot_root.list"]["not_readable"] == ["/etc/ssl/private"]
    assert data["state"]["owner"] == f"{USER}:{USER}"


def test_snapshots_keep_root_state_from_the_systraq_user(chroot):
    assert owner_mode(chroot, "/var/lib/systraq/spool") == f"{USER}:{USER} 750"
    assert owner_mode(chroot, "/var/lib/systraq/root") == "root:root 700"
    # The installation made the baselines: root mode as root, pub mode as
    # the user.  Runs now find what the last test made (a private key),
    # silently (not a terminal), and then nothing.
    for mode in ("root", "pub"):
        assert chroot.run(f"systraq snapshot --mode {mode}", check=False).returncode in (0, 1)
        assert chroot.run(f"systraq snapshot --mode {mode}").stdout == ""
    queued = json.loads(chroot.run("systraq status --json", user=USER).stdout)["queue"]["batches"]
    assert owner_mode(chroot, "/var/lib/systraq/snapshot_pub.state") == f"{USER}:{USER} 640"
    assert owner_mode(chroot, "/var/lib/systraq/root/snapshot_root.state") == "root:root 600"
    denied = chroot.run("cat /var/lib/systraq/root/snapshot_root.state", user=USER, check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr
    denied = chroot.run("ls /var/lib/systraq/root", user=USER, check=False)
    assert denied.returncode != 0

    # A change to a root-only file and to a world-readable one.
    chroot.run("echo 'intruder:x:0:0::/:/bin/sh' >> /etc/passwd"
               " && sed -i '$s/^/#/' /etc/shadow && chmod 4755 /etc/profile")
    root_run = chroot.run("systraq snapshot --mode root --json", check=False)
    assert root_run.returncode == 1
    assert [(r["path"], r["change"]) for r in json.loads(root_run.stdout)] == [
        ("/etc/shadow", "content")]
    pub_run = chroot.run("systraq snapshot --json", check=False)
    assert pub_run.returncode == 1
    records = json.loads(pub_run.stdout)
    assert ("/etc/passwd", "content") in [(r["path"], r["change"]) for r in records]
    assert {"path": "/etc/profile", "flags": ["setuid gained"]}.items() <= {
        k: v for r in records if r["change"] == "mode" for k, v in r.items()}.items()
    # The root job's records are readable by the systraq user; no digest in them.
    batches = chroot.run("cat /var/lib/systraq/spool/*snapshot_root*.jsonl", user=USER).stdout
    assert "/etc/shadow" in batches
    shadow_digest = chroot.run("sha256sum /etc/shadow").stdout.split()[0]
    everything = chroot.run("cat /var/lib/systraq/spool/*.jsonl /var/lib/systraq/*.st*",
                            user=USER).stdout
    assert shadow_digest not in everything
    status = json.loads(chroot.run("systraq status --json", user=USER).stdout)
    assert status["queue"]["batches"] == queued + 2       # a change set from each mode
    chroot.run("sed -i '/^intruder:/d' /etc/passwd && sed -i '$s/^#//' /etc/shadow"
               " && chmod 0644 /etc/profile")


def contents(chroot, *options):
    result = chroot.run("systraq contents --json " + " ".join(options), check=False)
    assert result.returncode in (0, 1), result.stderr
    return {r["path"]: r for r in json.loads(result.stdout)}


def test_contents_backs_up_and_diffs_world_readable_files_as_the_systraq_user(chroot):
    # The installation generated the lists and backed up everything quietly.
    assert contents(chroot) == {}
    listed = chroot.read("/etc/systraq/filetraq.conf").decode()
    assert "\n/etc/bash.bashrc\n" in listed and "/etc/shadow" not in listed
    for name in ("filetraq.main.conf", "filetraq.conf"):
        assert owner_mode(chroot, f"/etc/systraq/{name}") == f"{USER}:{USER} 644"
    assert (owner_mode(chroot, "/var/lib/systraq/filetraq/etc/bash.bashrc/orig")
            == f"{USER}:{USER} 640")

    chroot.run("echo '* * * * * root /usr/local/bin/job' > /etc/cron.d/job"
               " && echo 'alias ls=/tmp/x' >> /etc/bash.bashrc && chmod 0600 /etc/issue")
    records = contents(chroot)
    assert records["/etc/cron.d/job"]["change"] == "created"
    assert "+* * * * * root /usr/local/bin/job" in records["/etc/cron.d/job"]["diff"]
    assert records["/etc/bash.bashrc"]["change"] == "content"
    assert "\n+alias ls=/tmp/x\n" in records["/etc/bash.bashrc"]["diff"]
    assert records["/etc/issue"]["change"] == "not world-readable"
    assert "diff" not in records["/etc/issue"]
    modes = chroot.run("stat -c %a /var/lib/systraq/filetraq/etc/issue/*").stdout.split()
    assert modes == ["600"]
    assert contents(chroot) == {}

    # A new user: the next run writes the lists again; keys of an open
    # home are shown by the pub job, those of a closed one by the root job.
    chroot.run("systraq contents --mode root")
    chroot.run("useradd -m -s /bin/bash carol && useradd -m -s /bin/bash dave"
               " && chmod 0700 /home/carol && chmod 0755 /home/dave"
               " && install -d -o carol -m 0700 /home/carol/.ssh"
               " && install -d -o dave -m 0755 /home/dave/.ssh")
    chroot.write("/home/carol/.ssh/authorized_keys", (CAROL_LAPTOP + "\n").encode(), mode=0o600)
    chroot.write("/home/dave/.ssh/authorized_keys", (CAROL_LAPTOP + "\n").encode(), mode=0o644)
    records = contents(chroot)
    assert "/home/dave/.ssh/authorized_keys\n" in chroot.read("/etc/systraq/filetraq.conf").decode()
    assert records["/home/dave/.ssh/authorized_keys"]["change"] == "created"
    assert "/home/carol/.ssh/authorized_keys" not in records
    records = contents(chroot, "--mode root")
    assert records["/home/carol/.ssh/authorized_keys"]["change"] == "created"
    chroot.write("/home/carol/.ssh/authorized_keys",
                 (CAROL_LAPTOP + "\n" + CAROL_PHONE + "\n").encode(), mode=0o600)
    records = contents(chroot, "--mode root")
    assert records["/home/carol/.ssh/authorized_keys"]["keys"] == [
        f"added: ssh-ed25519 256 {PHONE_PRINT} carol@phone"]
    assert owner_mode(chroot, "/var/lib/systraq/root/contents_root.state") == "root:root 600"
    chroot.run("rm /etc/cron.d/job && sed -i '/^alias ls=/d' /etc/bash.bashrc && chmod 0644 /etc/issue"
               " && userdel -r carol && userdel -r dave")


def test_a_broken_list_is_named_with_its_line_and_exits_2(chroot):
    original = chroot.read("/etc/systraq/snapshot_pub.list")
    chroot.write("/etc/systraq/snapshot_pub.list", original + b"etc/relative\n")
    try:
        result = chroot.run("systraq status", user=USER, check=False)
    finally:
        chroot.write("/etc/systraq/snapshot_pub.list", original)
    line = original.count(b"\n") + 1
    assert result.returncode == 2
    assert result.stderr == (f"/etc/systraq/snapshot_pub.list:{line}: "
                             "not an absolute path: 'etc/relative'\n")


def test_admin_edits_survive_a_reinstall(chroot):
    edited = chroot.read("/etc/systraq/snapshot_root.list") + b"/etc/local-secret\n"
    chroot.write("/etc/systraq/snapshot_root.list", edited)
    result = chroot.run("apt-get install -y -q --reinstall /tmp/systraq.deb")
    assert chroot.read("/etc/systraq/snapshot_root.list") == edited
    # The baseline was made: a reinstallation does not make it again.
    assert "first baseline" not in result.stdout + result.stderr
    assert not chroot.exists(FIRST_BASELINE)


def test_purge_removes_state_and_configuration_but_keeps_the_user(chroot):
    chroot.run("mkdir -p /var/lib/systraq/spool && touch /var/lib/systraq/spool/x")
    chroot.run("apt-get purge -y -q systraq")
    assert not chroot.exists("/var/lib/systraq")
    assert not chroot.exists("/etc/systraq")
    assert not chroot.exists("/usr/sbin/systraq")
    assert not chroot.exists("/var/lib/ucf/cache/:etc:systraq:systraq.conf")
    registry = chroot.read("/var/lib/ucf/registry").decode()
    assert "systraq" not in registry
    chroot.run(f"getent passwd {USER}")      # Policy 9.2.2: the user stays
    state = chroot.run("dpkg-query -W -f '${Status}' systraq", check=False).stdout
    assert state in ("", "unknown ok not-installed")


def test_install_after_purge_recreates_everything(chroot):
    chroot.run("apt-get install -y -q /tmp/systraq.deb")
    wait_for_first_baseline(chroot)
    assert owner_mode(chroot, "/var/lib/systraq") == f"{USER}:{USER} 750"
    chroot.run("systraq status", user=USER)


def test_a_broken_list_is_a_warning_not_a_failed_installation(chroot):
    # An admin's own list, written before installing (ucf keeps it), with
    # a mistake: the first baseline cannot be made, the package installs,
    # and every job names the mistake (cron mails what the hourly one says).
    chroot.run("apt-get purge -y -q systraq")
    chroot.write("/etc/systraq/snapshot_pub.list", "/etc/hosts\netc/relative\n")
    result = chroot.apt_install("/tmp/systraq.deb")
    said = result.stdout + result.stderr        # apt passes dpkg's output on
    assert "systraq: warning" not in said, said
    status = chroot.run("dpkg-query -W -f '${Status}' systraq").stdout
    assert status == "install ok installed"
    wait_for_first_baseline(chroot)
    assert chroot.read("/etc/systraq/snapshot_pub.list") == b"/etc/hosts\netc/relative\n"
    check = chroot.run("systraq check", check=False)
    assert check.returncode == 3
    assert "/etc/systraq/snapshot_pub.list:2: not an absolute path" in check.stderr
