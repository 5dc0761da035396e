# SPDX-License-Identifier: GPL-2.0-or-later
import os
import tempfile

import pytest

from systraq import lists
from systraq.errors import ConfigError
from systraq.settings import Settings
from tests.unit.conftest import as_nobody


def write_list(root, name, text):
    return root.write(f"/etc/systraq/{name}", text)


def expand(root, text, kind="system", exclude=(), name="test.list"):
    path = write_list(root, name, text)
    return lists.expand(root.settings(), lists.parse(path, kind), kind, exclude)


# --- parsing ---------------------------------------------------------------

def test_comments_blank_lines_and_surrounding_blanks_are_ignored(root):
    path = write_list(root, "a.list",
                      b"# a comment\n\n   \n  /etc/passwd  \n\t# indented comment\n"
                      b"/etc/ssh/\r\n/\n/etc/with#hash\n")
    entries = lists.parse(path, "system")
    assert [(e.pattern, e.line) for e in entries] == [
        (b"/etc/passwd", 4), (b"/etc/ssh", 6), (b"/", 7), (b"/etc/with#hash", 8)]


def test_broken_lines_are_all_named_with_file_and_line(root):
    path = write_list(root, "bad.list",
                      b"/etc/ok\netc/relative\n/etc/nul\0byte\n# fine\nrelative/too\n")
    with pytest.raises(ConfigError) as info:
        lists.parse(path, "system")
    name = os.fsdecode(path)
    assert info.value.lines() == [
        f"{name}:2: not an absolute path: 'etc/relative'",
        f"{name}:3: contains a NUL byte",
        f"{name}:5: not an absolute path: 'relative/too'",
    ]
    assert info.value.exit_status == 2


def test_home_list_entries_must_stay_in_the_home(root):
    path = write_list(root, "bad.homelist", b".bashrc\n/etc/passwd\n../bob/.bashrc\n.ssh/../..\n")
    with pytest.raises(ConfigError) as info:
        lists.parse(path, "home")
    lines = info.value.lines()
    assert [line.split(":")[1] for line in lines] == ["2", "3", "4"]
    assert "relative to each home directory" in lines[0]
    assert "'..' would leave the home directory" in lines[1]


def test_a_missing_list_is_named(root):
    with pytest.raises(lists.MissingListFile) as info:
        lists.parse(root.host("/etc/systraq/nope.list"), "system")
    assert info.value.lines() == [f"{os.fsdecode(root.host('/etc/systraq/nope.list'))}: no such file"]


def test_non_utf8_entries_are_kept_as_bytes(root):
    path = write_list(root, "a.list", b"/etc/caf\xe9\n")
    assert lists.parse(path, "system")[0].pattern == b"/etc/caf\xe9"


# --- expansion -------------------------------------------------------------

def test_literal_paths_and_what_matches_nothing(root):
    root.write("/etc/hosts")
    found = expand(root, "/etc/hosts\n/etc/absent\n")
    assert found.paths == [b"/etc/hosts"]
    assert [(e.pattern, e.line) for e in found.missing] == [(b"/etc/absent", 2)]


def test_wildcards_follow_the_shell(root):
    for name in ("a.conf", "b.conf", "c.txt", ".hidden.conf", "d1", "d2", "dx"):
        root.write(f"/etc/w/{name}")
    assert expand(root, "/etc/w/*.conf\n").paths == [b"/etc/w/a.conf", b"/etc/w/b.conf"]
    assert expand(root, "/etc/w/.*.conf\n").paths == [b"/etc/w/.hidden.conf"]
    assert expand(root, "/etc/w/d?\n").paths == [b"/etc/w/d1", b"/etc/w/d2", b"/etc/w/dx"]
    assert expand(root, "/etc/w/d[0-9]\n").paths == [b"/etc/w/d1", b"/etc/w/d2"]
    assert expand(root, "/etc/*/c.txt\n").paths == [b"/etc/w/c.txt"]
    assert [e.pattern for e in expand(root, "/etc/w/*.none\n").missing] == [b"/etc/w/*.none"]


