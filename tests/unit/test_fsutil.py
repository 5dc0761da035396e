# SPDX-License-Identifier: GPL-2.0-or-later
import os

import pytest

from systraq import fsutil


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path):
    target = os.fsencode(tmp_path / "state")
    fsutil.atomic_write(target, b"one")
    fsutil.atomic_write(target, b"two", mode=0o600)
    assert open(target, "rb").read() == b"two"
    assert os.stat(target).st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["state"]


def test_a_file_written_for_a_group_is_readable_by_it_whatever_the_umask(tmp_path):
    target = os.fsencode(tmp_path / "batch")
    old = os.umask(0o077)
    try:
        fsutil.atomic_write(target, b"records", mode=0o640, group=os.getgid())
        fsutil.atomic_write(target + b".own", b"state", mode=0o640)
    finally:
        os.umask(old)
    assert os.stat(target).st_mode & 0o777 == 0o640
    # Without a group, the umask still narrows the mode.
    assert os.stat(target + b".own").st_mode & 0o777 == 0o600


def test_a_failed_write_keeps_the_old_content(tmp_path, monkeypatch):
    target = os.fsencode(tmp_path / "state")
    fsutil.atomic_write(target, b"old")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        fsutil.atomic_write(target, b"new")
    monkeypatch.undo()
    assert open(target, "rb").read() == b"old"
    assert os.listdir(tmp_path) == ["state"]


def test_atomic_write_never_writes_through_a_planted_symlink(tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    target = os.fsencode(tmp_path / "state")
    monkeypatch.setattr(os, "urandom", lambda n: b"\0" * n)   # a guessable name
    temp = os.fsencode(tmp_path) + b"/" + fsutil.TEMP_PREFIX + b"state." + b"00" * 6
    os.symlink(victim, temp)
    with pytest.raises(FileExistsError):
        fsutil.atomic_write(target, b"data")
    assert victim.read_bytes() == b"keep"
    assert not os.path.exists(target)


def test_open_untrusted_opens_only_the_regular_file_lstat_saw(tmp_path):
    import stat
    from systraq.fsutil import NotRegular, open_untrusted, read_untrusted
    (tmp_path / "file").write_bytes(b"content\n")
    (tmp_path / "other").write_bytes(b"other\n")
    os.symlink("/etc/shadow", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    data, info = read_untrusted(os.fsencode(tmp_path / "file"))
    assert data == b"content\n" and stat.S_ISREG(info.st_mode)
    assert read_untrusted(os.fsencode(tmp_path / "file"), limit=3)[0] == b"con"
    # A link is never followed, a FIFO never opened (it would block).
    for name, kind in (("link", stat.S_IFLNK), ("fifo", stat.S_IFIFO)):
        with pytest.raises(NotRegular) as caught:
            open_untrusted(os.fsencode(tmp_path / name))
        assert caught.value.kind == kind
    # Swapped between the caller's lstat and the open: refused.
    seen = os.lstat(tmp_path / "other")
    with pytest.raises(NotRegular) as caught:
        open_untrusted(os.fsencode(tmp_path / "file"), seen=seen)
    assert caught.value.kind is None
    # Relative to a directory descriptor, as the walks open files.
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert read_untrusted(b"file", dir_fd=fd)[0] == b"content\n"
    finally:
        os.close(fd)
