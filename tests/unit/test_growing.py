# SPDX-License-Identifier: GPL-2.0-or-later
import gzip
import json
import os
import time

import pytest

from systraq import config, growing

LOG = "/var/log/auth.log"
LINES = "".join(f"Dec  2 10:{n:02d}:00 host sshd[1]: Accepted publickey for admin\n"
                for n in range(40))


@pytest.fixture
def system(root):
    root.write("/etc/systraq/systraq.conf", "[check]\ngrowing = /var/log/auth.log\n"
               "    /var/log/apt/*.log\n")
    root.write(LOG, LINES, mode=0o640)
    conf = config.load(root.host("/etc/systraq/systraq.conf"))
    first = growing.run(root.settings(), conf)
    assert first.baseline and [r.change for r in first.records] == ["baseline"]
    return root, conf


def look(system):
    root, conf = system
    return [(r.path, r.change) for r in growing.run(root.settings(), conf).records]


def test_a_log_that_grew_or_appeared_is_no_news(system):
    root, _conf = system
    with open(root.host(LOG), "a") as log:
        log.write("one more line\n")
    root.write("/var/log/apt/history.log", "Start-Date: 2026-12-02\n")
    assert look(system) == []
    assert look(system) == []


def test_a_log_cut_emptied_replaced_or_removed_is_a_warning_without_content(system):
    root, conf = system
    with open(root.host(LOG), "r+") as log:
        log.truncate(100)
    found = growing.run(root.settings(), conf).records
    assert [(r.path, r.change) for r in found] == [(LOG, "shrank")]
    assert found[0].describe() == [
        f"{LOG}: log shrank from {len(LINES)} to 100 bytes, not by its rotation"]
    assert "sshd" not in json.dumps(found) and not found[0].is_note
    # Another file put in its place, its old self moved where no rotation
    # puts it (and so keeping its inode number from the new file's).
    root.mkdir("/var/tmp")
    os.rename(root.host(LOG), root.host("/var/tmp/.x"))
    root.write(LOG, "Dec  2 11:00:00 host CRON[2]: session opened\n", mode=0o640)
    assert look(system) == [(LOG, "replaced")]
    os.unlink(root.host(LOG))
    assert look(system) == [(LOG, "removed")]


def test_a_rotation_by_rename_is_silent(system):
    root, _conf = system
    os.rename(root.host(LOG), root.host(LOG + ".1"))
    root.write(LOG, "", mode=0o640)
    assert look(system) == []


def test_a_rotation_that_compressed_at_once_is_silent(system):
    root, _conf = system
    with open(root.host(LOG), "rb") as log, gzip.open(root.host(LOG + ".1.gz"), "wb") as out:
        out.write(log.read())
    os.unlink(root.host(LOG))
    root.write(LOG, "", mode=0o640)
    assert look(system) == []


def test_copytruncate_and_dated_names_are_rotations(system):
    root, _conf = system
    with open(root.host(LOG), "rb") as log:
        root.write(LOG + "-20261202", log.read(), mode=0o640)
    with open(root.host(LOG), "r+") as log:
        log.truncate(0)
    assert look(system) == []


def test_a_rotated_copy_that_was_already_there_explains_nothing(system):
    root, conf = system
    # A copy older than the last run, or holding less than the log had,
    # is no evidence of this rotation.
    root.write(LOG + ".1", LINES + "old\n", mode=0o640)
    # The run ends a second later (its time, which the state keeps).
    growing.run(root.settings(), conf, now=time.time() + 1)
    root.write(LOG + ".2.gz", gzip.compress(b"short\n"), mode=0o640)
    os.unlink(root.host(LOG))
    assert look(system) == [(LOG, "removed")]


def test_the_state_is_roots_alone(system):
    root, _conf = system
    state = growing.state_path(root.settings())
    assert os.stat(state).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(state)).st_mode & 0o777 == 0o700
