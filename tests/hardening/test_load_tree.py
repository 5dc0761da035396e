# SPDX-License-Identifier: GPL-2.0-or-later
"""Load: a tree of 1,000,000 files (50,000 reduced) under the snapshot,
pub and root mode, full and --quick, and a tree of configuration files
under the contents job; memory per file bounded, time reported.

Memory is judged per file: each test runs the same job on a tree of
1,000 files and on the big one, and divides the difference of their
peak RSS by the difference of their file counts.  The fixed cost (the
interpreter, the modules, the worker pool) cancels out, so the bound is
the same at both scales, and it fails when a run keeps more per file
than it should (a decoded Entry per path, the files' content, a second
copy of the state), however big the fixed part is.
"""

import os
import shutil
import time

import pytest

from tests.hardening.conftest import scaled
from tests.hardening.loadlib import build_tree, fake_root, free_disk_mb, systraq

SMALL = 1_000
FILES = scaled(50_000, 1_000_000)
# The contents job backs up each file (written and synced one by one,
# about 2 ms a file here): fewer files than the snapshot, 4 KB each, as
# a configuration file may be.
CONFIG_SMALL = 500
CONFIG_FILES = scaled(2_500, 20_000)
CONFIG_CONTENT = b"# setting %d\n" + b"key = value\n" * 340
# Measured here (bookworm, 2 CPUs, sha256): 1,000,000 files took 297 MB
# at the first snapshot and 356 MB at the next ones (the old state and
# the new one are both in memory), against 21 MB for 1,000 files: 335
# bytes a file (380 at 50,000 and 200,000 files, where the pool's fixed
# part weighs more).  The scanner's records are 85 bytes, the paths
# about 30, and a dict entry and two bytes objects about 150 more.  600
# leaves room for another Python or allocator, and still fails if each
# path were kept as a decoded Entry (scan.py measured 577 bytes for
# those, 262 for records, on 76,270 paths), or kept twice more.
PER_FILE_BYTES = 600
# The contents job keeps a 49-byte index record and the path per file,
# and reads one file at a time.  Its first run also journals one backup
# update per file in the new state's header (contents.py, crash
# safety): measured 1,258 bytes a file at 3,000 files, against 50 to 300
# for a run with nothing to back up (RSS moves by steps of a few hundred
# KB: up to 500 bytes a file of noise at 2,000 files).  2,500 is under
# the 4 KB of each file: it fails if the job kept every file's content
# (or its backup's) in memory.
CONTENTS_PER_FILE_BYTES = 2_500


def per_file(small, big, count, small_count=SMALL):
    return round((big.peak_mb - small.peak_mb) * (1 << 20) / (count - small_count))


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    top = tmp_path_factory.mktemp("load-tree")
    # About 4 KB of disk a file (one block), and as many inodes.
    need = FILES * 5 // 1024 + 512
    if free_disk_mb(top) < need:
        pytest.skip(f"{top}: {need} MB of free disk needed for {FILES} files")
    small = fake_root(top / "small", watched=["/data"])
    build_tree(os.path.join(small, "data"), SMALL)
    big = fake_root(top / "big", watched=["/data"])
    start = time.monotonic()
    build_tree(os.path.join(big, "data"), FILES)
    # How long the tree took to make, for the results (not a bound).
    yield small, big, round(time.monotonic() - start, 1)
    # pytest keeps the last three runs' directories: not a million files.
    shutil.rmtree(top)


@pytest.mark.parametrize("mode", ["pub", "root"])
def test_snapshot_of_a_big_tree(trees, mode, record):
    small, big, build_s = trees
    runs = {}
    for label, args in (("baseline", []), ("full", []), ("quick", ["--quick"])):
        small_run = systraq(small, "snapshot", "--mode", mode, *args)
        big_run = systraq(big, "snapshot", "--mode", mode, *args)
        # Nothing changed between the runs: no warning, status 0.
        assert small_run.rc == 0, small_run
        assert big_run.rc == 0, big_run
        runs[label] = (small_run, big_run)
    for label, (small_run, big_run) in runs.items():
        assert per_file(small_run, big_run, FILES) <= PER_FILE_BYTES, (label, small_run,
                                                                       big_run)
    # --quick reads no file again: faster than the full run.
    assert runs["quick"][1].seconds < runs["full"][1].seconds
    record(files=FILES, peak_rss_mb=max(r[1].peak_mb for r in runs.values()),
           baseline_s=runs["baseline"][1].seconds, full_s=runs["full"][1].seconds,
           quick_s=runs["quick"][1].seconds,
           bytes_per_file=max(per_file(s, b, FILES) for s, b in runs.values()),
           small_tree_mb=runs["full"][0].peak_mb, build_s=build_s)


def test_contents_of_many_configuration_files(tmp_path, record):
    roots = []
    for count in (CONFIG_SMALL, CONFIG_FILES):
        root = fake_root(tmp_path / f"contents-{count}", contents=["/srv/conf"])
        # Text files of a few lines, as under /etc: each is backed up.
        build_tree(os.path.join(root, "srv/conf"), count, content=CONFIG_CONTENT)
        roots.append(root)
    first = [systraq(root, "contents") for root in roots]
    again = [systraq(root, "contents") for root in roots]
    for run in first + again:
        assert run.rc == 0, run
    for small_run, big_run in (first, again):
        assert per_file(small_run, big_run, CONFIG_FILES, CONFIG_SMALL) \
            <= CONTENTS_PER_FILE_BYTES, (small_run, big_run)
    backups = os.path.join(roots[1], "var/lib/systraq/filetraq/srv/conf/d00000/f0000/orig")
    assert os.path.isfile(backups)
    for root in roots:
        shutil.rmtree(root)
    record(files=CONFIG_FILES, peak_rss_mb=max(first[1].peak_mb, again[1].peak_mb),
           baseline_s=first[1].seconds, full_s=again[1].seconds,
           baseline_bytes_per_file=per_file(*first, CONFIG_FILES, CONFIG_SMALL),
           bytes_per_file=per_file(*again, CONFIG_FILES, CONFIG_SMALL))
