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
