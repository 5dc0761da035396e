# SPDX-License-Identifier: GPL-2.0-or-later
"""systraq.audit on a fake system tree: accounts, startup files, the
inventory, its records, the findings file, crash safety and the lock."""

import json
import os
import stat
import struct

import pytest

from systraq import audit, capabilities, config, fileattrs, records, statefile
from systraq.errors import RunError
from systraq.fsutil import atomic_write, exclusive_lock
from systraq.pathcodec import unescape
from systraq.spool import Spool

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "audit")
IS_ROOT = os.geteuid() == 0
# Files the test makes are the runner's: when that is not root, alice is
# the runner, so that her home's files have the owner they should.
ALICE_UID = 1000 if IS_ROOT else os.getuid()
ALICE_GID = 1000 if IS_ROOT else os.getgid()

PASSWD = f"""\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:{ALICE_UID}:{ALICE_GID}:Alice:/home/alice:/bin/bash
bob:x:1001:1001:Bob:/home/bob/:/bin/zsh
"""
GROUP = f"""\
root:x:0:
daemon:x:1:
alice:x:{ALICE_GID}:
bob:x:1001:
"""
# The runner may be nobody: then alice is, and games takes nobody's line.
PASSWD += ("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n" if ALICE_UID != 65534
           else "games:x:5:60:games:/usr/games:/usr/sbin/nologin\n")
if ALICE_GID != 65534:
    GROUP += "nogroup:x:65534:\n"
HASH = "$y$j9T$abcdefghijklmnopqrstu.$0123456789abcdefghijklmnopqrstuvwxyzABCDE"
SHADOW = f"""\
root:{HASH}:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
alice:!:19000:0:99999:7:::
bob:!*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
"""
MOUNTS = """\
/dev/vda1 / ext4 rw,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
sysfs /sys sysfs rw 0 0
tmpfs /tmp tmpfs rw,nosuid,nodev 0 0
tmpfs /run tmpfs rw 0 0
server:/export /mnt/nfs nfs4 rw,relatime,vers=4.2 0 0
alice@host:/ /mnt/fuse fuse.sshfs rw,nosuid,nodev 0 0
systemd-1 /mnt/auto autofs rw 0 0
"""


@pytest.fixture
def system(root):
    """A small Debian-like system: accounts, setuid programs, /tmp on tmpfs,
    an NFS mount, a configuration for the audit."""
    old_umask = os.umask(0o022)
    root.write("/etc/passwd", PASSWD)
    root.write("/etc/group", GROUP)
    root.write("/etc/shadow", SHADOW, mode=0o640)
    root.write("/proc/self/mounts", MOUNTS)
    root.write("/usr/bin/passwd", b"\x7fELF", mode=0o4755)
    root.write("/usr/bin/chage", b"\x7fELF", mode=0o2755)
    root.write("/usr/bin/ls", b"\x7fELF", mode=0o755)
    root.write("/etc/hosts", "127.0.0.1 localhost\n")
    root.mkdir("/tmp", mode=0o1777)
    root.mkdir("/var/tmp", mode=0o1777)
    root.mkdir("/home/alice", mode=0o700)
    root.mkdir("/mnt/nfs")
    root.write("/etc/systraq/systraq.conf", "[audit]\nexclude = /opt/skip\n")
    yield root
    os.umask(old_umask)


def run(tree, **kwargs):
    settings = tree.settings()
    conf = config.load(settings.config_file)
    return audit.run(settings, conf, **kwargs)


def spooled(tree):
    spool = Spool(tree.settings())
    return [record for batch in spool.pending() for record in spool.records(batch)]


def changes(result):
    return [(r["change"], r.get("path")) for r in result.records]


def texts(result):
    return [f["text"] for f in result.findings]


def install(tree, fixture, logical, mode=0o644):
    with open(os.path.join(FIXTURES, fixture), "rb") as handle:
        tree.write(logical, handle.read(), mode=mode)


# --- accounts --------------------------------------------------------------------------

def test_a_clean_system_gives_no_finding(system):
    assert run(system).findings == []


def test_an_account_with_uid_0_besides_root_is_a_finding(system):
    system.write("/etc/passwd", PASSWD + "toor:x:0:0::/root:/bin/sh\n")
    findings = run(system).findings
    assert findings == [{"source": "audit", "change": "uid 0", "account": "toor",
                         "path": "/etc/passwd", "line": 6,
                         "text": "account toor has uid 0, as root (/etc/passwd line 6)"}]


def test_empty_passwords_are_named_and_locked_accounts_are_fine(system):
    system.write("/etc/passwd", PASSWD
                 + "carol::1002:1002::/home/carol:/bin/sh\n"
                 + "dave:x:1003:1003::/home/dave:/bin/sh\n")
    system.write("/etc/shadow", SHADOW.replace("alice:!:", "alice::")
                 + "dave:!:19000:0:99999:7:::\n", mode=0o640)
    findings = run(system).findings
    assert [(f["change"], f["account"], f["path"], f["line"]) for f in findings] == [
        ("empty password", "alice", "/etc/shadow", 3),
        ("empty password", "carol", "/etc/passwd", 6),
    ]
    assert findings[0]["text"] == "account alice has an empty password (/etc/shadow line 3)"
    # No hash, of root or anybody, goes into what the report reads.
    current = open(audit.current_path(system.settings()), "rb").read().decode()
    assert HASH not in current and "$y$" not in current


