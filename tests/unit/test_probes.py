# SPDX-License-Identifier: GPL-2.0-or-later
"""systraq.probes on a fake root with a fake /proc.

The /proc contents below are copied from Debian machines (bookworm,
amd64) and from the kernel's documentation (Documentation/admin-guide/md.rst
for mdstat, Documentation/networking/proc_net_tcp.rst for /proc/net/tcp);
binary login records are built here, field by field at glibc's offsets.
"""

import json
import os
import sqlite3
import struct
import sys
import time
import types

import pytest

from systraq import config, probes

NOW = time.mktime((2026, 11, 21, 6, 25, 0, 0, 0, -1))
DAY = 86400

OS_RELEASE = b'''\
PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
'''

MEMINFO = b"""\
MemTotal:        8039440 kB
MemFree:         1203340 kB
MemAvailable:    5268512 kB
Buffers:          309044 kB
Cached:          3672160 kB
SwapCached:         1024 kB
SwapTotal:       1000444 kB
SwapFree:         750332 kB
Dirty:               900 kB
"""

MOUNTS = b"""\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
udev /dev devtmpfs rw,nosuid,relatime,size=3989396k,nr_inodes=997349,mode=755,inode64 0 0
devpts /dev/pts devpts rw,nosuid,noexec,relatime,gid=5,mode=620,ptmxmode=000 0 0
tmpfs /run tmpfs rw,nosuid,nodev,noexec,relatime,size=803944k,mode=755,inode64 0 0
/dev/vda1 / ext4 rw,relatime,errors=remount-ro 0 0
securityfs /sys/kernel/security securityfs rw,nosuid,nodev,noexec,relatime 0 0
tmpfs /dev/shm tmpfs rw,nosuid,nodev,inode64 0 0
cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0
bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0
systemd-1 /proc/sys/fs/binfmt_misc autofs rw,relatime,fd=30,pgrp=1,timeout=0,minproto=5,maxproto=5,direct 0 0
mqueue /dev/mqueue mqueue rw,nosuid,nodev,noexec,relatime 0 0
/dev/vda2 /var ext4 rw,relatime 0 0
/dev/vdb1 /srv/my\\040data xfs rw,relatime,attr2,inode64,logbufs=8,logbsize=32k,noquota 0 0
/dev/vda2 /srv/bound ext4 rw,relatime 0 0
/dev/loop0 /snap/core22/1380 squashfs ro,nodev,relatime,errors=continue 0 0
/dev/sr0 /media/cdrom0 iso9660 ro,nosuid,nodev,noexec,relatime,nojoliet 0 0
overlay /var/lib/docker/overlay2/5f1c/merged overlay rw,relatime,lowerdir=/x,upperdir=/y,workdir=/z 0 0
server:/export /mnt/nfs nfs4 rw,relatime,vers=4.2,rsize=1048576 0 0
tmpfs /run/user/1000 tmpfs rw,nosuid,nodev,relatime,size=803940k,nr_inodes=200985,mode=700,uid=1000,gid=1000,inode64 0 0
"""

# Documentation/admin-guide/md.rst and real machines: a degraded mirror
# with a failed member, a RAID5 in recovery, a healthy RAID1 with its
# bitmap line, an inactive array; empty lines within are spaces.
MDSTAT_DEGRADED = b"""\
Personalities : [raid1] [linear] [multipath] [raid0] [raid6] [raid5] [raid4] [raid10] 
md0 : active raid1 sdb1[1](F) sda1[0]
      1048512 blocks super 1.2 [2/1] [U_]
      
md1 : active raid5 sdc1[3] sdb2[1] sda2[0]
      2093056 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/2] [UU_]
      [=>...................]  recovery =  8.5% (89088/1046528) finish=0.5min speed=29696K/sec
      
md2 : active raid1 sdd1[1] sdc2[0]
      976630464 blocks super 1.2 [2/2] [UU]
      bitmap: 2/8 pages [8KB], 65536KB chunk

md127 : inactive sde1[0](S)
      1046528 blocks super 1.2
       
unused devices: <none>
"""

MDSTAT_HEALTHY = b"""\
Personalities : [raid1] [linear] [multipath] [raid0] [raid6] [raid5] [raid4] [raid10] 
md0 : active raid1 sdb1[1] sda1[0]
      1048512 blocks super 1.2 [2/2] [UU]
      
unused devices: <none>
"""

TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
              "retrnsmt   uid  timeout inode\n")
TCP6_HEADER = ("  sl  local_address                         remote_address"
               "                        st tx_queue rx_queue tr tm->when retrnsmt"
               "   uid  timeout inode\n")
UDP_HEADER = ("   sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
              "retrnsmt   uid  timeout inode ref pointer drops\n")


def hex4(address):
    """An IPv4 address as /proc/net/tcp prints it: the 32-bit word as a
    number in this machine's byte order."""
    return "%08X" % struct.unpack("=I", bytes(int(p) for p in address.split(".")))[0]


def hex6(packed):
    return "".join("%08X" % w for w in struct.unpack("=4I", packed))


def socket_line(n, local, remote, state, uid, inode):
    return (f"{n:4d}: {local} {remote} {state} 00000000:00000000 00:00000000 "
            f"00000000 {uid:5d}        0 {inode} 1 0000000000000000 100 0 0 10 0\n")


def v4(address, port):
    return f"{hex4(address)}:{port:04X}"


def v6(address, port):
    import ipaddress
    return f"{hex6(ipaddress.IPv6Address(address).packed)}:{port:04X}"


def write_net(root, tcp=(), tcp6=(), udp=(), udp6=()):
    for name, header, rows in (("tcp", TCP_HEADER, tcp), ("tcp6", TCP6_HEADER, tcp6),
                               ("udp", UDP_HEADER, udp), ("udp6", UDP_HEADER, udp6)):
        root.write(f"/proc/net/{name}", header + "".join(
            socket_line(n, *row) for n, row in enumerate(rows)))


