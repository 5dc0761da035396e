# SPDX-License-Identifier: GPL-2.0-or-later
"""systraq contents and systraq lists, against real files in a fake root."""

import os
import shutil
import stat
import subprocess
import time

import pytest

from systraq.spool import stamp
from systraq import config, contents, listgen
from systraq.cli import main
from systraq.spool import Spool

AS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (closed homes)")
HERE = os.path.dirname(__file__)
FIXTURE = os.path.join(HERE, "fixtures", "filetraq")
SSH_KEYGEN = "/usr/bin/ssh-keygen"
ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
# 2026-11-21 12:00 local time: the fixture's dated copies of March 2025
# are past 60 days, those of November 2026 are not.
NOW = time.mktime((2026, 11, 21, 12, 0, 0, 0, 0, -1))


def conf(root, text=""):
    path = root.write("/etc/systraq/systraq.conf", "[contents]\n" + text)
    return config.load(path)


def run(root, text="", now=None, mode="pub"):
    return contents.run(root.settings(), conf(root, text), mode, now=now)


def changes(result):
    return sorted((r["path"], r["change"]) for r in result.records)


def by_path(result):
    return {r["path"]: r for r in result.records}


def spooled(root):
    spool = Spool(root.settings())
    return [r for b in spool.pending() for r in spool.records(b)]


def backups(root, logical):
    directory = os.fsdecode(root.host("/var/lib/systraq/filetraq" + logical))
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def gnu_diff_body(tmp_path, old, new):
    """The hunks ``diff -u`` prints for OLD -> NEW (headers left out)."""
    (tmp_path / "a").write_bytes(old)
    (tmp_path / "b").write_bytes(new)
    proc = subprocess.run(["/usr/bin/diff", "-u", str(tmp_path / "a"), str(tmp_path / "b")],
                          env=ENV, capture_output=True, check=False)
    assert proc.returncode == 1
    return proc.stdout.split(b"\n", 2)[2]


@pytest.fixture
def etc(root):
    root.write("/etc/hosts", "127.0.0.1 localhost\n")
    root.write("/etc/motd", "welcome\n")
    root.write("/etc/bin.dat", b"\x7fELF\0\0\1")
    root.write("/etc/shadow", "root:*:1::::::\n", mode=0o640)
    root.write("/etc/cron.d/.placeholder", "")
    return root


def test_first_run_backs_up_quietly_in_one_line(etc, capsys):
    result = run(etc)
    assert result.baseline
    assert [r["change"] for r in result.records] == ["baseline"]
    # hosts, motd, bin.dat, placeholder, passwd, systraq.conf
    assert result.records[0]["count"] == 6
    assert backups(etc, "/etc/hosts") == ["orig"]
    assert open(etc.host("/var/lib/systraq/filetraq/etc/hosts/orig"), "rb").read() == \
        b"127.0.0.1 localhost\n"
    # Not world-readable: no backup at all.
    assert backups(etc, "/etc/shadow") == []
    assert run(etc).records == []
    assert main(["--root", os.fsdecode(etc.path), "contents", "-v"]) == 0
    assert capsys.readouterr().out == "contents pub: 6 files, 0 changes\n"


def test_first_run_says_so_in_one_line_on_the_command_line(etc, capsys):
    assert main(["--root", os.fsdecode(etc.path), "contents", "-v"]) == 0
    assert capsys.readouterr().out == ("contents pub: first run, 5 files backed up\n"
                                       "contents pub: 5 files, 0 changes\n")


def test_an_unchanged_run_writes_nothing_and_sweeps_once_a_day(etc, monkeypatch):
    run(etc, now=NOW)
    state = etc.host("/var/lib/systraq/contents_pub.state")
    before = (os.stat(state).st_ino, open(state, "rb").read())
    sweeps = []
    original = contents.Backups.sweep

    def counting(self, *args):
        sweeps.append(args)
        return original(self, *args)
    monkeypatch.setattr(contents.Backups, "sweep", counting)
    run(etc, now=NOW + 3600)
    # Not rewritten; only its time moved, to say when the run ended.
    assert sweeps == [] and (os.stat(state).st_ino, open(state, "rb").read()) == before
    assert os.stat(state).st_mtime == NOW + 3600
    run(etc, now=NOW + 86400)
    run(etc, now=NOW + 86400 + 3600)
    assert len(sweeps) == 1 and os.stat(state).st_ino != before[0]