# --- shell startup files -------------------------------------------------------------------

def test_debians_stock_startup_files_give_nothing(system):
    install(system, "profile", "/etc/profile")
    install(system, "bash.bashrc", "/etc/bash.bashrc")
    install(system, "login.defs", "/etc/login.defs")
    system.write("/etc/environment", "")
    for name in ("profile", "bashrc", "bash_logout"):
        install(system, f"skel.{name}", f"/etc/skel/.{name}")
        install(system, f"skel.{name}", f"/home/alice/.{name}")
        install(system, f"skel.{name}", f"/root/.{name}")
    assert run(system).findings == []


@pytest.mark.parametrize("line, problem", [
    ("PATH=.:$PATH", "PATH has '.'"),
    ("export PATH=\"$PATH:\"", "PATH has an empty element (the current directory)"),
    ("PATH=/usr/bin::/bin", "PATH has an empty element (the current directory)"),
    ("PATH=:/usr/bin", "PATH has an empty element (the current directory)"),
    ("PATH=bin:$PATH", "PATH has a relative directory"),
    ("umask 002", "umask 002 lets group write"),
    ("umask 000", "umask 000 lets group and others write"),
    ("umask u=rwx,g=rwx,o=rx", "umask u=rwx,g=rwx,o=rx lets group write"),
])
def test_a_closed_homes_bashrc_is_read_and_its_problem_named_with_file_and_line(
        system, line, problem):
    install(system, "skel.bashrc", "/home/alice/.bashrc", mode=0o600)
    with open(system.host("/home/alice/.bashrc"), "a") as handle:
        handle.write("# added by alice\n" + line + "\n#" + line + "\n")
    assert stat.S_IMODE(os.stat(system.host("/home/alice")).st_mode) == 0o700
    lines = open(system.host("/home/alice/.bashrc")).read().count("\n") - 1
    findings = run(system).findings
    assert findings == [{"source": "audit", "change": "shell startup",
                         "path": "/home/alice/.bashrc", "line": lines,
                         "account": "alice",
                         "text": f"/home/alice/.bashrc:{lines}: {problem}"}]


def test_system_files_skel_and_profile_d_are_read(system):
    system.write("/etc/profile.d/local.sh", "umask 002\n")
    system.write("/etc/profile.d/notes.txt", "umask 000\n")
    system.write("/etc/skel/.zshrc", "path=($path .)\n")
    system.write("/etc/environment", 'PATH="/usr/local/bin:/usr/bin:."\n')
    system.write("/etc/login.defs", "UMASK\t\t002\nENV_PATH\tPATH=/bin::/usr/bin\n")
    system.write("/root/.cshrc", "set path = ( /sbin /bin . )\n")
    assert texts(run(system)) == [
        "/etc/environment:1: PATH has '.'",
        "/etc/login.defs:1: UMASK 002 lets group write",
        "/etc/login.defs:2: ENV_PATH: PATH has an empty element (the current directory)",
        "/etc/profile.d/local.sh:1: umask 002 lets group write",
        "/etc/skel/.zshrc:1: PATH has '.'",
        "/root/.cshrc:1: PATH has '.'",
    ]


def test_a_symlinked_bashrc_is_never_followed_and_a_fifo_never_opened(system):
    # Were the link followed, the "shadow" it points at would give a finding.
    system.write("/etc/shadow", SHADOW + "umask 000\n", mode=0o600)
    system.symlink(system.host("/etc/shadow"), "/home/alice/.bashrc")
    os.mkfifo(system.host("/home/alice/.profile"))
    system.write("/home/alice/.ssh/x", "")
    os.symlink(".ssh", system.host("/home/alice/.zshenv"))
    result = run(system)
    assert result.findings == []


def test_a_startup_file_another_user_may_change_is_a_finding(system):
    system.write("/home/alice/.profile", "umask 022\n", mode=0o666)
    system.write("/etc/profile", "umask 022\n", mode=0o666)
    found = texts(run(system))
    assert found == ["/etc/profile: writable by everybody",
                     "/home/alice/.profile: writable by everybody"]


def test_a_startup_file_owned_by_someone_else_is_a_finding(system):
    system.write("/home/alice/.bashrc", "umask 022\n")
    if IS_ROOT:
        os.chown(system.host("/home/alice/.bashrc"), 1001, 1001)
        expected = "/home/alice/.bashrc: owned by bob, not by alice or root"
    else:
        # The runner owns the file: make alice somebody else.
        system.write("/etc/passwd", PASSWD.replace(f"alice:x:{ALICE_UID}:", "alice:x:4000:")
                     + f"runner:x:{ALICE_UID}:{ALICE_GID}::/nonexistent:/bin/sh\n")
        expected = "/home/alice/.bashrc: owned by runner, not by alice or root"
    assert texts(run(system)) == [expected]


