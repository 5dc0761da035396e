# SPDX-License-Identifier: GPL-2.0-or-later
"""The layout of the backups the old package's filetraq left behind.

fixtures/filetraq/ was made by the real filetraq 0.3+nmu1 script
(tools/make-filetraq-fixture).  These tests state what that tree looks like,
so that the code which reads such backups after an upgrade reads what
filetraq really wrote: BACKUPDIR/<absolute path>/orig is the latest copy,
orig.MM.DD.YY__HH.MM the copy it replaced at that run.
"""

import datetime
import os
import re

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "filetraq")
DATED = re.compile(r"orig\.(\d\d)\.(\d\d)\.(\d\d)__(\d\d)\.(\d\d)\Z")


def read(*parts):
    with open(os.path.join(FIXTURE, *parts), "rb") as handle:
        return handle.read()


def listed():
    with open(os.path.join(FIXTURE, "filetraq.conf"), encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle if not line.startswith("#")]


def backup_dir(logical):
    return os.path.join(FIXTURE, "backups", logical.lstrip("/"))


def stamp(name):
    """The time in a dated copy's name; MM.DD.YY does not sort by date."""
    month, day, year, hour, minute = map(int, DATED.match(name).groups())
    return datetime.datetime(2000 + year, month, day, hour, minute)


def dated(logical):
    names = [name for name in os.listdir(backup_dir(logical)) if name != "orig"]
    assert all(DATED.match(name) for name in names), names
    return sorted(names, key=stamp)


def test_backups_hold_only_listed_paths_with_orig_and_dated_copies():
    found = set()
    for top, dirs, files in os.walk(os.path.join(FIXTURE, "backups")):
        if files:
            assert "orig" in files, top
            assert not dirs, top
            found.add("/" + os.path.relpath(top, os.path.join(FIXTURE, "backups")))
        for name in files:
            assert name == "orig" or DATED.match(name), (top, name)
    assert found == {path for path in listed() if " " not in path}


def test_orig_is_the_source_as_the_last_run_saw_it():
    for logical in listed():
        source = os.path.join(FIXTURE, "source", logical.lstrip("/"))
        if os.path.exists(source) and " " not in logical:
            assert read("backups", logical.lstrip("/"), "orig") == read(source), logical


def test_unchanged_files_have_no_dated_copies():
    assert dated("/etc/motd") == []
    assert dated("/etc/cron.d/job") == []


def test_each_dated_copy_is_the_orig_it_replaced_in_order():
    names = dated("/etc/hosts")
    assert names == ["orig.03.14.25__12.00", "orig.11.01.26__10.30"]
    first, second = (read("backups", "etc", "hosts", name) for name in names)
    assert b"testhost" not in first
    assert b"192.0.2.10\ttesthost\n" in second
    assert b"192.0.2.11\ttesthost\n" in read("backups", "etc", "hosts", "orig")


def test_binary_file_gets_a_dated_copy_too():
    assert dated("/etc/bin.dat") == ["orig.03.14.25__12.00"]
    old = read("backups", "etc", "bin.dat", "orig.03.14.25__12.00")
    assert b"\0" in old and old.endswith(b"v1\n")
    assert read("backups", "etc", "bin.dat", "orig").endswith(b"v2\n")
    # diff 3.8 exits 1 for binary files, so filetraq took its text branch.
    runs = read("runs.txt")
    assert (b"Binary files /var/lib/systraq/filetraq//etc/bin.dat/orig"
            b" and /etc/bin.dat differ\n") in runs
    assert b"Recording changes in binary file" not in runs


def test_deleted_file_keeps_its_backup_silently():
    assert not os.path.exists(os.path.join(FIXTURE, "source", "etc", "gone.conf"))
    assert read("backups", "etc", "gone.conf", "orig").startswith(b"# removed")
    assert dated("/etc/gone.conf") == []
    last_run = read("runs.txt").split(b"== run 4:")[1]
    assert last_run.count(b"\n") == 1  # its header line and nothing else


def test_filetraq_never_backs_up_a_name_with_spaces():
    assert "/etc/name with spaces.conf" in listed()
    assert os.path.exists(os.path.join(FIXTURE, "source", "etc", "name with spaces.conf"))
    assert not os.path.exists(backup_dir("/etc/name with spaces.conf"))


def test_dated_copies_are_both_old_and_recent():
    today = datetime.datetime(2026, 11, 21)
    ages = sorted((today - stamp(name)).days
                  for logical in listed() if os.path.isdir(backup_dir(logical))
                  for name in dated(logical))
    assert ages[0] < 60 < ages[-1]