def test_a_change_record_says_when_the_previous_run_ended(etc):
    run(etc, now=NOW)
    run(etc, now=NOW + 1800)
    etc.write("/etc/motd", "changed\n")
    (record,) = run(etc, now=NOW + 3600).records
    assert record["since"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW + 1800))


def test_a_changed_text_file_is_a_unified_diff_old_to_new(etc, tmp_path):
    run(etc)
    old = b"".join(b"line %d\n" % i for i in range(30))
    etc.write("/etc/motd", old)
    run(etc)
    new = old.replace(b"line 7\n", b"line seven\n") + b"tail"
    etc.write("/etc/motd", new)
    result = run(etc, now=NOW)
    record = by_path(result)["/etc/motd"]
    assert record["change"] == "content"
    head, second, body = record["diff"].encode().split(b"\n", 2)
    assert head.startswith(b"--- /etc/motd\t") and second.startswith(b"+++ /etc/motd\t")
    assert body == gnu_diff_body(tmp_path, old, new)
    assert record["cut"] == 0
    # The previous content is kept as a dated copy, named when it was replaced.
    stamp = time.strftime("%m.%d.%y__%H.%M", time.localtime(NOW))
    assert "orig." + stamp in backups(etc, "/etc/motd")
    dated = etc.host("/var/lib/systraq/filetraq/etc/motd/orig." + stamp)
    assert open(dated, "rb").read() == old
    assert run(etc).records == []


def test_diffs_are_capped_with_a_count_of_what_was_cut(etc):
    run(etc)
    etc.write("/etc/motd", "".join(f"new {i}\n" for i in range(300)))
    record = by_path(run(etc, "max_diff_lines = 10\n"))["/etc/motd"]
    lines = record["diff"].split("\n")
    assert len(lines) == 11 and lines[-1] == ""
    # 2 header lines, 1 hunk line, 1 removed, 300 added: 304 in all.
    assert record["cut"] == 294


def test_binary_and_large_files_get_a_notice_without_content(etc):
    run(etc)
    etc.write("/etc/bin.dat", b"\x7fELF\0\0\2 and more")
    etc.write("/etc/hosts", "x" * 5000 + "\n")
    result = run(etc, "max_size = 4K\n")
    records = by_path(result)
    assert records["/etc/bin.dat"]["binary"] and "diff" not in records["/etc/bin.dat"]
    assert records["/etc/bin.dat"]["size_before"] == 7
    assert "diff" not in records["/etc/hosts"]
    assert "above max_size (4096 bytes)" in records["/etc/hosts"]["note"]
    # A large file has no backup: its old copy became a dated one.
    assert [n for n in backups(etc, "/etc/hosts") if n == "orig"] == []


def test_a_new_file_under_etc_is_reported_with_its_content_at_the_next_run(etc):
    run(etc)
    # Not in filetraq.conf: the list was generated before the file came.
    etc.write("/etc/cron.d/job", "* * * * * root /tmp/x\n")
    result = run(etc)
    record = by_path(result)["/etc/cron.d/job"]
    assert record["change"] == "created"
    assert record["diff"].split("\n")[2:4] == ["@@ -0,0 +1 @@", "+* * * * * root /tmp/x"]
    assert spooled(etc)[-1]["path"] == "/etc/cron.d/job"


def test_removed_and_replaced_by_symlink_files_are_recorded(etc):
    etc.write("/etc/passwd-secret", "only root\n", mode=0o600)
    run(etc)
    os.unlink(etc.host("/etc/hosts"))
    os.unlink(etc.host("/etc/motd"))
    etc.symlink("/etc/passwd-secret", "/etc/motd")
    result = run(etc)
    assert changes(result) == [("/etc/hosts", "removed"), ("/etc/motd", "symlink")]
    record = by_path(result)["/etc/motd"]
    assert record["target"] == "/etc/passwd-secret"
    assert "only root" not in str(result.records)
    # The last content is kept as a dated copy; nothing is current.
    assert [n for n in backups(etc, "/etc/hosts") if n == "orig"] == []
    assert len(backups(etc, "/etc/hosts")) == 1
    assert run(etc).records == []


