# SPDX-License-Identifier: GPL-2.0-or-later
import os

import pytest

from systraq.settings import Settings


def test_host_root_paths_are_the_real_ones():
    settings = Settings()
    assert settings.root == b"/"
    assert settings.config_file == b"/etc/systraq/systraq.conf"
    assert settings.state_dir == b"/var/lib/systraq"
    assert settings.spool_dir == b"/var/lib/systraq/spool"
    assert settings.host(b"/etc/../etc/shadow") == b"/etc/shadow"


def test_every_path_lies_below_the_root(root):
    settings = root.settings()
    for value in vars(settings).values():
        if isinstance(value, bytes) and value != settings.root:
            assert value.startswith(settings.root + b"/"), value
    for _name, _kind, path in settings.list_files():
        assert path.startswith(settings.root + b"/etc/systraq/")


@pytest.mark.parametrize("logical", [
    b"/..", b"/../../etc/passwd", b"/etc/../../../etc/passwd",
    b"//etc/passwd", b"/./etc/./passwd", b"/etc/systraq/../../../../..",
])
def test_dot_dot_never_climbs_above_the_root(root, logical):
    settings = root.settings()
    host = settings.host(logical)
    assert host == settings.root or host.startswith(settings.root + b"/")
    assert settings.logical(host).startswith(b"/")


def test_relative_paths_are_refused(root):
    with pytest.raises(ValueError):
        root.settings().host(b"etc/passwd")


def test_logical_refuses_paths_outside_the_root(root):
    settings = root.settings()
    with pytest.raises(ValueError):
        settings.logical(b"/etc/passwd")
    with pytest.raises(ValueError):
        settings.logical(settings.root + b"-sibling/x")


def test_contains_sees_through_symlinks(root):
    settings = root.settings()
    root.symlink("/etc", "/etc/escape")
    root.symlink("systraq", "/etc/inside")
    assert not settings.contains(root.host("/etc/escape"))
    assert settings.contains(root.host("/etc/inside"))


def test_glob_pattern_escapes_the_root_itself(tmp_path):
    odd = tmp_path / "root[1]*"
    odd.mkdir()
    settings = Settings(root=odd)
    assert settings.host_glob(b"/etc/*") == (
        os.fsencode(tmp_path) + b"/root[[]1][*]/etc/*")


def test_config_file_given_on_the_command_line_is_taken_as_is(root):
    settings = root.settings(config_file="/srv/other.conf")
    assert settings.config_file == b"/srv/other.conf"


def test_follow_resolves_links_as_a_chroots_kernel_would(root):
    settings = root.settings()
    os.makedirs(root.host("/var/lib/wtmpdb"))
    os.makedirs(root.host("/var/log"))
    os.symlink("../../log/wtmp.db", root.host("/var/lib/wtmpdb/wtmp.db"))
    assert settings.follow(b"/var/lib/wtmpdb/wtmp.db") == b"/var/log/wtmp.db"
    # An absolute target starts again at the root, never at the host's /.
    os.symlink("/var/log", root.host("/logs"))
    os.symlink("/../../../etc", root.host("/var/up"))
    assert settings.follow(b"/logs/x") == b"/var/log/x"
    assert settings.follow(b"/var/up/passwd") == b"/etc/passwd"
    assert settings.follow("/var/./log/../log/none") == b"/var/log/none"
    os.symlink("loop", root.host("/var/loop"))
    with pytest.raises(OSError) as caught:
        settings.follow(b"/var/loop")
    assert caught.value.errno == 40   # ELOOP