def test_homes_on_a_network_file_system_are_not_read(system):
    system.write("/etc/passwd", PASSWD + "nina:x:1005:1005::/mnt/nfs/nina:/bin/sh\n")
    system.write("/mnt/nfs/nina/.profile", "PATH=.:$PATH\n")
    assert run(system).findings == []


# --- the inventory ------------------------------------------------------------------------

def test_the_first_run_is_one_baseline_record(system):
    result = run(system)
    assert result.baseline
    assert changes(result) == [("baseline", None)]
    record = result.records[0]
    assert record["count"] == 2 and record["source"] == "audit"
    assert result.counts == {"setuid": 1, "setgid": 1, "capabilities": 0, "world_writable": 0,
                             "unowned": 0, "unpackaged": 0, "flags": 0, "acl": 0}
    assert spooled(system) == result.records


def test_a_new_setuid_file_in_tmp_is_one_record(system):
    run(system)
    system.write("/tmp/.x/rootshell", b"\x7fELF", mode=0o4755)
    result = run(system, now=1700000000)
    assert not result.baseline
    assert len(result.records) == 1
    record = result.records[0]
    owner = "root" if IS_ROOT else "alice"
    assert record == {"source": "audit", "change": "setuid added", "path": "/tmp/.x/rootshell",
                      "type": "file", "mode": "4755", "owner": owner, "group": owner,
                      "time": "2023-11-14T22:13:20Z", "since": record["since"]}
    assert audit.describe(record) == f"new setuid file: /tmp/.x/rootshell (4755 {owner}:{owner})"
    assert run(system).records == []
    assert sorted(r["change"] for r in spooled(system)) == ["baseline", "setuid added"]


def test_setuid_removed_and_changed(system):
    system.write("/usr/bin/newgrp", b"\x7fELF", mode=0o4755)
    run(system)
    os.chmod(system.host("/usr/bin/passwd"), 0o755)
    os.unlink(system.host("/usr/bin/newgrp"))
    os.chmod(system.host("/usr/bin/chage"), 0o2775)
    result = run(system)
    assert changes(result) == [("setgid changed", "/usr/bin/chage"),
                               ("setuid removed", "/usr/bin/newgrp"),
                               ("setuid removed", "/usr/bin/passwd")]
    changed = result.records[0]
    assert (changed["mode_before"], changed["mode"]) == ("2755", "2775")
    assert audit.describe(changed).startswith("setgid file changed: /usr/bin/chage: 2755 ")
    assert audit.describe(result.records[2]).startswith(
        "no longer a setuid file (removed, or the bit cleared): /usr/bin/passwd (was 4755 ")


def test_world_writable_entries_below_system_directories(system):
    run(system)
    system.write("/etc/open.conf", "x\n", mode=0o666)
    system.mkdir("/etc/dropbox", mode=0o777)
    system.mkdir("/var/lib/shared", mode=0o1777)      # sticky: fine
    system.symlink("hosts", "/etc/hosts.link")        # a symlink is always 0777
    system.write("/tmp/scratch", "x\n", mode=0o666)   # not a system directory
    system.write("/home/alice/open", "x\n", mode=0o666)
    result = run(system)
    assert changes(result) == [("world-writable added", "/etc/dropbox"),
                               ("world-writable added", "/etc/open.conf")]
    assert result.records[0]["type"] == "directory"
    assert result.counts["world_writable"] == 2


def test_a_tree_made_world_writable_at_once_is_one_record(system):
    run(system)
    system.mkdir("/opt/app/lib", mode=0o777)
    for name in ("a", "b", "c"):
        system.write(f"/opt/app/lib/{name}", "x\n", mode=0o666)
    os.chmod(system.host("/opt/app"), 0o777)
    system.write("/opt/app-2", "x\n", mode=0o666)
    result = run(system)
    assert changes(result) == [("world-writable added", "/opt/app"),
                               ("world-writable added", "/opt/app-2")]
    assert result.records[0]["below"] == 4
    assert audit.describe(result.records[0]).endswith(", and 4 more below it")
    assert result.counts["world_writable"] == 6


@pytest.mark.skipif(not IS_ROOT, reason="giving a file an unknown owner needs root")
def test_a_file_of_an_unknown_owner_in_usr(system):
    run(system)
    path = system.write("/usr/local/bin/tool", b"\x7fELF", mode=0o755)
    os.chown(path, 4242, 0)
    result = run(system)
    assert changes(result) == [("unowned added", "/usr/local/bin/tool")]
    assert (result.records[0]["owner"], result.records[0]["group"]) == (4242, "root")


def test_files_of_a_deleted_account_are_unowned_one_record_a_tree(system):
    system.write("/srv/app/data/one", "1\n")
    system.write("/srv/app/data/two", "2\n")
    if IS_ROOT:
        for top, dirs, files in os.walk(system.host("/srv/app")):
            for name in [top] + [os.path.join(top, n) for n in dirs + files]:
                os.lchown(name, ALICE_UID, ALICE_GID)
    run(system)
    # alice's account goes away; her files stay.
    system.write("/etc/passwd", "".join(line + "\n" for line in PASSWD.splitlines()
                                        if not line.startswith("alice:")))
    system.write("/etc/group", "".join(line + "\n" for line in GROUP.splitlines()
                                       if not line.startswith("alice:")))
    result = run(system)
    unowned = {r["path"]: r for r in result.records if r["change"] == "unowned added"}
    # One record covers /srv/app: /srv/app itself when only it was
    # alice's, /srv when the runner (alice) made /srv too.
    top = "/srv/app" if IS_ROOT else "/srv"
    assert top in unowned and not any(p.startswith("/srv/app/") for p in unowned)
    if IS_ROOT:
        assert unowned[top]["below"] == 3    # data, data/one, data/two
    else:
        assert unowned[top]["below"] >= 4    # and /srv/app
    assert unowned[top]["owner"] == ALICE_UID


