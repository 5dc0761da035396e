# SPDX-License-Identifier: GPL-2.0-or-later
"""What the benchmarks in bench/ share: running a contender and measuring it.

Each contender runs as a child process; wait4(2) gives its wall time, its
CPU time and the peak RSS of it and the descendants it waited for.
"""

import os
import subprocess
import time

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
MB = 1024 * 1024


class Failed(Exception):
    """A contender did not run."""


class Measure:
    """One run of one contender: exit code, wall and CPU seconds, peak RSS."""

    def __init__(self, code, wall, cpu, rss_kb):
        self.code = code
        self.wall = wall
        self.cpu = cpu
        self.rss_kb = rss_kb


def run_measured(argv, stdin=None, stdout=subprocess.DEVNULL, stderr=None, cwd=None):
    """Run ``argv`` and measure it (a Measure)."""
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, stdin=stdin, stdout=stdout, stderr=stderr,
                                cwd=cwd, env=ENV)
    except OSError as exc:
        raise Failed(f"{argv[0]}: {exc.strerror}") from None
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss of wait4 covers the child and the descendants it waited for.
    return Measure(proc.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)


def warm(file_list):
    """Read every file named in the NUL-separated ``file_list`` once."""
    with open(file_list, "rb") as names:
        return run_measured(["xargs", "-0", "-P2", "cat"], stdin=names)


def verdict(ok):
    return "PASS" if ok else "FAIL"
