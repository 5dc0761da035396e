# SPDX-License-Identifier: GPL-2.0-or-later
"""Unified diffs of a text file's old and new contents, by the system's ``diff -u``.

This module owns the text of a content change: ``unified`` makes the diff
the contents job records for a changed world-readable file, ``is_binary``
says when a file gets a notice instead (GNU diff's own test), and ``cap``
cuts a long diff to the number of lines a report will carry.

The admin reading the mail knows ``diff -u``, and the old systraq mailed
filetraq's ``diff -u`` output: the diff is GNU diff's own.  diffutils is
Essential on every Debian system, so ``/usr/bin/diff`` is always there.
It is given the two contents, never a path: each is copied into an
anonymous memory file (memfd_create) that diff reads through
/proc/self/fd, so no link a user planted is followed and no copy of a
file lands on a disk.  The labels (the escaped name and the time, as
diff prints them for a real file) are passed with ``--label``.

Contents are bytes throughout: a configuration file may hold bytes that
are not UTF-8, and diff compares bytes (``--text``, in the C locale).
"""

import os
import subprocess

from systraq.errors import RunError

DIFF = "/usr/bin/diff"
_ENV = {"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}

# GNU diff reads the first st_blksize bytes of each file and calls the
# file binary if they hold a NUL byte (diffutils io.c: sip() and
# binary_file_p()); st_blksize is 4096 on ext4, tmpfs and most local file
# systems.  A caller that has the file's stat can pass its st_blksize.
BINARY_TEST_SIZE = 4096


def is_binary(data, blksize=BINARY_TEST_SIZE):
    """True if GNU diff would call a file starting with DATA binary."""
    return b"\0" in data[:blksize]


def cap(diff, max_lines):
    """Cut DIFF to its first MAX_LINES lines; return (text, lines cut).

    The cut may fall inside a hunk: the result is for reading, not for
    patch(1), and the count lets the report say how much is missing.
    """
    if max_lines < 0:
        raise ValueError("max_lines must not be negative")
    # A diff line ends only at \n (splitlines() would also split at \r,
    # which a CRLF file's lines carry).
    lines = diff.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if len(lines) <= max_lines:
        return diff, 0
    kept = b"".join(line + b"\n" for line in lines[:max_lines])
    return kept, len(lines) - max_lines


def _memory_file(name, data):
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _label(label, time):
    return label if time is None else f"{label}\t{time}"


def unified(old, new, old_label, new_label, context=3, *,
            old_time=None, new_time=None):
    """The unified diff OLD -> NEW as ``diff -u --label`` prints it.

    OLD and NEW are file contents (bytes).  Labels are text (a name shown
    through pathcodec.escape); with a time, the header line carries it
    after a tab as diff prints it for a real file.  Identical contents
    give b"", as diff prints nothing.  RunError when diff cannot run.
    """
    if context < 0:
        raise ValueError("context must not be negative")
    if old == new:
        return b""
    fds = []
    try:
        fds = [_memory_file("systraq-old", old), _memory_file("systraq-new", new)]
        argv = [DIFF, "--text", f"--unified={context}",
                "--label", _label(old_label, old_time), "--label", _label(new_label, new_time),
                f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}"]
        try:
            done = subprocess.run(argv, env=_ENV, pass_fds=fds, stdin=subprocess.DEVNULL,
                                  capture_output=True, check=False)
        except OSError as exc:
            raise RunError(f"cannot run {DIFF}: {exc.strerror}") from None
    finally:
        for fd in fds:
            os.close(fd)
    # 0: the same (it was not), 1: different, 2: trouble.
    if done.returncode != 1:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise RunError(f"{DIFF} exited {done.returncode}"
                       + (f": {message[0]}" if message else ""))
    return done.stdout