def test_excluded_network_fuse_and_pseudo_file_systems_are_not_walked(system):
    for top in ("/opt/skip", "/mnt/nfs", "/mnt/fuse", "/mnt/auto", "/proc/1", "/run/user"):
        system.write(top + "/suid", b"\x7fELF", mode=0o4755)
        system.write(top + "/open", "x", mode=0o666)
    system.write("/opt/kept/suid", b"\x7fELF", mode=0o4755)
    run(system)
    assert inventory(system) == [b"/opt/kept/suid", b"/usr/bin/chage", b"/usr/bin/passwd"]
    result = run(system)
    assert result.skipped == [(b"/mnt/fuse", "fuse.sshfs"), (b"/mnt/nfs", "nfs4")]


def inventory(tree):
    _header, items = statefile.load(audit.state_path(tree.settings()), audit.STATE_FORMAT)
    return sorted(items)


def other_devices(monkeypatch, tree, devices):
    """Make fstat say that the directories at the logical paths given lie on
    other devices: {path: (st_dev, st_ino or None)}."""
    real = os.fstat
    where = {os.path.realpath(tree.host(path)): value for path, value in devices.items()}

    def fstat(fd):
        info = real(fd)
        try:
            target = os.readlink(f"/proc/self/fd/{fd}".encode())
        except OSError:
            return info
        if target not in where:
            return info
        device, inode = where[target]
        fields = list(info[:10])
        fields[2] = device
        if inode is not None:
            fields[1] = inode
        return os.stat_result(fields)

    monkeypatch.setattr(os, "fstat", fstat)


def test_a_device_the_mount_table_did_not_announce_makes_it_read_again(system, monkeypatch):
    # /mnt/late is mounted (NFS) after the table was read; /var/lib/box
    # has a device of its own but no mount (a btrfs subvolume).
    system.write("/mnt/late/suid", b"", mode=0o4755)
    system.write("/var/lib/box/suid", b"", mode=0o4755)
    other_devices(monkeypatch, system, {"/mnt/late": (4242, None), "/var/lib/box": (4343, None)})
    reads = []
    original = audit.Mounts.read

    def read(self):
        original(self)
        reads.append(sorted(self.table))
        system.write("/proc/self/mounts", MOUNTS + "srv:/late /mnt/late nfs4 rw 0 0\n")

    monkeypatch.setattr(audit.Mounts, "read", read)
    run(system)
    assert inventory(system) == [b"/usr/bin/chage", b"/usr/bin/passwd", b"/var/lib/box/suid"]
    assert len(reads) == 3 and b"/mnt/late" in reads[-1] and b"/mnt/late" not in reads[0]


def test_a_directory_seen_twice_is_walked_once(system, monkeypatch):
    # A bind mount: /usr/local/src and /srv/bind are one directory.
    system.write("/srv/bind/suid", b"", mode=0o4755)
    system.write("/usr/local/src/suid", b"", mode=0o4755)
    same = os.stat(system.host("/srv/bind"))
    other_devices(monkeypatch, system, {"/usr/local/src": (same.st_dev, same.st_ino)})
    run(system)
    assert inventory(system) == [b"/srv/bind/suid", b"/usr/bin/chage", b"/usr/bin/passwd"]


def test_a_mount_table_name_with_a_space_is_read(system):
    system.write("/proc/self/mounts", MOUNTS + "srv:/x /mnt/my\\040share nfs rw 0 0\n")
    system.write("/mnt/my share/suid", b"\x7fELF", mode=0o4755)
    result = run(system)
    assert result.counts["setuid"] == 1
    assert (b"/mnt/my share", "nfs") in result.skipped


def test_odd_file_names_are_escaped_and_round_trip(system):
    run(system)
    system.write(b"/tmp/evil\nnew setuid file: /usr/bin/ok", b"", mode=0o4755)
    (record,) = run(system).records
    assert "\n" not in record["path"] and "\n" not in audit.describe(record)
    assert unescape(record["path"]) == b"/tmp/evil\nnew setuid file: /usr/bin/ok"


def test_a_damaged_state_is_said_and_starts_a_new_baseline(system):
    run(system)
    state = system.settings().root_state_dir + b"/audit.state"
    with open(state, "r+b") as handle:
        handle.seek(20)
        handle.write(b"\xff")
    system.write("/tmp/suid", b"", mode=0o4755)
    result = run(system)
    assert changes(result) == [("state damaged", None)]
    assert result.damaged and not result.baseline
    assert run(system).records == []


# --- crash safety, the lock, the findings file -----------------------------------------------

class Killed(Exception):
    pass