def base_net(root, extra_tcp=()):
    zero4, zero6 = v4("0.0.0.0", 0), v6("::", 0)
    write_net(
        root,
        tcp=[(v4("0.0.0.0", 22), zero4, "0A", 0, 15001),
             (v4("127.0.0.1", 631), zero4, "0A", 0, 15002),
             # An established connection: not a listener.
             (v4("192.0.2.10", 22), v4("198.51.100.7", 51234), "01", 0, 15003),
             *extra_tcp],
        tcp6=[(v6("::", 22), zero6, "0A", 0, 15004),
              # ssh -R 0:... on loopback: a kernel-picked port.
              (v6("::1", 41000), zero6, "0A", 1000, 15005)],
        udp=[(v4("0.0.0.0", 68), zero4, "07", 0, 15006),
             (v4("0.0.0.0", 5353), zero4, "07", 104, 15007),
             # avahi's and dhclient's random client ports.
             (v4("0.0.0.0", 40455), zero4, "07", 104, 15008),
             # A connected UDP socket (an NTP query): not a listener.
             (v4("192.0.2.10", 123), v4("203.0.113.5", 123), "01", 0, 15009)],
        udp6=[(v6("::", 5353), zero6, "07", 104, 15010)])


def stat_line(pid, comm, state="S", flags=4194560, threads=1):
    rest = ([state, "1", str(pid), str(pid), "0", "-1", str(flags)] + ["0"] * 10
            + [str(threads)] + ["0"] * 30)
    return f"{pid} ({comm}) " + " ".join(rest) + "\n"


def status_text(name, uid, rss=None, state="S (sleeping)"):
    text = f"Name:\t{name}\nState:\t{state}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
    if rss is not None:
        text += f"VmRSS:\t{rss:8d} kB\n"
    return text + "Threads:\t1\n"


def add_process(root, pid, comm, uid, rss=None, state="S", kernel=False, threads=1):
    flags = 0x00208040 if kernel else 0x00400100
    root.write(f"/proc/{pid}/stat", stat_line(pid, comm, state, flags, threads))
    root.write(f"/proc/{pid}/status", status_text(comm, uid, rss))
    root.write(f"/proc/{pid}/comm", comm + "\n")


def fake_system(root):
    """A small, healthy bookworm machine."""
    root.write("/usr/lib/os-release", OS_RELEASE)
    root.symlink("../usr/lib/os-release", "/etc/os-release")
    root.write("/etc/debian_version", "12.11\n")
    root.write("/proc/sys/kernel/ostype", "Linux\n")
    root.write("/proc/sys/kernel/osrelease", "6.1.0-28-amd64\n")
    root.write("/proc/sys/kernel/version",
               "#1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)\n")
    root.write("/proc/sys/net/ipv4/ip_local_port_range", "32768\t60999\n")
    root.write("/proc/uptime", "1059845.21 4153771.33\n")
    root.write("/proc/loadavg", "0.52 0.58 0.59 2/467 123456\n")
    root.write("/proc/meminfo", MEMINFO)
    root.write("/proc/self/mounts", b"/dev/vda1 / ext4 rw,relatime 0 0\n")
    base_net(root)
    add_process(root, 1, "systemd", 0, rss=12800)
    add_process(root, 2, "kthreadd", 0, kernel=True)
    add_process(root, 812, "sshd", 0, rss=9100)
    add_process(root, 1500, "bash", 1000, rss=5200)
    root.symlink("socket:[15001]", "/proc/812/fd/3")


def healthy(path):
    return types.SimpleNamespace(f_frsize=4096, f_blocks=262144, f_bfree=131072,
                                 f_bavail=120000, f_files=65536, f_ffree=60000, f_fsid=1)


def defaults():
    return config.load(b"/nonexistent/systraq.conf")


def settings_config(root, text=""):
    settings = root.settings()
    if text:
        root.write("/etc/systraq/systraq.conf", text)
    return settings, config.load(settings.config_file)


def collect(root, previous=None, text="", **kwargs):
    settings, conf = settings_config(root, text)
    kwargs.setdefault("statvfs", healthy)
    result = probes.collect(settings, conf, previous, now=kwargs.pop("now", NOW), **kwargs)
    # Whatever happened, the report can store and print this.
    json.dumps(result.state)
    json.dumps(result.data)
    for title, lines in result.sections:
        assert isinstance(title, str) and lines and all(isinstance(l, str) for l in lines)
        assert not any("\n" in line for line in lines)
    for warning in result.warnings:
        assert warning["source"] == "probes"
        assert warning["change"] in probes.WARNING_KINDS
        assert "\n" not in warning["text"]
    return result


def section(result, title):
    found = [lines for name, lines in result.sections if name == title]
    assert len(found) == 1, [name for name, _lines in result.sections]
    return found[0]


def kinds(result, change):
    return [w for w in result.warnings if w["change"] == change]


# -- the whole -------------------------------------------------------------

def test_a_healthy_machine_gives_every_section_and_no_warning(root):
    fake_system(root)
    result = collect(root)
    assert [title for title, _lines in result.sections] == [
        "Release", "Kernel", "Uptime and load", "Memory", "Filesystems",
        "Recent logins", "Listening sockets", "Processes"]
    assert result.warnings == []
    assert set(result.data) == {"release", "kernel", "uptime", "memory", "filesystems",
                                "raid", "logins", "sockets", "processes", "parts", "errors"}
    assert result.data["errors"] == {}
    assert set(result.state) == {"logins_until", "sockets"}


def test_an_empty_root_never_raises_and_says_what_is_missing(root):
    result = collect(root, previous={"sockets": {"tcp 0.0.0.0:22": NOW - DAY}})
    assert section(result, "Kernel") == [
        "cannot read /proc/sys/kernel/ostype: No such file or directory"]
    assert section(result, "Memory") == [
        "cannot read /proc/meminfo: No such file or directory"]
    assert section(result, "Filesystems") == [
        "cannot read /proc/self/mounts: No such file or directory"]
    assert section(result, "Processes") == ["cannot read /proc: No such file or directory"]
    for key in ("kernel", "uptime", "memory", "filesystems", "sockets", "processes"):
        assert result.data[key] is None and key in result.data["errors"], key
    assert result.warnings == []
    # A bad day does not make every socket new tomorrow.
    assert result.state["sockets"] == {"tcp 0.0.0.0:22": NOW - DAY}


def test_odd_file_contents_are_reported_not_raised(root):
    fake_system(root)
    root.write("/proc/uptime", "garbage\n")
    root.write("/proc/meminfo", "nothing: here\n")
    root.write("/proc/net/tcp", TCP_HEADER + "   0: zz\n")
    root.write("/proc/mdstat", "md0 :\n   \n")
    root.write("/proc/self/mounts", "short line\nrelative path ext4 rw 0 0\n")
    result = collect(root)
    assert section(result, "Uptime and load") == [
        "unexpected content in /proc/uptime or /proc/loadavg"]
    assert section(result, "Memory") == ["unexpected content in /proc/meminfo (no MemTotal)"]
    assert section(result, "Listening sockets") == ["unexpected content in /proc/net/tcp"]
    assert section(result, "Filesystems") == ["no filesystems to show"]