def test_a_file_turned_0600_gets_a_notice_and_its_backups_are_closed(etc):
    run(etc)
    etc.write("/etc/hosts", "127.0.0.1 localhost\n10.1.1.1 db\n")
    run(etc, now=NOW)
    os.chmod(etc.host("/etc/hosts"), 0o600)
    result = run(etc)
    assert changes(result) == [("/etc/hosts", "not world-readable")]
    assert "diff" not in result.records[0]
    names = backups(etc, "/etc/hosts")
    assert "orig" not in names and len(names) == 2
    for name in names:
        mode = os.stat(etc.host(f"/var/lib/systraq/filetraq/etc/hosts/{name}")).st_mode
        assert stat.S_IMODE(mode) == 0o600
    # A later change to the closed file is not shown.
    etc.write("/etc/hosts", "changed while closed\n", mode=0o600)
    assert run(etc).records == []


def test_a_file_in_a_closed_directory_is_not_world_readable(etc):
    etc.write("/etc/ssl/private/site.conf", "key material\n")
    os.chmod(etc.host("/etc/ssl/private"), 0o710)
    result = run(etc)
    assert backups(etc, "/etc/ssl/private/site.conf") == []
    assert result.records[0]["count"] == 6


def test_a_backup_is_never_more_readable_than_its_source(etc):
    etc.write("/etc/odd", "others only\n", mode=0o604)
    run(etc)
    mode = os.stat(etc.host("/var/lib/systraq/filetraq/etc/odd/orig")).st_mode
    assert stat.S_IMODE(mode) == 0o600
    mode = os.stat(etc.host("/var/lib/systraq/filetraq/etc/hosts/orig")).st_mode
    assert stat.S_IMODE(mode) == 0o640
    assert stat.S_IMODE(os.stat(etc.host("/var/lib/systraq/filetraq")).st_mode) == 0o750


def test_world_readable_secrets_are_a_warning_never_content(etc):
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
    etc.write("/etc/ssh/ssh_host_ed25519_key", key)
    etc.write("/etc/ssl/private/site.pem", "pem secret\n")
    result = run(etc)
    records = by_path(result)
    assert records["/etc/ssh/ssh_host_ed25519_key"]["change"] == "world-readable secret"
    assert records["/etc/ssh/ssh_host_ed25519_key"]["warning"] is True
    assert records["/etc/ssl/private/site.pem"]["change"] == "world-readable secret"
    assert backups(etc, "/etc/ssh/ssh_host_ed25519_key") == []
    etc.write("/etc/ssh/ssh_host_ed25519_key", key + "AAAA\n")
    result = run(etc)
    assert changes(result) == [("/etc/ssh/ssh_host_ed25519_key", "secret changed")]
    assert "BEGIN" not in str(spooled(etc))
    os.chmod(etc.host("/etc/ssh/ssh_host_ed25519_key"), 0o600)
    assert changes(run(etc)) == [("/etc/ssh/ssh_host_ed25519_key", "secret closed")]


def test_control_characters_and_non_utf_8_bytes_are_escaped(etc):
    run(etc)
    etc.write("/etc/motd", b"caf\xe9 \x1b[2J\r\n")
    diff = by_path(run(etc))["/etc/motd"]["diff"]
    assert "+caf\\xe9 \\x1b[2J\\r\n" in diff
    assert "\x1b" not in diff


def test_files_that_change_by_themselves_are_ignored(etc):
    etc.write("/etc/adjtime", "0.0 0 0.0\n")
    run(etc)
    etc.write("/etc/adjtime", "0.1 0 0.0\n")
    assert run(etc).records == []
    assert b"/etc/adjtime" not in open(etc.host("/etc/systraq/filetraq.conf"), "rb").read()


def test_the_tail_adds_files_outside_etc(etc):
    etc.write("/etc/systraq/filetraq.tail.conf", "/srv/app/app.conf\n")
    etc.write("/srv/app/app.conf", "debug = false\n")
    run(etc)
    etc.write("/srv/app/app.conf", "debug = true\n")
    assert changes(run(etc)) == [("/srv/app/app.conf", "content")]


# --- authorized_keys ---------------------------------------------------------------