@pytest.mark.parametrize("point", ["before spooling", "after spooling"])
def test_a_run_killed_while_committing_reports_once(system, monkeypatch, point):
    run(system)
    system.write("/tmp/suid", b"", mode=0o4755)
    original = Spool.add

    def add(self, *args, **kwargs):
        if point == "after spooling":
            original(self, *args, **kwargs)
        raise Killed()

    monkeypatch.setattr(Spool, "add", add)
    with pytest.raises(Killed):
        run(system)
    assert os.path.exists(system.settings().root_state_dir + b"/audit.state.next")
    monkeypatch.setattr(Spool, "add", original)
    result = run(system)
    assert changes(result) == ([] if point == "after spooling"
                               else [("setuid added", "/tmp/suid")])
    assert [r["path"] for r in spooled(system) if r["change"] == "setuid added"] == ["/tmp/suid"]
    assert not os.path.exists(system.settings().root_state_dir + b"/audit.state.next")
    assert run(system).records == []


def test_a_second_audit_gives_up_with_status_3(system):
    settings = system.settings()
    os.makedirs(settings.root_state_dir, mode=0o700, exist_ok=True)
    with exclusive_lock(settings.root_state_dir + b"/audit.lock", 0):
        with pytest.raises(RunError) as caught:
            run(system)
    assert caught.value.exit_status == 3
    assert str(caught.value).startswith("another 'systraq audit' is running")


def test_the_root_state_is_closed_to_others(system):
    run(system)
    settings = system.settings()
    assert stat.S_IMODE(os.stat(settings.root_state_dir).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(settings.root_state_dir + b"/audit.state").st_mode) == 0o600


def test_the_findings_file_for_the_report(system):
    settings = system.settings()
    assert audit.current(settings) is None
    system.write("/etc/passwd", PASSWD + "toor:x:0:0::/root:/bin/sh\n")
    result = run(system, now=1700000000.5, spool_group=os.getgid())
    path = audit.current_path(settings)
    info = os.stat(path)
    assert stat.S_IMODE(info.st_mode) == 0o640 and info.st_gid == os.getgid()
    with open(path, "rb") as handle:
        document = json.load(handle)
    assert document["format"] == 1 and document["time"] == 1700000000.5
    assert document["findings"] == result.findings
    assert document["counts"] == {"setuid": 1, "setgid": 1, "capabilities": 0,
                                  "world_writable": 0, "unowned": 0, "unpackaged": 0, "flags": 0, "acl": 0}
    assert document["skipped"] == [{"path": "/mnt/fuse", "type": "fuse.sshfs"},
                                   {"path": "/mnt/nfs", "type": "nfs4"}]
    current = audit.current(settings)
    assert current["time"] == 1700000000.5 and current["findings"] == result.findings
    assert [audit.describe(f) for f in current["findings"]] == [
        "account toor has uid 0, as root (/etc/passwd line 6)"]


@pytest.mark.parametrize("content", [b"{not json", b"[]", b'{"format": 1}', b"\xff\xfe"])
def test_a_broken_findings_file_is_one_line_error(system, content):
    settings = system.settings()
    os.makedirs(settings.state_dir, exist_ok=True)
    with open(audit.current_path(settings), "wb") as handle:
        handle.write(content)
    with pytest.raises(RunError) as caught:
        audit.current(settings)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(os.fsdecode(audit.current_path(settings)))


def test_describe_says_every_record_kind_in_one_line(system):
    run(system)
    system.write("/tmp/suid", b"", mode=0o4755)
    system.write("/etc/open", b"", mode=0o666)
    records = run(system).records
    records.append({"change": "baseline", "count": 3})
    records.append({"change": "state damaged", "detail": "checksum mismatch", "count": 3})
    lines = [audit.describe(r) for r in records]
    assert lines[-2].startswith("audit baseline: 3 setuid")
    assert lines[-1].startswith("audit state was damaged (checksum mismatch)")
    assert any(line.startswith("writable by everybody: file /etc/open (0666 ") for line in lines)
    assert all(line and "\n" not in line for line in lines)


# --- file capabilities -----------------------------------------------------------------

def caps(permitted, effective=True, inheritable=0, rootid=None):
    """A security.capability value as setcap writes it (revision 2, or 3
    with a root uid)."""
    magic = (0x03000000 if rootid is not None else 0x02000000) | (1 if effective else 0)
    raw = struct.pack("<IIIII", magic, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF,
                      permitted >> 32, inheritable >> 32)
    return raw + (struct.pack("<I", rootid) if rootid is not None else b"")


SETUID_EP = caps(1 << 7)


@pytest.mark.parametrize("raw, shown", [
    (SETUID_EP, "cap_setuid=ep"),
    (caps(1 << 13), "cap_net_raw=ep"),
    (caps((1 << 12) | (1 << 13), effective=False), "cap_net_admin,cap_net_raw=p"),
    (caps(1 << 21, inheritable=1 << 0), "cap_chown=ei cap_sys_admin=ep"),
    (caps(1 << 40), "cap_checkpoint_restore=ep"),
    (caps(1 << 50), "cap_50=ep"),
    (caps(1 << 7, rootid=100000), "cap_setuid=ep [rootid=100000]"),
    (struct.pack("<III", 0x01000001, 1 << 7, 0), "cap_setuid=ep"),
    (b"\x00\x00\x00\x07junk", "unknown capability data 000000076a756e6b"),
    (b"\x01", "unknown capability data 01"),
])
def test_capabilities_are_told_as_getcap_tells_them(raw, shown):
    assert capabilities.text(raw) == shown