# -- release, kernel, uptime, memory ---------------------------------------

def test_release_and_kernel(root):
    fake_system(root)
    result = collect(root)
    assert section(result, "Release") == ["Debian GNU/Linux 12 (bookworm)",
                                          "Debian version 12.11"]
    assert section(result, "Kernel") == [
        "Linux 6.1.0-28-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.119-1 (2024-11-22)"]
    assert result.data["release"] == {"pretty_name": "Debian GNU/Linux 12 (bookworm)",
                                      "debian_version": "12.11"}
    assert result.data["kernel"]["osrelease"] == "6.1.0-28-amd64"


def test_release_reads_shell_quoting_and_falls_back_to_usr_lib(root):
    root.write("/usr/lib/os-release",
               "NAME=Debian\nPRETTY_NAME='Debian GNU/Linux trixie/sid \"caf\xe9\"'\n")
    root.write("/etc/debian_version", "trixie/sid\n")
    result = collect(root)
    assert section(result, "Release") == ['Debian GNU/Linux trixie/sid "caf\xe9"',
                                          "Debian version trixie/sid"]


def test_release_without_its_files(root):
    result = collect(root)
    assert section(result, "Release") == [
        "cannot read /etc/os-release: No such file or directory",
        "cannot read /etc/debian_version: No such file or directory"]
    assert result.data["release"] == {"pretty_name": None, "debian_version": None}
    assert "release" in result.data["errors"]


@pytest.mark.parametrize("seconds, shown", [
    ("1059845.21", "12 days, 6:24"),
    ("86700.5", "1 day, 0:05"),
    ("2520.00", "0:42"),
])
def test_uptime_is_shown_like_uptime(root, seconds, shown):
    fake_system(root)
    root.write("/proc/uptime", f"{seconds} 100.00\n")
    lines = section(collect(root), "Uptime and load")
    boot = time.strftime("%Y-%m-%d %H:%M", time.localtime(NOW - float(seconds)))
    assert lines == [f"up {shown}, since {boot}", "load average: 0.52, 0.58, 0.59"]


def test_memory_in_mib(root):
    fake_system(root)
    result = collect(root)
    assert section(result, "Memory") == ["total 7851 MiB, available 5145 MiB (66%)",
                                         "swap 976 MiB, free 732 MiB (25% used)"]
    assert result.data["memory"] == {"total_mib": 7851, "available_mib": 5145,
                                     "swap_total_mib": 976, "swap_free_mib": 732}
    root.write("/proc/meminfo", MEMINFO.replace(b"1000444", b"0").replace(b"750332", b"0"))
    assert section(collect(root), "Memory")[1] == "no swap"


# -- filesystems -----------------------------------------------------------

class FakeStatvfs:
    """statvfs answers by mount point (host paths below the root)."""

    def __init__(self, root, answers):
        settings = root.settings()
        self.answers = {settings.host(path): value for path, value in answers.items()}
        self.asked = []

    def __call__(self, path):
        self.asked.append(path)
        value = self.answers.get(path)
        if isinstance(value, OSError):
            raise value
        return value or healthy(path)


def usage(blocks, free, avail, files=65536, ffree=60000, fsid=1, frsize=4096):
    return types.SimpleNamespace(f_frsize=frsize, f_blocks=blocks, f_bfree=free,
                                 f_bavail=avail, f_files=files, f_ffree=ffree, f_fsid=fsid)


def test_filesystems_like_df_with_pseudo_filesystems_left_out(root):
    fake_system(root)
    root.write("/proc/self/mounts", MOUNTS)
    statvfs = FakeStatvfs(root, {
        # 20 GiB, 5.1 GiB used, 14 GiB free for users (5 % reserved).
        "/": usage(5242880, 3905946, 3643802, fsid=10),
        "/var": usage(262144, 131072, 120000, fsid=20),
        "/srv/my data": usage(262144, 262000, 262000, files=0, ffree=0, fsid=30),
        "/srv/bound": usage(262144, 131072, 120000, fsid=20),
        "/mnt/nfs": OSError(13, "Permission denied"),
    })
    result = collect(root, statvfs=statvfs)
    lines = section(result, "Filesystems")
    assert lines == [
        " Size  Used Avail Use% IUse%  Mounted on",
        " 1.0G  512M  469M  53%    9%  /run (tmpfs, tmpfs)",
        "  20G  5.1G   14G  27%    9%  / (ext4, /dev/vda1)",
        " 1.0G  512M  469M  53%    9%  /dev/shm (tmpfs, tmpfs)",
        " 1.0G  512M  469M  53%    9%  /var (ext4, /dev/vda2)",
        " 1.0G  576K  1.0G   1%     -  /srv/my data (xfs, /dev/vdb1)",
        " 1.0G  512M  469M  53%    9%  /media/cdrom0 (iso9660, /dev/sr0)",
        "                              /mnt/nfs (nfs4, server:/export): Permission denied",
    ]
    # Only what is shown was asked, and below the root.
    assert sorted(statvfs.asked) == sorted(root.settings().host(p) for p in (
        "/run", "/", "/dev/shm", "/var", "/srv/my data", "/srv/bound", "/media/cdrom0",
        "/mnt/nfs"))
    rows = {row["mountpoint"]: row for row in result.data["filesystems"]}
    assert rows["/srv/my data"]["inodes_percent"] is None
    assert rows["/mnt/nfs"]["error"] == "Permission denied"
    assert rows["/"]["size_bytes"] == 5242880 * 4096
    assert rows["/media/cdrom0"]["readonly"] is True
    assert result.warnings == []


def test_full_filesystems_warn_for_blocks_or_inodes(root):
    fake_system(root)
    root.write("/proc/self/mounts", MOUNTS)
    statvfs = FakeStatvfs(root, {
        "/": usage(1000, 40, 40, fsid=10),                       # 96 %
        "/var": usage(1000, 500, 500, files=1000, ffree=5, fsid=20),   # inodes 100 %
        "/srv/my data": usage(1000, 99, 99, files=1000, ffree=10, fsid=30),  # both 91 %, 99 %
        # Full, but never a warning: tmpfs, read-only media, network.
        "/run": usage(1000, 0, 0),
        "/media/cdrom0": usage(1000, 0, 0),
        "/mnt/nfs": usage(1000, 0, 0),
    })
    result = collect(root, statvfs=statvfs)
    full = kinds(result, "filesystem full")
    assert [(w["path"], w["percent"], w["inodes_percent"]) for w in full] == [
        ("/", 96, 9), ("/var", 50, 100), ("/srv/my data", 91, 99)]
    assert full[0]["text"] == "filesystem / has 96% of its space in use (warning above 90%)"
    assert full[1]["text"] == ("filesystem /var has 100% of its inodes in use "
                               "(warning above 90%)")
    assert full[2]["text"] == ("filesystem /srv/my data has 91% of its space and 99% of "
                               "its inodes in use (warning above 90%)")
    # The limit is the admin's.
    result = collect(root, text="[report]\nfill_warning = 97\n", statvfs=statvfs)
    assert [w["path"] for w in kinds(result, "filesystem full")] == ["/var", "/srv/my data"]