def test_a_directory_means_everything_below_it(root):
    root.write("/etc/cron.d/job")
    root.write("/etc/cron.d/.hidden")
    root.write("/etc/cron.d/sub/deeper/file")
    root.mkdir("/etc/cron.d/empty")
    assert expand(root, "/etc/cron.d\n").paths == [
        b"/etc/cron.d", b"/etc/cron.d/.hidden", b"/etc/cron.d/empty",
        b"/etc/cron.d/job", b"/etc/cron.d/sub", b"/etc/cron.d/sub/deeper",
        b"/etc/cron.d/sub/deeper/file"]


def test_overlapping_entries_name_each_path_once(root):
    root.write("/etc/ssh/sshd_config")
    found = expand(root, "/etc/ssh\n/etc/ssh/sshd_config\n/etc/ss*\n")
    assert found.paths == [b"/etc/ssh", b"/etc/ssh/sshd_config"]


def test_symlinks_are_listed_never_followed(root):
    root.write("/etc/real/file")
    root.symlink("/etc/real", "/etc/dirlink")
    root.symlink("real/file", "/etc/filelink")
    found = expand(root, "/etc/dirlink\n/etc/filelink\n/etc/real\n")
    assert found.paths == [b"/etc/dirlink", b"/etc/filelink", b"/etc/real", b"/etc/real/file"]


def test_symlinks_leaving_the_root_are_not_used(root):
    # Absolute symlinks in a fake root point at the real system: a run on
    # that root must neither list nor walk what they point at.
    root.symlink("/etc", "/srv/hostetc")
    root.symlink("/", "/srv/hostroot")
    found = expand(root, "/srv/hostetc/passwd\n/srv/hostroot/etc/*\n/srv\n")
    assert found.paths == [b"/srv", b"/srv/hostetc", b"/srv/hostroot"]
    assert sorted(e.pattern for e in found.missing) == [
        b"/srv/hostetc/passwd", b"/srv/hostroot/etc/*"]


def test_dot_dot_in_entries_stays_in_the_root(root):
    root.write("/etc/hosts")
    found = expand(root, "/../../../etc/hosts\n/etc/../../etc/hosts\n")
    assert found.paths == [b"/etc/hosts"]


def test_pseudo_filesystems_and_excluded_paths_are_not_walked(root):
    root.write("/proc/1/status")
    root.write("/run/lock/x")
    root.write("/var/cache/big/file")
    root.write("/var/lib/dpkg/status")
    found = expand(root, "/\n", exclude=(b"/var/cache",))
    assert b"/proc" not in found.paths and b"/run" not in found.paths
    assert b"/proc/1/status" not in found.paths
    assert b"/run/lock" not in found.paths
    assert b"/var/cache" not in found.paths and b"/var/cache/big/file" not in found.paths
    assert b"/var/lib/dpkg/status" in found.paths


def test_an_explicitly_listed_path_below_an_exclusion_is_kept(root):
    root.write("/run/sshd.pid")
    root.write("/proc/1/status")
    found = expand(root, "/run/sshd.pid\n/proc\n")
    assert found.paths == [b"/proc", b"/run/sshd.pid"]   # /proc listed, not walked


ODD = [b"with space", b"new\nline", b"tab\there", b"back\\slash", b"latin1-\xe9\xff",
       b"esc\x1b[2J", b"-leading-dash", b"*star?"]


def test_odd_names_survive_directory_walks(root):
    for name in ODD:
        root.write(b"/etc/odd/" + name)
    found = expand(root, "/etc/odd\n")
    assert found.paths == sorted([b"/etc/odd"] + [b"/etc/odd/" + n for n in ODD])