def with_capabilities(monkeypatch, tree, given):
    """File capabilities by logical path, as the kernel would give them."""
    def read(dir_fd, name):
        directory = os.readlink(f"/proc/self/fd/{dir_fd}")
        logical = "/" + os.path.relpath(os.path.join(directory, os.fsdecode(name)),
                                        os.fsdecode(tree.path))
        return given.get(logical)
    monkeypatch.setattr(audit.capabilities, "read", read)


def test_a_program_given_capabilities_is_a_critical_record(system, monkeypatch):
    given = {}
    with_capabilities(monkeypatch, system, given)
    system.write("/tmp/.x/py", b"\x7fELF", mode=0o755)
    system.write("/tmp/.x/data", b"not a program", mode=0o644)
    run(system)
    # setcap cap_setuid+ep on a copy of python3, in /tmp (outside the
    # system directories) and in /usr/bin; a file nobody may run is not
    # a program, whatever it carries.
    given.update({"/tmp/.x/py": SETUID_EP, "/usr/bin/ls": caps(1 << 13),
                  "/tmp/.x/data": SETUID_EP})
    result = run(system, now=1700000000)
    assert changes(result) == [("capabilities added", "/tmp/.x/py"),
                               ("capabilities added", "/usr/bin/ls")]
    record = result.records[0]
    assert record["capabilities"] == "cap_setuid=ep"
    assert records.load(record, "audit").rank == records.CRITICAL
    owner = "root" if IS_ROOT else "alice"
    assert audit.describe(record) == \
        f"new file with capabilities: /tmp/.x/py (cap_setuid=ep; 0755 {owner}:{owner})"
    assert records.load(record, "audit").describe() == \
        [f"/tmp/.x/py: capabilities added (cap_setuid=ep, mode 0755, {owner}:{owner})"]
    assert result.counts["capabilities"] == 2
    assert run(system).records == []

    given["/usr/bin/ls"] = caps((1 << 13) | (1 << 21))
    del given["/tmp/.x/py"]
    result = run(system)
    assert changes(result) == [("capabilities removed", "/tmp/.x/py"),
                               ("capabilities changed", "/usr/bin/ls")]
    removed, changed = (records.load(r, "audit") for r in result.records)
    assert removed.is_note and not changed.is_note
    assert audit.describe(result.records[1]).startswith(
        "file capabilities changed: /usr/bin/ls: cap_net_raw=ep -> cap_net_raw,cap_sys_admin=ep")


def test_a_state_that_knew_no_capabilities_is_not_told_they_are_new(system, monkeypatch):
    given = {"/usr/bin/ls": caps(1 << 13)}
    with_capabilities(monkeypatch, system, given)
    run(system)
    # The state as the audit wrote it before it read capabilities: no
    # mark in the header, items without capabilities.
    settings = system.settings()
    header, items = statefile.load(audit.state_path(settings), audit.STATE_FORMAT)
    del header["capabilities"]
    items = audit.without_capabilities(items)
    header["count"] = len(items)
    atomic_write(audit.state_path(settings), statefile.encode(header, items), mode=0o600)
    assert run(system).records == []
    given["/usr/bin/ls"] = SETUID_EP
    assert changes(run(system)) == [("capabilities changed", "/usr/bin/ls")]


@pytest.mark.skipif(not IS_ROOT, reason="setting security.capability takes CAP_SETFCAP")
def test_capabilities_are_read_from_the_file_not_through_a_link(tmp_path):
    program = tmp_path / "py"
    program.write_bytes(b"\x7fELF")
    try:
        os.setxattr(program, capabilities.ATTRIBUTE, SETUID_EP)
    except OSError as exc:
        pytest.skip(f"this file system takes no security.capability: {exc.strerror}")
    os.symlink("py", tmp_path / "link")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert capabilities.read(fd, b"py") == SETUID_EP
        assert capabilities.read(fd, b"link") is None
        assert capabilities.read(fd, b"gone") is None
    finally:
        os.close(fd)