def test_exactly_at_the_limit_is_not_a_warning(root):
    fake_system(root)
    statvfs = FakeStatvfs(root, {"/": usage(1000, 100, 100)})
    assert collect(root, statvfs=statvfs).warnings == []


def test_mounts_fall_back_to_proc_mounts(root):
    fake_system(root)
    os.unlink(root.host("/proc/self/mounts"))
    root.write("/proc/mounts", b"/dev/vda1 / ext4 rw 0 0\n/dev/vda2 /home ext4 rw 0 0\n")
    lines = section(collect(root), "Filesystems")
    assert [line.split("  ")[-1] for line in lines[1:]] == [
        "/ (ext4, /dev/vda1)", "/home (ext4, /dev/vda2)"]


def test_a_hung_statvfs_costs_the_timeout_not_the_report(root, monkeypatch):
    fake_system(root)
    root.write("/proc/self/mounts", b"/dev/vda1 / ext4 rw 0 0\nsrv:/x /mnt nfs rw 0 0\n")
    monkeypatch.setattr(probes, "STATVFS_TIMEOUT", 0.3)
    release = __import__("threading").Event()

    def statvfs(path):
        if path.endswith(b"/mnt"):
            release.wait(10)
        return healthy(path)

    started = time.monotonic()
    try:
        lines = section(collect(root, statvfs=statvfs), "Filesystems")
    finally:
        release.set()
    assert time.monotonic() - started < 3
    assert lines[-1].endswith("/mnt (nfs, srv:/x): no answer within 0.3 s")


def test_a_bug_in_statvfs_is_not_hidden(root):
    fake_system(root)

    def statvfs(path):
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        collect(root, statvfs=statvfs)


# -- RAID ------------------------------------------------------------------

def test_degraded_and_inactive_arrays_warn(root):
    fake_system(root)
    root.write("/proc/mdstat", MDSTAT_DEGRADED)
    result = collect(root)
    assert section(result, "RAID") == [
        "md0: active raid1 sdb1[1](F) sda1[0]",
        "  1048512 blocks super 1.2 [2/1] [U_]",
        "  RAID array md0 is degraded: 1 of 2 members working; failed: sdb1",
        "md1: active raid5 sdc1[3] sdb2[1] sda2[0]",
        "  2093056 blocks super 1.2 level 5, 512k chunk, algorithm 2 [3/2] [UU_]",
        "  [=>...................]  recovery =  8.5% (89088/1046528) finish=0.5min "
        "speed=29696K/sec",
        "  RAID array md1 is degraded: 2 of 3 members working",
        "md2: active raid1 sdd1[1] sdc2[0]",
        "  976630464 blocks super 1.2 [2/2] [UU]",
        "md127: inactive sde1[0](S)",
        "  1046528 blocks super 1.2",
        "  RAID array md127 is degraded: inactive",
    ]
    assert [w["array"] for w in kinds(result, "raid degraded")] == ["md0", "md1", "md127"]
    arrays = {a["name"]: a for a in result.data["raid"]}
    assert arrays["md2"]["degraded"] is False and arrays["md2"]["personality"] == "raid1"
    assert arrays["md127"]["personality"] is None
    assert arrays["md1"]["progress"].startswith("[=>")


def test_a_missing_member_shown_only_by_the_map_warns(root):
    fake_system(root)
    root.write("/proc/mdstat", MDSTAT_HEALTHY.replace(b"[2/2] [UU]", b"[_U]"))
    assert [w["text"] for w in collect(root).warnings] == [
        "RAID array md0 is degraded: a member is missing"]


def test_healthy_raid_is_shown_without_warning(root):
    fake_system(root)
    root.write("/proc/mdstat", MDSTAT_HEALTHY)
    result = collect(root)
    assert section(result, "RAID") == ["md0: active raid1 sdb1[1] sda1[0]",
                                       "  1048512 blocks super 1.2 [2/2] [UU]"]
    assert result.warnings == []


def test_no_md_arrays_no_raid_section(root):
    fake_system(root)
    assert "RAID" not in [t for t, _l in collect(root).sections]
    root.write("/proc/mdstat", "Personalities : \nunused devices: <none>\n")
    result = collect(root)
    assert "RAID" not in [t for t, _l in result.sections]
    assert result.data["raid"] == []


# -- logins ----------------------------------------------------------------

UT_LOGIN, UT_BOOT, UT_USER, UT_DEAD = 6, 2, 7, 8


def utmp(kind, user=b"", line=b"", host=b"", when=0.0, pid=4242):
    """One struct utmp, at the offsets of glibc's bits/utmp.h."""
    record = bytearray(384)
    struct.pack_into("=h", record, 0, kind)            # ut_type
    struct.pack_into("=i", record, 4, pid)             # ut_pid
    record[8:8 + len(line)] = line                     # ut_line[32]
    record[40:44] = line[-4:].ljust(4, b"\0")          # ut_id[4]
    record[44:44 + len(user)] = user                   # ut_user[32]
    record[76:76 + len(host)] = host                   # ut_host[256]
    struct.pack_into("=ii", record, 340, int(when), int(when % 1 * 1e6))   # ut_tv
    return bytes(record)


def write_wtmp(root, records, path="/var/log/wtmp"):
    root.write(path, b"".join(records), mode=0o664)


def login_line(when, user, tty, host=""):
    return (f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(when))}  "
            f"{user:<10} {tty:<8} {host}").rstrip()