def test_odd_names_are_matched_by_wildcards(root):
    for name in ODD:
        root.write(b"/etc/odd/" + name)
    assert expand(root, b"/etc/odd/new?line\n").paths == [b"/etc/odd/new\nline"]
    assert expand(root, b"/etc/odd/latin1-\xe9*\n").paths == [b"/etc/odd/latin1-\xe9\xff"]
    assert expand(root, b"/etc/odd/with space\n").paths == [b"/etc/odd/with space"]
    assert expand(root, b"/etc/odd/[*]star[?]\n").paths == [b"/etc/odd/*star?"]


def test_odd_names_in_the_root_itself(tmp_path):
    from tests.unit.conftest import FakeRoot
    fake = FakeRoot(tmp_path / "a [weird]*root?\n")
    fake.write("/etc/x/file")
    settings = fake.settings()
    path = fake.write("/etc/systraq/l.list", "/etc/x/*\n")
    found = lists.expand(settings, lists.parse(path, "system"), "system")
    assert found.paths == [b"/etc/x/file"]


# --- home lists ------------------------------------------------------------

def test_home_lists_expand_below_every_home_but_slash(root):
    root.write("/root/.bashrc")
    root.write("/home/alice/.bashrc")
    root.write("/home/alice/.forward")
    root.write("/home/alice/.forward2")
    root.write("/home/bob/.zshrc")
    root.write("/home/bob/etc/profile")
    root.write("/.bashrc")            # home of 'slash' is '/': never looked at
    found = expand(root, ".bashrc\n.forward*\n.zshrc\netc\n", kind="home", name="t.homelist")
    assert found.paths == [
        b"/home/alice/.bashrc", b"/home/alice/.forward", b"/home/alice/.forward2",
        b"/home/bob/.zshrc", b"/home/bob/etc", b"/home/bob/etc/profile", b"/root/.bashrc"]
    # /root, /usr/sbin, /home/alice, /home/bob (once, shared), /var/lib/systraq;
    # /nonexistent is skipped.
    assert found.homes == 5
    assert found.missing == []


def test_home_directories_from_the_hosts_database_when_root_is_slash():
    from systraq import accounts
    homes = accounts.home_directories(Settings())
    assert b"/" not in homes
    assert len(homes) == len(set(homes))


# --- what this user cannot read -------------------------------------------

def test_unreadable_directories_and_homes_are_counted_once():
    # A world-traversable tree (pytest's own tmp directory is private to root).
    top = tempfile.mkdtemp(prefix="systraq-test-", dir="/tmp")
    try:
        from tests.unit.conftest import PASSWD, FakeRoot
        os.chmod(top, 0o755)
        fake = FakeRoot(os.path.join(top, "root"))
        fake.write("/etc/passwd", PASSWD)
        fake.write("/etc/ssl/private/key.pem", mode=0o600)
        fake.write("/etc/ssl/certs/ca.pem")
        fake.write("/home/alice/.bashrc")
        fake.write("/home/bob/.bashrc")
        os.chmod(fake.host("/etc/ssl/private"), 0o700)
        os.chmod(fake.host("/home/alice"), 0o700)
        for path in (fake.path, fake.host("/etc"), fake.host("/home")):
            os.chmod(path, 0o755)
        syslist = fake.write("/etc/systraq/s.list", "/etc/ssl\n")
        homelist = fake.write("/etc/systraq/h.homelist", ".bashrc\n")
        settings = fake.settings()

        def run():
            system = lists.expand(settings, lists.parse(syslist, "system"), "system")
            home = lists.expand(settings, lists.parse(homelist, "home"), "home")
            return system.paths, system.unreadable, home.paths, home.unreadable

        paths, unreadable, home_paths, home_unreadable = as_nobody(run)
        if os.geteuid() == 0:
            assert unreadable == [b"/etc/ssl/private"]
            assert b"/etc/ssl/private" in paths           # it exists; its inside is unknown
            assert b"/etc/ssl/private/key.pem" not in paths
            assert home_unreadable == [b"/home/alice"]
            assert home_paths == [b"/home/bob/.bashrc"]
    finally:
        import shutil
        shutil.rmtree(top)