def test_files_no_package_ships_below_the_package_trees_are_added_items(system):
    from tests.unit.test_packages import FakeDpkg
    dpkg = FakeDpkg(system)
    # Merged /usr: a package that lists /bin/ls ships /usr/bin/ls.
    os.symlink("usr/bin", system.host("/bin"))
    dpkg.install("coreutils", "9.1-1", {"/bin/ls": "\x7fELF"})
    dpkg.install("passwd", "1:4.13", {"/usr/bin/passwd": "\x7fELF", "/usr/bin/chage": "\x7fELF",
                                      "/usr/sbin/chpasswd": "\x7fELF"})
    dpkg.install("python3-six", "1.16-1", {"/usr/lib/python3/dist-packages/six.py": "x\n"})
    dpkg.install("base", "1", {"/usr/lib/x86_64-linux-gnu/libc.so.6": "\x7fELF",
                               "/usr/lib/modules/6.1.0-28-amd64/kernel/fs.ko": "\x7fELF",
                               "/usr/share/doc/base/copyright": "x\n"})
    first = run(system)
    assert first.baseline and first.counts["unpackaged"] == 0
    # What Debian's tools make there, and the admin's own tree: nothing.
    system.write("/usr/lib/python3/dist-packages/__pycache__/six.cpython-313.pyc", "b")
    system.write("/var/lib/dpkg/alternatives/editor", "auto\n/usr/bin/editor\n")
    os.symlink("/etc/alternatives/editor", system.host("/usr/bin/editor"))
    system.write("/usr/local/bin/backup", "#!/bin/sh\n", mode=0o755)
    # What an intruder drops.
    system.write("/usr/lib/python3/dist-packages/zz.pth", "import os\n")
    system.write("/usr/lib/x86_64-linux-gnu/libkeyutils.so.1.10", b"\x7fELF")
    system.write("/usr/lib/modules/6.1.0-28-amd64/extra/net.ko.xz", b"\xfd7zXZ")
    system.write("/usr/sbin/sshd-session", b"\x7fELF", mode=0o755)
    os.symlink("/tmp/x", system.host("/usr/bin/vi"))
    for name in ("a", "b", "c"):
        system.write(f"/usr/share/.x/{name}", "x")
    result = run(system)
    said = {unescape(r["path"]).decode(): records.load(r).describe()[0]
            for r in result.records}
    assert sorted(said) == [
        "/usr/bin/vi", "/usr/lib/modules/6.1.0-28-amd64/extra",
        "/usr/lib/modules/6.1.0-28-amd64/extra/net.ko.xz",
        "/usr/lib/python3/dist-packages/zz.pth",
        "/usr/lib/x86_64-linux-gnu/libkeyutils.so.1.10", "/usr/sbin/sshd-session",
        "/usr/share/.x"], said
    assert said["/usr/lib/python3/dist-packages/zz.pth"].startswith(
        "/usr/lib/python3/dist-packages/zz.pth: new file no package ships, "
        "a Python start-up hook (mode 0644")
    # Short text others may read comes with its content; a binary never.
    shown = {unescape(r["path"]).decode(): records.load(r).describe()[1:]
             for r in result.records}
    assert shown["/usr/lib/python3/dist-packages/zz.pth"] == ["    import os"]
    assert shown["/usr/lib/x86_64-linux-gnu/libkeyutils.so.1.10"] == []
    assert "a kernel module" in said["/usr/lib/modules/6.1.0-28-amd64/extra/net.ko.xz"]
    assert "a shared library" in said["/usr/lib/x86_64-linux-gnu/libkeyutils.so.1.10"]
    assert "a program" in said["/usr/sbin/sshd-session"]
    # A new directory is one entry, with how much it holds; what it holds
    # that intruders drop is named on its own all the same.
    assert said["/usr/share/.x"].startswith("/usr/share/.x: new directory no package ships")
    assert said["/usr/share/.x"].endswith("and 3 more below it")
    assert all(not records.load(r).is_note for r in result.records)
    assert run(system).records == []


def test_an_inventory_without_packaged_files_learns_them_once(system):
    from tests.unit.test_packages import FakeDpkg
    FakeDpkg(system).install("coreutils", "9.1-1", {"/usr/bin/ls": "\x7fELF"})
    system.write("/usr/lib/old-unpackaged.so", b"\x7fELF")
    run(system)
    state = audit.state_path(system.settings())
    header, items = statefile.load(state, audit.STATE_FORMAT)
    del header[audit.WITH_UNPACKAGED]
    items = audit.without(audit.UNPACKAGED, items)
    header["count"] = len(items)
    atomic_write(state, statefile.encode(header, items), mode=0o600)
    assert run(system).records == []
    system.write("/usr/lib/new-unpackaged.so", b"\x7fELF")
    assert [r["path"] for r in run(system).records] == ["/usr/lib/new-unpackaged.so"]


FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IMMUTABLE_FL = 0x80086601, 0x40086602, 0x10


def chattr(path, immutable):
    """chattr +i / -i, as e2fsprogs does it (FS_IOC_SETFLAGS)."""
    import fcntl
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        (bits,) = struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 4))
        bits = bits | FS_IMMUTABLE_FL if immutable else bits & ~FS_IMMUTABLE_FL
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", bits))
    finally:
        os.close(fd)


