# SPDX-License-Identifier: GPL-2.0-or-later
"""The scanner's walk: what it lists, what it enters, and that the result
does not depend on how many workers shared it."""

import os
import resource
import shutil

import pytest

from systraq import scan
from systraq.scan import Scanner
from tests.unit.conftest import as_nobody, world_readable_root


@pytest.fixture
def tree(root):
    for n in range(40):
        root.write(f"/srv/t/d{n % 7}/sub{n % 3}/f{n}", f"{n}\n" * n)
    root.write("/srv/t/top", "top\n")
    root.symlink("/etc", "/srv/t/link-to-etc")
    root.symlink("d1", "/srv/t/link-to-d1")
    root.write("/srv/t/skip/inside", "never\n")
    root.write("/srv/t/proc/x", "not /proc: walked\n")
    os.mkfifo(root.host("/srv/t/fifo"))
    return root


def walked(root, workers, **kwargs):
    return Scanner(root.settings(), workers=workers, **kwargs).records(walk=[b"/srv/t"])


def test_a_walk_gives_the_same_records_with_one_or_several_workers(tree):
    one = walked(tree, 1)
    assert walked(tree, 2) == one == walked(tree, 3)
    expected = set()
    for directory, dirs, files in os.walk(tree.host("/srv/t")):
        for name in dirs + files:
            expected.add(os.path.join(directory, name)[len(tree.path):])
    assert set(one) == expected | {b"/srv/t"}


def test_symlinks_are_recorded_not_entered(tree):
    found = {p: scan.decode(r) for p, r in walked(tree, 2).items()}
    assert found[b"/srv/t/link-to-etc"].kind == "l"
    assert found[b"/srv/t/link-to-etc"].target == b"/etc"
    assert not any(p.startswith(b"/srv/t/link-to-d1/") for p in found)
    assert found[b"/srv/t/fifo"].kind == "p"


def test_pruned_paths_are_neither_listed_nor_entered(tree):
    found = walked(tree, 2, prune={b"/srv/t/skip", b"/srv/t/d3/sub1"})
    assert b"/srv/t/skip" not in found and b"/srv/t/skip/inside" not in found
    assert b"/srv/t/d3/sub1" not in found
    assert b"/srv/t/d3/sub0" in found
    assert b"/srv/t/proc/x" in found          # only the logical /proc is special


def test_a_deep_and_wide_tree_needs_few_open_descriptors(root):
    for n in range(300):
        root.write(f"/srv/wide/d{n}/f", "x")
    deep = "/srv/deep" + "/d" * 60
    root.write(deep + "/f", "x")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 120, hard))
    try:
        found = Scanner(root.settings(), workers=1).records(walk=[b"/srv/wide", b"/srv/deep"])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert b"/srv/wide/d299/f" in found
    assert deep.encode() + b"/f" in found


def test_a_directory_that_cannot_be_listed_is_recorded_as_not_readable():
    fake = world_readable_root()
    try:
        fake.write("/srv/t/open/f", "x\n")
        fake.write("/srv/t/closed/secret", "s\n", mode=0o600)
        for path in ("/", "/srv", "/srv/t", "/srv/t/open"):
            os.chmod(fake.host(path), 0o755)
        os.chmod(fake.host("/srv/t/closed"), 0o700 if os.geteuid() == 0 else 0o300)
        settings = fake.settings()

        def run():
            scanner = Scanner(settings, workers=2)
            found = scanner.records(walk=[b"/srv/t"])
            return {p: scan.decode(r) for p, r in found.items()}, scanner.unreadable
        found, unreadable = as_nobody(run)
    finally:
        os.chmod(fake.host("/srv/t/closed"), 0o700)
        shutil.rmtree(os.path.dirname(fake.path))
    assert found[b"/srv/t/closed"].note == "not readable"
    assert found[b"/srv/t/closed"].kind == "d"
    assert b"/srv/t/closed/secret" not in found
    assert b"/srv/t/open/f" in found
    assert unreadable == 1


def test_records_round_trip_through_entries(tree):
    for record in walked(tree, 1).values():
        assert scan.from_entry(scan.decode(record)) == record
        assert scan.decode(scan.without_digest(record)).digest is None


def test_paths_in_a_directory_that_cannot_be_entered_are_counted_not_fatal():
    fake = world_readable_root()
    try:
        fake.write("/srv/closed/secret", "s\n", mode=0o600)
        fake.write("/srv/closed/sub/deeper", "s\n", mode=0o600)
        fake.write("/srv/open", "o\n")
        for path in ("/", "/srv"):
            os.chmod(fake.host(path), 0o755)
        os.chmod(fake.host("/srv/closed"), 0o700 if os.geteuid() == 0 else 0o000)
        settings = fake.settings()

        def run():
            scanner = Scanner(settings, workers=2)
            found = scanner.records([b"/srv/closed/secret", b"/srv/closed/sub/deeper",
                                     b"/srv/open", b"/srv/closed"])
            return sorted(found), scanner.unreadable
        found, unreadable = as_nobody(run)
    finally:
        os.chmod(fake.host("/srv/closed"), 0o700)
        shutil.rmtree(os.path.dirname(fake.path))
    assert found == [b"/srv/closed", b"/srv/open"]
    assert unreadable == 2


@pytest.mark.parametrize("workers", [1, 2])
def test_named_paths_removed_since_the_last_run_are_told(root, workers):
    """Without a walk, no position map: a previous path is removed when it
    was not asked for this time, or when it is not there any more."""
    for n in range(30):
        root.write(f"/srv/n/d{n % 3}/f{n}", f"{n}\n")
    root.write("/srv/gone-dir/f", "x\n")
    asked = [f"/srv/n/d{n % 3}/f{n}".encode() for n in range(30)] + [b"/srv/gone-dir/f"]
    first = Scanner(root.settings(), workers=workers).records(asked)
    assert sorted(first) == sorted(asked)

    os.unlink(root.host("/srv/n/d1/f4"))
    shutil.rmtree(root.host("/srv/gone-dir"))
    root.write("/srv/n/d2/f5", "changed\n")
    again = asked[1:] + [b"/srv/n/d0/f3"]          # f0 no longer asked; one named twice
    scanner = Scanner(root.settings(), workers=workers, previous=first)
    found = scanner.records(again)
    assert sorted(scanner.removed) == [b"/srv/gone-dir/f", b"/srv/n/d0/f0", b"/srv/n/d1/f4"]
    assert scanner.changed == [b"/srv/n/d2/f5"]
    assert sorted(found) == sorted(set(again) - {b"/srv/gone-dir/f", b"/srv/n/d1/f4"})
    assert found[b"/srv/n/d0/f3"] is first[b"/srv/n/d0/f3"]

    unchanged = Scanner(root.settings(), workers=workers, previous=found)
    assert unchanged.records(again) is found
    assert unchanged.removed == [] and unchanged.changed == []