def keygen(tmp_path, name, comment):
    path = tmp_path / name
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], env={**ENV, "HOME": str(tmp_path)}, check=True)
    line = path.with_suffix(".pub").read_bytes()
    printed = subprocess.run([SSH_KEYGEN, "-lf", str(path.with_suffix(".pub"))],
                             env={**ENV, "HOME": str(tmp_path)}, check=True,
                             capture_output=True).stdout.decode().split()
    return line, printed[1]


@pytest.mark.skipif(not os.path.exists(SSH_KEYGEN), reason="ssh-keygen is not installed")
def test_authorized_keys_changes_are_keys_added_and_removed(etc, tmp_path):
    first, first_print = keygen(tmp_path, "k1", "alice@laptop")
    second, second_print = keygen(tmp_path, "k2", "mallory@evil")
    etc.write("/home/alice/.ssh/authorized_keys", first)
    run(etc)
    etc.write("/home/alice/.ssh/authorized_keys", second)
    record = by_path(run(etc))["/home/alice/.ssh/authorized_keys"]
    assert record["change"] == "keys"
    assert record["keys"] == [f"added: ssh-ed25519 256 {second_print} mallory@evil",
                              f"removed: ssh-ed25519 256 {first_print} alice@laptop"]
    assert "diff" not in record


@AS_ROOT
@pytest.mark.skipif(not os.path.exists(SSH_KEYGEN), reason="ssh-keygen is not installed")
def test_root_mode_reads_keys_of_closed_homes_and_never_follows_links(etc, tmp_path):
    first, _ = keygen(tmp_path, "k1", "bob@home")
    second, second_print = keygen(tmp_path, "k2", "bob@work")
    etc.write("/home/bob/.ssh/authorized_keys", first, mode=0o600)
    os.chmod(etc.host("/home/bob"), 0o700)
    etc.write("/root/.ssh/secret", "root only\n", mode=0o600)
    result = run(etc, mode="root")
    assert result.baseline
    # The pub mode does not see them: the home is closed.
    assert backups(etc, "/home/bob/.ssh/authorized_keys") == []
    etc.write("/home/bob/.ssh/authorized_keys", first + second, mode=0o600)
    etc.symlink("/root/.ssh/secret", "/home/alice/.ssh/authorized_keys2")
    result = run(etc, mode="root")
    records = by_path(result)
    assert records["/home/bob/.ssh/authorized_keys"]["keys"] == [
        f"added: ssh-ed25519 256 {second_print} bob@work"]
    assert records["/home/alice/.ssh/authorized_keys2"]["change"] == "symlink"
    assert "root only" not in str(result.records)
    state = etc.host("/var/lib/systraq/root/contents_root.state")
    assert stat.S_IMODE(os.stat(state).st_mode) == 0o600
    assert run(etc, mode="root").records == []
    # Opened to everybody: the pub mode shows it from now on, and the
    # root mode lets it go without calling it removed.
    os.chmod(etc.host("/home/bob"), 0o755)
    os.chmod(etc.host("/home/bob/.ssh"), 0o755)
    os.chmod(etc.host("/home/bob/.ssh/authorized_keys"), 0o644)
    assert run(etc, mode="root").records == []


# --- the generated list ---------------------------------------------------------------

def test_lists_writes_main_and_conf_with_the_tail(etc, capsys):
    etc.write("/etc/systraq/filetraq.tail.conf", "# mine\n/srv/x.conf")
    etc.write("/etc/we ird*name", "x\n")
    etc.write("/home/alice/.ssh/authorized_keys", "")
    assert main(["--root", os.fsdecode(etc.path), "lists"]) == 0
    assert capsys.readouterr() == ("", "")
    main_conf = open(etc.host("/etc/systraq/filetraq.main.conf"), "rb").read()
    entries = [line for line in main_conf.split(b"\n") if line and not line.startswith(b"#")]
    assert entries == [b"/etc/bin.dat", b"/etc/cron.d/.placeholder", b"/etc/hosts",
                       b"/etc/motd", b"/etc/passwd", b"/etc/systraq/filetraq.tail.conf",
                       b"/etc/we ird[*]name", b"/home/alice/.ssh/authorized_keys"]
    conf_text = open(etc.host("/etc/systraq/filetraq.conf"), "rb").read()
    assert conf_text.endswith(main_conf + b"# mine\n/srv/x.conf\n")
    assert conf_text.startswith(listgen.CONF_HEADER)


