# SPDX-License-Identifier: GPL-2.0-or-later
"""The scanner leaves the page cache as it found it: a file read from the
disk for its digest is dropped once hashed, a cached one is left alone,
and where the kernel cannot tell (no RWF_NOWAIT) nothing is dropped.

The kernel is played by wrappers around os.preadv and os.posix_fadvise,
so that these tests do not depend on the file system of the test tree
(tmpfs ignores both) nor on what the host happens to hold in memory."""

import errno
import hashlib
import os

import pytest

from systraq import scan
from systraq.scan import SMALL, Scanner

LARGE = 3 * (1 << 18) + 7
SIZES = (0, 1, 4096, SMALL, SMALL + 1, LARGE)
REAL_PREADV = os.preadv
REAL_FADVISE = os.posix_fadvise


class Kernel:
    """What preadv2 answers to RWF_NOWAIT, and what the scanner asked.

    ``cache``: "cached" (the read is served), "uncached" (EAGAIN),
    "partial" (only the first ``partial`` bytes are served), or an errno
    (RWF_NOWAIT not supported).  ``grow``: a function of the descriptor,
    called before each file's first read (a file growing meanwhile)."""

    def __init__(self, monkeypatch, cache, partial=4096, grow=None):
        self.cache = cache
        self.partial = partial
        self.grow = grow
        self.reads = []          # (inode, offset, flags)
        self.dropped = []        # inodes, with the advice's arguments
        monkeypatch.setattr(os, "preadv", self.preadv)
        monkeypatch.setattr(os, "posix_fadvise", self.fadvise)

    def preadv(self, fd, buffers, offset, flags=0):
        inode = os.fstat(fd).st_ino
        if self.grow is not None and not any(r[0] == inode for r in self.reads):
            self.grow(fd)
        self.reads.append((inode, offset, flags))
        if not flags & os.RWF_NOWAIT:
            return REAL_PREADV(fd, buffers, offset, flags)
        assert flags == os.RWF_NOWAIT and offset == 0
        if self.cache == "cached":
            return REAL_PREADV(fd, buffers, offset)
        if self.cache == "uncached":
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        if self.cache == "partial":
            return REAL_PREADV(fd, [memoryview(buffers[0])[:self.partial]], offset)
        raise OSError(self.cache, os.strerror(self.cache))

    def fadvise(self, fd, offset, length, advice):
        # fstat fails on a closed descriptor: the advice comes before close.
        self.dropped.append((os.fstat(fd).st_ino, offset, length, advice))
        return REAL_FADVISE(fd, offset, length, advice)

    def nowait_reads(self):
        return [r for r in self.reads if r[2]]