def acl(*entries):
    """A POSIX ACL attribute: (tag, perms, id) entries, version 2."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


ANY = 0xFFFFFFFF
# setfacl -m u:1001:rw on a 0640 file; setfacl -m d:g:4:rx on a directory.
USER_RW = acl((1, 6, ANY), (2, 6, 1001), (4, 4, ANY), (0x10, 6, ANY), (0x20, 0, ANY))
DEFAULT_ADM = acl((1, 7, ANY), (4, 5, ANY), (8, 5, 4), (0x10, 5, ANY), (0x20, 5, ANY))


@pytest.mark.skipif(not IS_ROOT, reason="chattr +i needs CAP_LINUX_IMMUTABLE")
def test_an_immutable_flag_or_an_acl_set_on_a_system_file_is_an_added_item(system):
    system.write("/etc/cron.d/job", "* * * * * root true\n")
    system.mkdir("/var/log/journal")
    # systemd's postinst gives the journal directory a default ACL: the
    # files journald makes there inherit it, and say nothing.
    os.setxattr(system.host("/var/log/journal"), "system.posix_acl_default", DEFAULT_ADM)
    assert run(system).baseline
    try:
        chattr(system.host("/etc/cron.d/job"), True)
    except OSError as exc:
        pytest.skip(f"no immutable flag on this file system: {exc}")
    try:
        os.setxattr(system.host("/etc/shadow"), "system.posix_acl_access", USER_RW)
        system.write("/var/log/journal/system.journal", "x")
        os.setxattr(system.host("/var/log/journal/system.journal"), "system.posix_acl_access",
                    acl((1, 6, ANY), (4, 4, ANY), (8, 5, 4), (0x10, 5, ANY), (0x20, 4, ANY)))
        result = run(system)
        said = {unescape(r["path"]).decode(): records.load(r).describe()[0]
                for r in result.records}
        assert said == {
            "/etc/cron.d/job": "/etc/cron.d/job: immutable flag set (chattr) (mode 0644, root:root)",
            "/etc/shadow": "/etc/shadow: ACL grants user:bob:rw- (mode 0660, root:root)"}, said
        assert run(system).records == []
    finally:
        chattr(system.host("/etc/cron.d/job"), False)


def _owner(tree):
    """owner:group of the files this test makes, as the audit names them."""
    from systraq import accounts
    names = accounts.Names(tree.settings())
    uid, gid = os.getuid(), os.getgid()
    return (f"{names.user(uid) if names.has_user(uid) else uid}:"
            f"{names.group(gid) if names.has_group(gid) else gid}")


def _set_acl(path, data):
    try:
        os.setxattr(path, "system.posix_acl_access", data)
    except OSError as exc:
        pytest.skip(f"no POSIX ACLs on this file system: {exc}")


def test_an_acl_that_changed_is_told_with_its_entries_before_and_after(system):
    system.write("/etc/app.conf", "x", mode=0o640)
    _set_acl(system.host("/etc/app.conf"), USER_RW)
    assert run(system).baseline
    assert run(system).records == []
    # setfacl -m u:daemon:rw: daemon is added beside bob.
    _set_acl(system.host("/etc/app.conf"),
             acl((1, 6, ANY), (2, 6, 1), (2, 6, 1001), (4, 4, ANY), (0x10, 6, ANY),
                 (0x20, 0, ANY)))
    found = run(system).records
    assert [records.load(r).describe()[0] for r in found] == [
        "/etc/app.conf: ACL changed user:bob:rw- -> user:daemon:rw-,user:bob:rw- "
        f"(mode 0660, {_owner(system)})"]
    assert records.load(found[0]).rank == records.SERIOUS
    assert run(system).records == []


def test_a_state_without_acl_entries_takes_them_without_a_warning(system):
    system.write("/etc/app.conf", "x", mode=0o640)
    _set_acl(system.host("/etc/app.conf"), USER_RW)
    assert run(system).baseline
    # The state as a systraq that kept no entries wrote it.
    path = audit.state_path(system.settings())
    header, items = statefile.load(path, audit.STATE_FORMAT)
    del header[audit.WITH_ACL_ENTRIES]
    header["count"] = len(items)
    atomic_write(path, statefile.encode(header, audit.without_acl_entries(items)), mode=0o600)
    _set_acl(system.host("/etc/app.conf"),
             acl((1, 6, ANY), (2, 6, 1000), (4, 4, ANY), (0x10, 6, ANY), (0x20, 0, ANY)))
    assert run(system).records == []
    _set_acl(system.host("/etc/app.conf"), USER_RW)
    assert [r["change"] for r in run(system).records] == ["acl changed"]


def test_a_security_attribute_debian_does_not_set_is_a_flag(system, monkeypatch):
    system.write("/usr/bin/tool", "x", mode=0o755)
    assert run(system).baseline
    real = fileattrs.attribute_names
    planted = system.host("/usr/bin/tool")

    def names(dir_fd, name):
        found = real(dir_fd, name)
        where = name if dir_fd is None else os.path.join(
            os.readlink(f"/proc/self/fd/{dir_fd}").encode(), os.fsencode(name or b""))
        if os.fsencode(where).rstrip(b"/") == planted:
            # setfattr -n security.SMACK64EXEC -v _ (needs CAP_SYS_ADMIN)
            found = found + ["security.SMACK64EXEC", "security.selinux"]
        return found
    monkeypatch.setattr(fileattrs, "attribute_names", names)
    found = run(system).records
    assert [records.load(r).describe()[0] for r in found] == [
        f"/usr/bin/tool: security attribute security.SMACK64EXEC set (mode 0755, "
        f"{_owner(system)})"]
    assert fileattrs.unusual(["security.capability", "security.selinux", "security.ima",
                              "security.evm", "security.SMACK64", "user.x",
                              "security.apparmor"]) == ["security.apparmor"]