def test_entries_name_exactly_their_file(root):
    assert listgen.entry_for(b"/etc/a*b") == b"/etc/a[*]b"
    assert listgen.entry_for(b"/etc/new\nline") == b"/etc/new?line"
    assert listgen.entry_for(b"/etc/trailing ") == b"/etc/trailing?"


def test_a_new_users_keys_are_covered_within_one_cycle(etc, tmp_path):
    run(etc)
    etc.write("/home/carol/.ssh/authorized_keys", "ssh-ed25519 AAAA carol\n")
    with open(etc.host("/etc/passwd"), "ab") as handle:
        handle.write(b"carol:x:1003:1003::/home/carol:/bin/bash\n")
    result = run(etc)
    assert result.lists is not None
    assert b"/home/carol/.ssh/authorized_keys\n" in open(
        etc.host("/etc/systraq/filetraq.conf"), "rb").read()
    assert "/home/carol/.ssh/authorized_keys" in by_path(result)
    # Nothing changed since: the lists are not written again.
    assert run(etc).lists is None


def test_a_package_operation_stamped_by_the_trigger_regenerates_the_list(etc):
    run(etc)
    assert run(etc).lists is None
    # A package installed a file under /etc, and its dpkg trigger could
    # not write the lists (it never fails, it may do nothing).
    etc.write("/etc/newpkg.conf", "x = 1\n")
    stamp = etc.host("/var/lib/systraq/package-operation")
    etc.write("/var/lib/systraq/package-operation", "")
    later = os.stat(etc.host("/var/lib/systraq/lists.state")).st_mtime + 10
    os.utime(stamp, (later, later))
    result = run(etc)
    assert result.lists is not None
    assert b"/etc/newpkg.conf\n" in open(etc.host("/etc/systraq/filetraq.conf"), "rb").read()
    os.utime(etc.host("/var/lib/systraq/lists.state"), (later + 1, later + 1))
    assert run(etc).lists is None


def test_a_package_operation_during_the_search_is_searched_again(etc, monkeypatch):
    """The trigger stamps after dpkg unpacked; a contents run whose search
    under /etc came before the unpack, but whose state was written after
    the stamp, must not take the lists for covering it."""
    run(etc)
    search = listgen.etc_files

    def dpkg_unpacks_during_the_search(settings, ignore):
        found = search(settings, ignore)
        etc.write("/etc/late.conf", "x = 1\n")
        etc.write("/var/lib/systraq/package-operation", "")
        return found

    monkeypatch.setattr(listgen, "etc_files", dpkg_unpacks_during_the_search)
    etc.write("/etc/systraq/filetraq.tail.conf", "# edited\n")   # a reason to write them
    assert run(etc).lists is not None
    assert b"/etc/late.conf\n" not in open(etc.host("/etc/systraq/filetraq.conf"), "rb").read()
    monkeypatch.setattr(listgen, "etc_files", search)
    assert listgen.stale(etc.settings()) == "a package operation changed /etc"
    assert run(etc).lists is not None
    assert b"/etc/late.conf\n" in open(etc.host("/etc/systraq/filetraq.conf"), "rb").read()
    assert run(etc).lists is None


def test_an_edited_tail_regenerates_the_list(etc):
    run(etc)
    etc.write("/etc/systraq/filetraq.tail.conf", "/srv/new.conf\n")
    etc.write("/srv/new.conf", "x\n")
    result = run(etc)
    assert result.lists is not None
    assert ("/srv/new.conf", "created") in changes(result)


# --- backups the old package left ----------------------------------------------------

@pytest.fixture
def upgraded(root):
    """A root as the old package left it: filetraq's backups, made by the
    real script (tests/unit/fixtures/filetraq), and the files since."""
    shutil.copytree(os.path.join(FIXTURE, "source", "etc"), os.fsdecode(root.host("/etc")),
                    dirs_exist_ok=True)
    shutil.copytree(os.path.join(FIXTURE, "backups"),
                    os.fsdecode(root.host("/var/lib/systraq/filetraq")))
    # cp -p under umask 022 made them 0644 (git keeps no modes); one was
    # left 0666, as the old package kept /etc/sudoers after a chmod.
    os.chmod(root.host("/var/lib/systraq/filetraq/etc/motd/orig"), 0o666)
    return root