def test_first_report_shows_the_last_ten_logins(root):
    fake_system(root)
    records = [utmp(UT_BOOT, b"reboot", b"~", b"6.1.0-28-amd64", NOW - 30 * DAY)]
    for n in range(12):
        when = NOW - (12 - n) * 3600
        records.append(utmp(UT_LOGIN, b"LOGIN", b"tty1", when=when - 1))
        records.append(utmp(UT_USER, b"alice", f"pts/{n}".encode(), b"192.0.2.7", when))
        records.append(utmp(UT_DEAD, b"", f"pts/{n}".encode(), when=when + 60))
    # A record being written when the report reads: cut short.
    write_wtmp(root, records + [utmp(UT_USER, b"bob", b"pts/9", when=NOW)[:100]])
    for previous in (None, {}):
        result = collect(root, previous=previous)
        lines = section(result, "Recent logins")
        assert lines[0] == "the last 10 logins:"
        assert lines[1:] == [login_line(NOW - k * 3600, "alice", f"pts/{12 - k}", "192.0.2.7")
                             for k in range(1, 11)]
        assert result.state["logins_until"] == NOW
        assert result.data["logins"]["since"] is None
        assert result.data["logins"]["sources"] == ["/var/log/wtmp"]


def test_later_reports_show_logins_since_the_previous_one(root):
    fake_system(root)
    records = [utmp(UT_USER, b"alice", b"pts/0", b"192.0.2.7", NOW - 2 * DAY),
               utmp(UT_USER, b"root", b"tty1", b"", NOW - 3600),
               utmp(UT_USER, b"bob", b"pts/1", b"evil\x1b[2Jhost", NOW - 60)]
    write_wtmp(root, records[:1], "/var/log/wtmp.1")
    write_wtmp(root, records[1:])
    result = collect(root, previous={"logins_until": NOW - DAY})
    assert section(result, "Recent logins") == [
        f"since {time.strftime('%Y-%m-%d %H:%M', time.localtime(NOW - DAY))}:",
        login_line(NOW - 60, "bob", "pts/1", "evil\\x1b[2Jhost"),
        login_line(NOW - 3600, "root", "tty1"),
    ]
    # Since the report before, from the rotated file too.
    result = collect(root, previous={"logins_until": NOW - 3 * DAY})
    assert len(section(result, "Recent logins")) == 4
    result = collect(root, previous={"logins_until": NOW})
    assert section(result, "Recent logins") == [
        f"no logins since {time.strftime('%Y-%m-%d %H:%M', time.localtime(NOW))}"]


def test_a_busy_day_is_cut_at_twenty_logins(root):
    fake_system(root)
    write_wtmp(root, [utmp(UT_USER, b"deploy", b"ssh", b"ci", NOW - 1000 + n)
                      for n in range(27)])
    result = collect(root, previous={"logins_until": NOW - DAY})
    lines = section(result, "Recent logins")
    assert len(lines) == 1 + 20 + 1
    assert lines[-1] == "... and 7 earlier logins"
    assert result.data["logins"]["more"] == 7


