# SPDX-License-Identifier: GPL-2.0-or-later
"""The scanner's walk: what it lists, what it enters, and that the result
does not depend on how many workers shared it."""

import hashlib
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


@pytest.mark.parametrize("how", ["full", "quick"])
def test_a_directory_that_cannot_be_listed_is_recorded_as_not_readable(how):
    """Closed to us: recorded as "not readable".  Readable but not
    searchable: its entries cannot be looked at, and are counted."""
    fake = world_readable_root()
    try:
        fake.write("/srv/t/open/f", "x\n")
        fake.write("/srv/t/closed/secret", "s\n", mode=0o600)
        fake.write("/srv/t/unsearchable/a", "s\n")
        fake.write("/srv/t/unsearchable/b", "s\n")
        for path in ("/", "/srv", "/srv/t", "/srv/t/open"):
            os.chmod(fake.host(path), 0o755)
        if os.geteuid() == 0:
            os.chmod(fake.host("/srv/t/closed"), 0o700)
            os.chmod(fake.host("/srv/t/unsearchable"), 0o744)
        else:
            os.chmod(fake.host("/srv/t/closed"), 0o300)
            os.chmod(fake.host("/srv/t/unsearchable"), 0o644)
        settings = fake.settings()

        def run():
            first = Scanner(settings, workers=2).records(walk=[b"/srv/t"])
            scanner = Scanner(settings, workers=2, quick=how == "quick", previous=first)
            found = scanner.records(walk=[b"/srv/t"])
            return {p: scan.decode(r) for p, r in found.items()}, scanner.unreadable
        found, unreadable = as_nobody(run)
    finally:
        os.chmod(fake.host("/srv/t/closed"), 0o700)
        os.chmod(fake.host("/srv/t/unsearchable"), 0o755)
        shutil.rmtree(os.path.dirname(fake.path))
    assert found[b"/srv/t/closed"].note == "not readable"
    assert found[b"/srv/t/closed"].kind == "d"
    assert b"/srv/t/closed/secret" not in found
    assert b"/srv/t/open/f" in found
    assert found[b"/srv/t/unsearchable"].kind == "d"
    assert b"/srv/t/unsearchable/a" not in found
    assert unreadable == 3


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


@pytest.mark.parametrize("workers", [1, 2])
def test_a_quick_walk_finds_every_change(root, workers):
    """The quick loop reuses a record only when lstat shows the same file;
    every kind of change is still found."""
    for n in range(60):
        root.write(f"/srv/q/d{n % 4}/f{n}", f"{n}\n" * n)
    root.write("/srv/q/same-size", "aaaa\n")
    root.write("/srv/q/mode", "m\n")
    root.write("/srv/q/pruned/inside", "p\n")
    root.symlink("f1", "/srv/q/d1/link")
    root.symlink("f2", "/srv/q/d2/link")
    os.mkfifo(root.host("/srv/q/fifo"))
    prune = {b"/srv/q/pruned"}
    first = Scanner(root.settings(), workers=workers, prune=prune).records(walk=[b"/srv/q"])

    root.write("/srv/q/d0/f4", "longer now\n")                  # size
    os.utime(root.host("/srv/q/d1/f5"), ns=(1, 2_000_000_000))  # mtime only
    os.chmod(root.host("/srv/q/mode"), 0o4755)                  # setuid gained
    os.unlink(root.host("/srv/q/d2/link"))
    os.symlink("f6", root.host("/srv/q/d2/link"))               # retargeted
    os.unlink(root.host("/srv/q/d3/f7"))                        # removed
    root.write("/srv/q/d3/new", "new\n")                        # added
    st = os.stat(root.host("/srv/q/same-size"))
    with open(root.host("/srv/q/same-size"), "r+b") as handle:  # same size and mtime
        handle.write(b"bbbb\n")
    os.utime(root.host("/srv/q/same-size"), ns=(st.st_atime_ns, st.st_mtime_ns))
    os.unlink(root.host("/srv/q/fifo"))
    root.write("/srv/q/fifo", "a file now\n")                   # type changed

    scanner = Scanner(root.settings(), workers=workers, previous=first, quick=True, prune=prune)
    found = scanner.records(walk=[b"/srv/q"])
    full = Scanner(root.settings(), workers=1, prune=prune).records(walk=[b"/srv/q"])
    # What the full scan reads, the quick one has too (ctime moved for
    # the rewritten same-size file, so it was read again).
    assert {p: scan.decode(r)[:10] for p, r in found.items()} == \
        {p: scan.decode(r)[:10] for p, r in full.items()}
    assert found == full
    assert scanner.removed == [b"/srv/q/d3/f7"]
    assert {b"/srv/q/d0/f4", b"/srv/q/d1/f5", b"/srv/q/mode", b"/srv/q/d2/link",
            b"/srv/q/d3/new", b"/srv/q/same-size", b"/srv/q/fifo"} <= set(scanner.changed)
    assert b"/srv/q/pruned/inside" not in found
    # Unchanged files were not read again.
    assert scanner.hashed == 6     # f4, f5, mode, new, same-size, fifo

    again = Scanner(root.settings(), workers=workers, previous=found, quick=True, prune=prune)
    assert again.records(walk=[b"/srv/q"]) is found
    assert again.hashed == 0


def test_a_walk_of_the_root_directory_names_paths_from_the_root(root):
    root.write("/etc/f", "x\n")
    found = Scanner(root.settings(), workers=1).records(walk=[b"/"])
    assert b"/etc/f" in found and b"/etc" in found
    assert not [path for path in found if path.startswith(b"//")]


@pytest.mark.parametrize("quick", [False, True])
def test_a_file_gone_between_the_listing_and_its_reading_is_removed(root, monkeypatch, quick):
    """A walk lists a directory, then reads its changed files: one gone
    by then is told removed, not kept from the last run."""
    for n in range(5):
        root.write(f"/srv/g/f{n}", f"{n}\n")
    root.write("/srv/named", "n\n")
    first = Scanner(root.settings(), workers=1).records([b"/srv/named"], walk=[b"/srv/g"])
    root.write("/srv/g/f1", "changed, longer\n")
    root.write("/srv/g/f2", "changed, longer\n")
    hash_file = Scanner._hash

    def then_gone(self, dir_fd, name, info):
        if name == b"f1":
            os.unlink(root.host("/srv/g/f1"))
        return hash_file(self, dir_fd, name, info)
    monkeypatch.setattr(Scanner, "_hash", then_gone)
    scanner = Scanner(root.settings(), workers=1, quick=quick, previous=lambda: first)
    found = scanner.records([b"/srv/named"], walk=[b"/srv/g"])
    assert scanner.removed == [b"/srv/g/f1"]
    assert scanner.changed == [b"/srv/g/f2"]
    assert b"/srv/g/f1" not in found and b"/srv/named" in found
    assert scanner.hashed == (1 if quick else 5)


def test_a_state_cut_inside_an_entry_is_damaged(tmp_path):
    from systraq import statefile
    records = {b"/a": b"1" * 60, b"/b": b"2" * 60}
    data = b"".join(statefile.encode({"format": "t", "count": 2}, records))
    whole = tmp_path / "whole"
    whole.write_bytes(data)
    assert statefile.load(os.fsencode(whole), "t") == ({"format": "t", "count": 2}, records)
    body = data[:-32]
    for cut in (len(body) - 1, len(body) - 61, len(body) - 64):
        short = body[:cut]
        damaged = tmp_path / f"cut{cut}"
        damaged.write_bytes(short + hashlib.sha256(short).digest())
        with pytest.raises(statefile.DamagedState):
            statefile.load(os.fsencode(damaged), "t")