def test_old_filetraq_backups_are_taken_over(upgraded):
    top = upgraded.host("/var/lib/systraq/filetraq")
    newest = max(os.stat(os.path.join(d, f)).st_ctime
                 for d, _, files in os.walk(top) for f in files)
    upgraded.write("/etc/hosts", open(upgraded.host("/etc/hosts"), "rb").read()
                   + b"192.0.2.99\tnew\n")
    result = run(upgraded, now=NOW)
    records = by_path(result)
    assert records["/etc/hosts"]["change"] == "content"
    assert "+192.0.2.99\tnew" in records["/etc/hosts"]["diff"].split("\n")
    assert records["/etc/gone.conf"]["change"] == "removed"
    # Files filetraq never backed up (it split names at spaces) are new.
    assert records["/etc/name with spaces.conf"]["change"] == "created"
    baseline = records["/var/lib/systraq/filetraq"]
    assert baseline["adopted"] == 5
    # The report looks for package operations from when the backups were
    # last written on (before this run tightened their modes).
    assert records["/etc/hosts"]["since"] == stamp(newest) == records["/etc/gone.conf"]["since"]
    # Retention: the dated copies of March 2025 are gone, November's stays.
    names = backups(upgraded, "/etc/hosts")
    assert "orig.03.14.25__12.00" not in names and "orig.11.01.26__10.30" in names
    assert backups(upgraded, "/etc/bin.dat") == ["orig"]
    mode = os.stat(upgraded.host("/var/lib/systraq/filetraq/etc/motd/orig")).st_mode
    assert stat.S_IMODE(mode) == 0o640


def test_retention_is_configurable(upgraded):
    run(upgraded, "retention_days = 0\n", now=NOW)
    assert "orig.03.14.25__12.00" in backups(upgraded, "/etc/hosts")


# --- crash safety and locking ---------------------------------------------------------

class Killed(Exception):
    pass


@pytest.mark.parametrize("point", ["before spooling", "after spooling"])
def test_a_run_killed_while_committing_loses_and_repeats_nothing(etc, monkeypatch, point):
    run(etc)
    etc.write("/etc/hosts", "127.0.0.1 localhost\n10.9.9.9 new\n")
    original = Spool.add
    apply = contents.Backups.apply

    def add(self, *args, **kwargs):
        if point == "before spooling":
            raise Killed()
        return original(self, *args, **kwargs)

    def dying_apply(self, update):
        raise Killed()

    monkeypatch.setattr(Spool, "add", add)
    monkeypatch.setattr(contents.Backups, "apply", dying_apply)
    with pytest.raises(Killed):
        run(etc)
    monkeypatch.setattr(Spool, "add", original)
    monkeypatch.setattr(contents.Backups, "apply", apply)
    result = run(etc)
    hosts = [r for r in spooled(etc) if r["path"] == "/etc/hosts"]
    assert len(hosts) == 1 and "+10.9.9.9 new" in hosts[0]["diff"]
    if point == "before spooling":
        assert changes(result) == [("/etc/hosts", "content")]
    else:
        assert result.records == []
    orig = etc.host("/var/lib/systraq/filetraq/etc/hosts/orig")
    assert open(orig, "rb").read() == b"127.0.0.1 localhost\n10.9.9.9 new\n"
    assert not os.path.exists(etc.host("/var/lib/systraq/filetraq/etc/hosts/.orig.next"))
    assert run(etc).records == []


def test_a_second_run_gives_up_with_status_3(etc, capsys, monkeypatch):
    from systraq.fsutil import exclusive_lock
    monkeypatch.setattr(contents, "LOCK_WAIT", 0.2)
    os.makedirs(etc.host("/var/lib/systraq"), exist_ok=True)
    with exclusive_lock(etc.host("/var/lib/systraq/contents_pub.lock"), 0):
        assert main(["--root", os.fsdecode(etc.path), "contents"]) == 3
    assert "another 'systraq contents --mode pub' is running" in capsys.readouterr().err