def make_wtmpdb(root, rows, at="/var/lib/wtmpdb/wtmp.db"):
    path = root.host(at)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    db = sqlite3.connect(os.fsdecode(path))
    # wtmpdb's own schema (lib/sqlite.c).
    db.execute("CREATE TABLE IF NOT EXISTS wtmp(ID INTEGER PRIMARY KEY, Type INTEGER, "
               "User TEXT NOT NULL, Login INTEGER, Logout INTEGER, TTY TEXT, "
               "RemoteHost TEXT, Service TEXT) STRICT")
    db.executemany("INSERT INTO wtmp (Type, User, Login, Logout, TTY, RemoteHost, Service) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    return path


def test_trixie_logins_come_from_wtmpdb(root):
    fake_system(root)
    usec = lambda t: int(t * 1_000_000)   # noqa: E731
    path = make_wtmpdb(root, [
        (1, "reboot", usec(NOW - 5 * DAY), None, "~", "6.12.6-amd64", None),
        (3, "alice", usec(NOW - 2 * DAY), usec(NOW - DAY), "pts/0", "192.0.2.7", "sshd"),
        (3, "r\u00e9mi", usec(NOW - 3600), None, None, "2001:db8::1", "sshd"),
        (3, "root", usec(NOW - 60), None, "tty1", None, "login"),
    ])
    before = os.stat(path)
    result = collect(root, previous={"logins_until": NOW - DAY})
    assert section(result, "Recent logins")[1:] == [
        login_line(NOW - 60, "root", "tty1"),
        login_line(NOW - 3600, "r\u00e9mi", "sshd", "2001:db8::1"),
    ]
    assert result.data["logins"]["sources"] == ["/var/lib/wtmpdb/wtmp.db"]
    # Read-only: nothing created next to it, nothing changed.
    assert os.listdir(os.path.dirname(path)) == [b"wtmp.db"]
    assert os.stat(path).st_mtime_ns == before.st_mtime_ns
    first = collect(root)
    assert section(first, "Recent logins")[0] == "the last 3 logins:"


def test_a_login_in_both_wtmp_and_wtmpdb_is_shown_once(root):
    fake_system(root)
    write_wtmp(root, [utmp(UT_USER, b"alice", b"pts/0", b"192.0.2.7", NOW - 600),
                      utmp(UT_USER, b"old", b"pts/3", b"", NOW - 90 * DAY)])
    make_wtmpdb(root, [(3, "alice", int((NOW - 600) * 1e6) + 1234, None, "pts/0",
                        "192.0.2.7", "sshd")])
    result = collect(root, previous={"logins_until": NOW - DAY})
    assert section(result, "Recent logins")[1:] == [
        login_line(NOW - 600, "alice", "pts/0", "192.0.2.7")]


def test_no_login_records_at_all(root):
    fake_system(root)
    result = collect(root, previous={"logins_until": NOW - DAY})
    assert section(result, "Recent logins") == [
        "no login records: neither /var/log/wtmp nor wtmpdb's database exists"]
    assert result.state["logins_until"] == NOW
    assert result.data["logins"]["sources"] == []


def trixie_wtmpdb_link(root, target="../../log/wtmp.db"):
    """wtmpdb's place as trixie's package makes it (tmpfiles.d): upstream's
    path, a link to Debian's /var/log/wtmp.db."""
    os.makedirs(root.host("/var/lib/wtmpdb"), exist_ok=True)
    os.makedirs(root.host("/var/log"), exist_ok=True)
    os.symlink(target, root.host("/var/lib/wtmpdb/wtmp.db"))


@pytest.mark.parametrize("empty_wtmp", [False, True])
def test_wtmpdb_before_the_first_login_has_no_database_and_that_is_no_error(root, empty_wtmp):
    fake_system(root)
    trixie_wtmpdb_link(root)
    if empty_wtmp:      # as trixie's base system has one
        write_wtmp(root, [])
    for previous in ({"logins_until": NOW - DAY}, {}):
        result = collect(root, previous=previous)
        assert section(result, "Recent logins") == [
            "no logins recorded yet (wtmpdb makes its database at the first one)"]
        assert result.warnings == [] and result.state["logins_until"] == NOW
        assert result.data["logins"]["sources"] == (["/var/log/wtmp"] if empty_wtmp else [])
    assert not os.path.lexists(root.host("/var/log/wtmp.db"))


@pytest.mark.parametrize("target", ["../../log/wtmp.db", "/var/log/wtmp.db"])
def test_wtmpdb_read_through_its_link_inside_the_root_and_once(root, target):
    fake_system(root)
    trixie_wtmpdb_link(root, target)
    make_wtmpdb(root, [(3, "alice", int((NOW - 600) * 1e6), None, "pts/0", "192.0.2.7",
                        "sshd")], at="/var/log/wtmp.db")
    result = collect(root, previous={"logins_until": NOW - DAY})
    assert section(result, "Recent logins")[1:] == [
        login_line(NOW - 600, "alice", "pts/0", "192.0.2.7")]
    assert result.data["logins"]["sources"] == ["/var/log/wtmp.db"]


def test_a_login_database_link_in_a_loop_is_an_error_not_a_hang(root):
    fake_system(root)
    os.makedirs(root.host("/var/lib/wtmpdb"), exist_ok=True)
    os.symlink("wtmp.db", root.host("/var/lib/wtmpdb/wtmp.db"))
    result = collect(root, previous={"logins_until": NOW - DAY})
    assert section(result, "Recent logins") == [
        "cannot read /var/lib/wtmpdb/wtmp.db: Too many levels of symbolic links"]


def test_an_unreadable_login_database_keeps_the_previous_time(root):
    fake_system(root)
    root.write("/var/lib/wtmpdb/wtmp.db", b"this is not an sqlite database" * 40)
    result = collect(root, previous={"logins_until": NOW - DAY})
    lines = section(result, "Recent logins")
    assert len(lines) == 1
    assert lines[0].startswith("cannot read /var/lib/wtmpdb/wtmp.db: ")
    assert result.state["logins_until"] == NOW - DAY
    assert result.data["logins"] is None
    # Without a previous time there is none to keep: next time is a first time.
    assert "logins_until" not in collect(root).state


# -- listening sockets -----------------------------------------------------

@pytest.mark.skipif(sys.byteorder != "little", reason="a line copied from an amd64 machine")
def test_addresses_decode_as_on_a_real_machine():
    # /proc/net/tcp and tcp6 lines of sshd and CUPS on bookworm amd64.
    assert probes._decode_address("0100007F:0277") == (
        __import__("ipaddress").ip_address("127.0.0.1"), 631)
    assert probes._decode_address("00000000000000000000000001000000:0277")[0].compressed == "::1"
    assert probes._decode_address("B80D0120000000000000000001000000:0016")[0].compressed == (
        "2001:db8::1")


def test_listening_sockets_are_listed_with_their_process(root):
    fake_system(root)
    result = collect(root)
    assert section(result, "Listening sockets") == [
        "tcp 0.0.0.0:22 (sshd)",
        "tcp 127.0.0.1:631 (user root)",
        "tcp6 [::]:22 (user root)",
        "tcp6 [::1]:41000 (user alice)",
        "udp 0.0.0.0:68 (user root)",
        "udp 0.0.0.0:5353 (user 104)",
        "udp6 [::]:5353 (user 104)",
        "and 1 UDP client socket on ephemeral ports (32768-60999), not listed",
    ]
    sockets = {(s["proto"], s["address"], s["port"]): s for s in result.data["sockets"]}
    assert sockets[("udp", "0.0.0.0", 40455)]["listed"] is False
    assert sockets[("tcp6", "::1", 41000)]["watched"] is False
    assert sockets[("tcp", "0.0.0.0", 22)]["processes"] == ["sshd"]
    assert result.warnings == []        # the first report warns about none
    assert sorted(result.state["sockets"]) == [
        "tcp 0.0.0.0:22", "tcp 127.0.0.1:631", "tcp6 [::1]:41000", "tcp6 [::]:22",
        "udp 0.0.0.0:5353", "udp 0.0.0.0:68", "udp6 [::]:5353"]


def test_a_new_listener_warns_and_client_ports_do_not(root):
    fake_system(root)
    first = collect(root)
    zero4 = v4("0.0.0.0", 0)
    # Next day: someone runs python3 -m http.server 8123; dhclient took
    # another random port; a second ssh -R port on loopback.
    base_net(root, extra_tcp=[(v4("0.0.0.0", 8123), zero4, "0A", 1000, 16001),
                              (v4("127.0.0.1", 45001), zero4, "0A", 1000, 16002)])
    net = open(root.host("/proc/net/udp")).read().replace(
        f"{v4('0.0.0.0', 40455)}", f"{v4('0.0.0.0', 51000)}")
    root.write("/proc/net/udp", net)
    add_process(root, 3000, "python3", 1000, rss=20000)
    root.symlink("socket:[16001]", "/proc/3000/fd/3")
    result = collect(root, previous=first.state, now=NOW + DAY)
    assert result.warnings == [{
        "source": "probes", "change": "new listening socket",
        "text": "new listening socket tcp 0.0.0.0:8123 (python3)",
        "proto": "tcp", "address": "0.0.0.0", "port": 8123}]
    assert "tcp 127.0.0.1:45001 (user alice)" in section(result, "Listening sockets")
    # Known from now on.
    assert collect(root, previous=result.state, now=NOW + 2 * DAY).warnings == []


def test_a_socket_is_remembered_for_thirty_days(root):
    fake_system(root)
    state = collect(root).state
    # Last seen at a report 31 days before the last one: forgotten; 29: known.
    state["sockets"]["tcp 0.0.0.0:22"] = NOW - 31 * DAY
    state["sockets"]["tcp 127.0.0.1:631"] = NOW - 29 * DAY
    result = collect(root, previous=state, now=NOW + DAY)
    assert [w["text"] for w in result.warnings] == [
        "new listening socket tcp 0.0.0.0:22 (sshd)"]


def test_a_long_quiet_time_between_reports_makes_no_socket_new(root):
    fake_system(root)
    state = collect(root).state
    assert collect(root, previous=state, now=NOW + 90 * DAY).warnings == []


def test_sockets_without_ipv6(root):
    fake_system(root)
    os.unlink(root.host("/proc/net/tcp6"))
    os.unlink(root.host("/proc/net/udp6"))
    lines = section(collect(root), "Listening sockets")
    assert not any(line.startswith(("tcp6", "udp6")) for line in lines)


# -- processes -------------------------------------------------------------

def test_process_summary(root):
    fake_system(root)
    add_process(root, 3, "rcu_gp", 0, kernel=True)
    add_process(root, 900, "postgres", 105, rss=812000, threads=1)
    add_process(root, 901, "postgres", 105, rss=60000)
    add_process(root, 1200, "java", 1001, rss=2400000, threads=57)
    add_process(root, 1201, "bash", 1001, rss=4000)
    add_process(root, 1300, "defunct", 1000, state="Z")
    # comm may hold spaces and parentheses.
    add_process(root, 1400, "a) (b", 1000, rss=3000)
    result = collect(root)
    assert section(result, "Processes") == [
        "11 processes (2 kernel threads), 67 threads, 1 zombie",
        "by user: alice 3, 105 2, bob 2, root 2",
        "largest in memory:",
        "   2.3G  java (pid 1200, bob)",
        "   793M  postgres (pid 900, 105)",
        "    59M  postgres (pid 901, 105)",
        "    13M  systemd (pid 1, root)",
        "   8.9M  sshd (pid 812, root)",
    ]
    data = result.data["processes"]
    assert data["zombies"] == 1 and data["kernel_threads"] == 2
    assert data["largest"][0] == {"pid": 1200, "name": "java", "user": "bob",
                                  "rss_kib": 2400000}


def test_many_users_are_summed_after_the_top_five(root):
    fake_system(root)
    for n in range(8):
        add_process(root, 2000 + n, "sleep", 2000 + n, rss=100)
    line = section(collect(root), "Processes")[1]
    assert line == "by user: root 2, 2000 1, 2001 1, 2002 1, 2003 1 (and 5 other users: 5)"


def test_vanished_and_odd_processes_are_skipped(root):
    fake_system(root)
    root.mkdir("/proc/4000")                 # gone between listdir and open
    root.write("/proc/4001/stat", stat_line(4001, "half"))   # status gone already
    root.write("/proc/4002/stat", "4002 (broken)\n")
    root.write("/proc/4002/status", status_text("broken", 0, 1))
    result = collect(root)
    assert section(result, "Processes")[0] == "4 processes (1 kernel threads), 4 threads, no zombies"


# -- local parts -----------------------------------------------------------

PARTS = "/etc/systraq/systraq.d"


def part(root, name, script, mode=0o755):
    return root.write(f"{PARTS}/{name}", script, mode=mode)


def parts_result(root, text="[report]\npart_timeout = 1\n", **kwargs):
    fake_system(root)
    return collect(root, text=text, **kwargs)


def test_parts_run_in_run_parts_order_with_a_small_environment(root, monkeypatch):
    monkeypatch.setenv("SYSTRAQ_TEST_LEAK", "secret")
    part(root, "b-env", "#!/bin/sh\necho \"LC_ALL=$LC_ALL HOME=$HOME\"\n"
                        "echo \"leak=${SYSTRAQ_TEST_LEAK:-none} cwd=$(pwd)\"\n"
                        "echo \"sums=$ST_LDIGESTS conf=$SYSCONF_PATH\"\n"
                        "read line && echo \"stdin: $line\"\n"
                        "echo to stderr >&2\n")
    part(root, "B-upper", "#!/bin/sh\n\necho upper first in C order\n\n\n")
    part(root, "a_quiet", "#!/bin/sh\nexit 0\n")
    # run-parts skips these names and non-executables.
    part(root, "b-env.dpkg-old", "#!/bin/sh\necho old\n")
    part(root, "README", "not a script\n", mode=0o644)
    root.mkdir(f"{PARTS}/subdir")
    result = parts_result(root)
    titles = [t for t, _l in result.sections if t.startswith("Local")]
    assert titles == ["Local part B-upper", "Local part b-env"]
    assert section(result, "Local part B-upper") == ["upper first in C order"]
    state = os.fsdecode(root.host("/var/lib/systraq"))
    assert section(result, "Local part b-env") == [
        f"LC_ALL=C.UTF-8 HOME={state}", "leak=none cwd=/",
        f"sums={state}/systraq.sums conf={os.fsdecode(root.host('/etc/systraq'))}",
        "to stderr"]
    assert [(p["name"], p["outcome"]) for p in result.data["parts"]] == [
        ("B-upper", "ok"), ("README", "skipped"), ("a_quiet", "ok"), ("b-env", "ok"),
        ("subdir", "skipped")]
    assert result.warnings == []


def test_a_failing_part_warns_and_its_output_still_shows(root):
    part(root, "AA-local", "#!/bin/sh\necho checking\necho 'bad \033[31mthing'\nexit 3\n")
    result = parts_result(root)
    assert section(result, "Local part AA-local") == [
        "checking", "bad \\x1b[31mthing", "(exited with status 3)"]
    assert kinds(result, "part failed") == [{
        "source": "probes", "change": "part failed",
        "text": "local part AA-local exited with status 3", "part": "AA-local", "status": 3}]


def test_a_part_killed_by_a_signal(root):
    part(root, "kill-me", "#!/bin/sh\nkill -9 $$\n")
    result = parts_result(root)
    assert section(result, "Local part kill-me") == ["(killed by signal 9)"]
    assert kinds(result, "part failed")[0]["status"] == -9


def test_a_part_that_hangs_is_stopped_with_its_children(root, tmp_path):
    pids = tmp_path / "pids"
    part(root, "hang", f"#!/bin/sh\necho started\nsleep 30 &\necho $! > {pids}\n"
                       "sleep 30\necho never\n")
    part(root, "zz-after", "#!/bin/sh\necho still run\n")
    started = time.monotonic()
    result = parts_result(root)
    # Stopped, not waited for: the part alone would take 30 s.  (The
    # bound is the part's own length, not a guess at the machine's speed.)
    assert time.monotonic() - started < 30
    assert section(result, "Local part hang") == [
        "started", "(did not finish within 1 s and was stopped)"]
    assert section(result, "Local part zz-after") == ["still run"]
    assert kinds(result, "part failed")[0]["text"] == (
        "local part hang did not finish within 1 s and was stopped")
    assert result.data["parts"][0]["outcome"] == "timeout"
    child = int(pids.read_text())
    # The SIGKILL was sent to the part's process group; wait until the
    # child is dead (a zombie awaiting its reaper, or gone), however
    # long the kernel takes on a busy machine -- a sleep 30 left alive
    # would keep this waiting far past that.
    while True:
        try:
            with open(f"/proc/{child}/stat") as handle:
                if handle.read().split(") ")[1][0] in "ZX":
                    break
        except FileNotFoundError:
            break
        assert time.monotonic() - started < 30, "the part's child was not stopped"
        time.sleep(0.01)


def test_a_part_whose_child_keeps_the_output_open_is_stopped(root):
    part(root, "daemonish", "#!/bin/sh\necho parent done\nsleep 30 &\nexit 0\n")
    started = time.monotonic()
    result = parts_result(root)
    assert time.monotonic() - started < 6
    assert section(result, "Local part daemonish")[-1] == (
        "(did not finish within 1 s and was stopped)")


def test_long_output_is_cut(root):
    part(root, "chatty", "#!/bin/sh\nseq 1 1000\nhead -c 5000 /dev/zero | tr '\\0' x\n")
    lines = section(parts_result(root), "Local part chatty")
    assert lines[:3] == ["1", "2", "3"] and lines[199] == "200"
    assert lines[200:] == ["... and 801 more lines"]


def test_one_endless_line_is_cut_to_a_thousand_bytes(root):
    part(root, "wide", "#!/bin/sh\nhead -c 300000 /dev/zero | tr '\\0' y\necho\necho end\n")
    lines = section(parts_result(root), "Local part wide")
    assert lines == ["y" * 1000, "end"]


def test_a_script_the_kernel_cannot_run(root):
    part(root, "no-shebang", "echo hello\n")
    result = parts_result(root)
    assert section(result, "Local part no-shebang") == [
        "(cannot run it: Exec format error)"]
    assert kinds(result, "part failed")[0]["status"] is None


def test_old_stock_parts_are_left_out_with_one_line_each(root):
    # What an upgrade from the old systraq leaves, should its links stay:
    # the postinst's links into /usr/share/systraq (20201231-1), whose
    # targets are gone.
    for name in ("ae-release", "cc-df", "ee-lastlog", "ww-signature"):
        root.symlink(f"/usr/share/systraq/{name}", f"{PARTS}/{name}")
    # An even older one, into /usr/lib/systraq, relative.
    root.symlink("../../../usr/lib/systraq/dd-last", f"{PARTS}/dd-last")
    # Those of 20201231-5 (trixie) and 20260328-1 (sid): /usr/libexec.
    root.symlink("/usr/libexec/systraq/ck-mdstat", f"{PARTS}/ck-mdstat")
    root.symlink("../../../usr/libexec/systraq/ii-shellrc", f"{PARTS}/ii-shellrc")
    # One whose target is still there: its job is done here now anyway.
    root.write("/usr/share/systraq/gg-ps", "#!/bin/sh\nps auxwww\n", mode=0o755)
    root.symlink("/usr/share/systraq/gg-ps", f"{PARTS}/gg-ps")
    # Disabled the way the old README.Debian said.
    root.symlink("/bin/true", f"{PARTS}/ff-netstat")
    # The admin's own part with an old part's name: the admin's.
    part(root, "bb-free", "#!/bin/sh\necho my own free\n")
    result = parts_result(root)
    assert section(result, "Local parts") == [
        "ae-release: not run, the Release section does its job",
        "cc-df: not run, the Filesystems section does its job",
        "ck-mdstat: not run, the RAID section does its job",
        "dd-last: not run, the Recent logins section does its job",
        "ee-lastlog: not run, left out on purpose: its \"Never logged in\" lines were "
        "noise; logins are under Recent logins",
        "gg-ps: not run, the Processes section does its job",
        "ii-shellrc: not run, shell startup files are watched by systraq snapshot and contents",
        "ww-signature: not run, the report signs itself",
    ]
    assert section(result, "Local part bb-free") == ["my own free"]
    assert result.warnings == []
    outcomes = {p["name"]: p["outcome"] for p in result.data["parts"]}
    assert outcomes["ff-netstat"] == "disabled" and outcomes["gg-ps"] == "replaced"
    titles = [t for t, _l in result.sections]
    assert titles.index("Local parts") < titles.index("Local part bb-free")


def test_every_old_stock_part_has_a_reason():
    old = ("ae-release ah-uname ak-uptime bb-free cc-df ck-mdstat dd-last ee-lastlog "
           "ff-netstat gg-ps ii-shellrc nn-debsums rr-localdigest ww-signature").split()
    assert sorted(probes.STOCK_PARTS) == [n.encode() for n in old]


def test_a_dangling_link_of_the_admin_is_a_failure(root):
    root.symlink("/usr/local/lib/check-backups", f"{PARTS}/AA-backups")
    result = parts_result(root)
    assert section(result, "Local part AA-backups") == [
        "not run: it is a symlink to /usr/local/lib/check-backups, which does not exist"]
    assert kinds(result, "part failed")[0]["part"] == "AA-backups"


def test_a_link_within_the_root_runs(root):
    root.write("/usr/local/lib/check", "#!/bin/sh\necho checked\n", mode=0o755)
    root.symlink("../../../usr/local/lib/check", f"{PARTS}/AA-check")
    assert section(parts_result(root), "Local part AA-check") == ["checked"]


def test_an_absolute_link_below_another_root_is_not_followed_out(root):
    root.write("/usr/local/lib/check", "#!/bin/sh\necho checked\n", mode=0o755)
    root.symlink("/usr/local/lib/check", f"{PARTS}/AA-check")
    result = parts_result(root)
    assert section(result, "Local part AA-check") == [
        f"not run: it points outside {os.fsdecode(root.path)}"]


def test_the_part_runner_can_be_replaced(root):
    part(root, "AA-one", "#!/bin/sh\nexit 0\n")
    calls = []

    def fake(path, timeout, env):
        calls.append((path, timeout, sorted(env)))
        return probes.PartRun(0, False, ["", "hello", ""], 3, None)

    result = parts_result(root, text="[report]\npart_timeout = 7\n", run_part=fake)
    assert calls == [(root.host(f"{PARTS}/AA-one"), 7, [
        "BIN_PATH", "HOME", "HOME_PATH", "LC_ALL", "LOCALSTATE_PATH", "PACKAGE", "PATH",
        "ST_LDIGESTS", "SYSCONF_PATH", "VERSION"])]
    assert section(result, "Local part AA-one") == ["hello", "... and 3 more lines"]


def test_no_parts_directory_no_section(root):
    result = parts_result(root)
    assert not [t for t, _l in result.sections if t.startswith("Local")]
    assert result.data["parts"] == []
