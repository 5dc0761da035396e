# SPDX-License-Identifier: GPL-2.0-or-later
"""Fixtures: a fake system root in a temporary directory.

Every test that needs system files builds them below ``root`` and points a
Settings object at it; nothing here reads or writes the real /etc or /var.
"""

import os
import pickle
import tempfile
import time

import pytest

from systraq.settings import Settings

PASSWD = b"""\
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
slash:x:998:998::/:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/bash
bob:x:1001:1001:Bob:/home/bob/:/bin/zsh
twin:x:1002:1002:shares bob's home:/home/bob:/bin/sh
debian-systraq:x:999:999::/var/lib/systraq:/usr/sbin/nologin
"""


class FakeRoot:
    """A directory tree standing in for '/', with helpers to populate it."""

    def __init__(self, path):
        self.path = os.fsencode(path)

    def host(self, logical):
        if isinstance(logical, str):
            logical = os.fsencode(logical)
        return self.path + logical

    def write(self, logical, data=b"", mode=0o644):
        path = self.host(logical)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        with open(path, "wb") as handle:
            handle.write(data)
        os.chmod(path, mode)
        return path

    def mkdir(self, logical, mode=0o755):
        path = self.host(logical)
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)
        return path

    def symlink(self, target, logical):
        path = self.host(logical)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        os.symlink(target, path)
        return path

    def settings(self, **kwargs):
        return Settings(root=self.path, **kwargs)


@pytest.fixture
def root(tmp_path):
    fake = FakeRoot(tmp_path / "root")
    fake.write("/etc/passwd", PASSWD)
    for home in ("/root", "/home/alice", "/home/bob", "/usr/sbin", "/var/lib/systraq"):
        fake.mkdir(home)
    fake.mkdir("/etc/systraq")
    return fake


def as_nobody(function):
    """Run ``function`` in a child process as uid/gid 65534 and return its result."""
    if os.geteuid() != 0:
        return function()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read)
            os.setgroups([])
            os.setresgid(65534, 65534, 65534)
            os.setresuid(65534, 65534, 65534)
            data = pickle.dumps(("ok", function()))
        except BaseException as exc:  # report, do not let the child run on
            data = pickle.dumps(("error", repr(exc)))
        os.write(write, data)
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    status, value = pickle.loads(b"".join(chunks))
    assert status == "ok", value
    return value


def world_readable_root():
    """A FakeRoot in a world-traversable directory (pytest's own tmp
    directory is private to root), for tests that run as nobody.  The
    caller removes ``os.path.dirname(fake.path)``."""
    top = tempfile.mkdtemp(prefix="systraq-test-", dir="/tmp")
    os.chmod(top, 0o755)
    fake = FakeRoot(os.path.join(top, "root"))
    fake.mkdir("/")
    return fake


@pytest.fixture
def utc(monkeypatch):
    """Local time is UTC for the test (report times, dpkg.log stamps)."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()