def content(size):
    return bytes(range(256)) * (size // 256) + b"x" * (size % 256)


@pytest.fixture
def files(root):
    for size in SIZES:
        root.write(f"/usr/lib/h/{size}", content(size))
    return root


def hashed(root, sizes=SIZES, algorithm="sha256"):
    """The digests the scanner found, and the inodes of the files, by size."""
    paths = {size: f"/usr/lib/h/{size}".encode() for size in sizes}
    found = Scanner(root.settings(), algorithm, workers=1).scan(set(paths.values()))
    digests = {size: found[path].digest for size, path in paths.items()}
    inodes = {size: found[path].ino for size, path in paths.items()}
    return digests, inodes


def expected(root, sizes=SIZES, algorithm="sha256"):
    return {size: hashlib.new(algorithm, open(root.host(f"/usr/lib/h/{size}"), "rb").read())
            .hexdigest() for size in sizes}


needs_nowait = pytest.mark.skipif(not scan._NOWAIT, reason="no os.RWF_NOWAIT here")


@needs_nowait
@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_a_file_read_from_the_disk_is_dropped_once_hashed(files, monkeypatch, algorithm):
    kernel = Kernel(monkeypatch, "uncached")
    digests, inodes = hashed(files, algorithm=algorithm)
    assert digests == expected(files, algorithm=algorithm)
    assert sorted(kernel.dropped) == sorted(
        (inodes[size], 0, 0, os.POSIX_FADV_DONTNEED) for size in SIZES)


@needs_nowait
def test_a_cached_file_is_left_cached(files, monkeypatch):
    kernel = Kernel(monkeypatch, "cached")
    digests, _ = hashed(files)
    assert digests == expected(files)
    assert kernel.dropped == []
    # Every file was asked for cached data first.
    assert len(kernel.nowait_reads()) == len(SIZES)


@needs_nowait
@pytest.mark.parametrize("partial", [1, 4096, SMALL - 1])
def test_a_file_whose_start_is_cached_is_read_whole_and_left_cached(files, monkeypatch, partial):
    """A cached read may stop where the cached part ends: the rest is read
    from the disk, and the file, someone's, is not dropped."""
    kernel = Kernel(monkeypatch, "partial", partial=partial)
    digests, _ = hashed(files)
    assert digests == expected(files)
    assert kernel.dropped == []


@pytest.mark.parametrize("refusal", [errno.EOPNOTSUPP, errno.EINVAL])
def test_without_rwf_nowait_nothing_is_dropped(files, monkeypatch, refusal):
    if not scan._NOWAIT:
        pytest.skip("no os.RWF_NOWAIT here")
    kernel = Kernel(monkeypatch, refusal)
    digests, _ = hashed(files)
    assert digests == expected(files)
    assert kernel.dropped == []
    # Refused once, not asked again for the other files of that file system.
    assert len(kernel.nowait_reads()) == 1


def test_a_platform_without_rwf_nowait_reads_as_before(files, monkeypatch):
    monkeypatch.setattr(scan, "_NOWAIT", 0)
    dropped = []
    monkeypatch.setattr(os, "posix_fadvise", lambda *args: dropped.append(args))
    digests, _ = hashed(files)
    assert digests == expected(files)
    assert dropped == []


@needs_nowait
@pytest.mark.parametrize("cache", ["cached", "uncached", "partial", errno.EOPNOTSUPP])
@pytest.mark.parametrize("size, grown", [(100, 50), (SMALL, 1), (SMALL - 10, 3 * SMALL),
                                         (LARGE, 1), (LARGE, 5 * (1 << 18) + 3)])
def test_a_file_growing_while_it_is_read_is_hashed_to_its_end(root, monkeypatch, cache, size,
                                                              grown):
    """The file grows between fstat (which gave the size) and the first
    read: the digest covers all there is, whatever the cache held."""
    root.write(f"/usr/lib/h/{size}", content(size))

    def grow(fd):
        with open(root.host(f"/usr/lib/h/{size}"), "ab") as handle:
            handle.write(b"+" * grown)
    kernel = Kernel(monkeypatch, cache, grow=grow)
    digests, inodes = hashed(root, sizes=[size])
    assert digests == expected(root, sizes=[size])
    assert os.path.getsize(root.host(f"/usr/lib/h/{size}")) == size + grown
    dropped = [(inodes[size], 0, 0, os.POSIX_FADV_DONTNEED)] if cache == "uncached" else []
    assert kernel.dropped == dropped


@needs_nowait
def test_a_small_cached_file_costs_one_read_an_uncached_one_two_and_the_drop(files, monkeypatch):
    kernel = Kernel(monkeypatch, "cached")
    hashed(files, sizes=[4096])
    assert len(kernel.reads) == 1 and kernel.dropped == []
    kernel = Kernel(monkeypatch, "uncached")
    hashed(files, sizes=[4096])
    assert [flags for _inode, _offset, flags in kernel.reads] == [os.RWF_NOWAIT, 0]
    assert len(kernel.dropped) == 1


@needs_nowait
def test_a_failed_drop_does_not_fail_the_digest(files, monkeypatch):
    Kernel(monkeypatch, "uncached")

    def refuse(*args):
        raise OSError(errno.EINVAL, "no")
    monkeypatch.setattr(os, "posix_fadvise", refuse)
    digests, _ = hashed(files)
    assert digests == expected(files)


@needs_nowait
def test_a_read_error_other_than_a_refusal_is_raised(files, monkeypatch):
    """EIO on the cached read is no reason to read on as if nothing
    happened: it goes up as before."""
    Kernel(monkeypatch, errno.EIO)
    with pytest.raises(OSError) as raised:
        hashed(files, sizes=[4096])
    assert raised.value.errno == errno.EIO
